import pytest

from gen.runtime.errors import DeviceError
from gen.runtime.providers import CPU, CUDA, check_session_provider, select_providers

WITH_CUDA = ["TensorrtExecutionProvider", CUDA, CPU]
CPU_ONLY = ["AzureExecutionProvider", CPU]


def test_auto_prefers_cuda_when_offered():
    assert select_providers("auto", WITH_CUDA) == [CUDA, CPU]


def test_auto_falls_back_to_cpu():
    assert select_providers("auto", CPU_ONLY) == [CPU]


def test_cpu_is_cpu_even_with_cuda():
    assert select_providers("cpu", WITH_CUDA) == [CPU]


def test_cuda_requested_but_absent_is_an_error():
    with pytest.raises(DeviceError, match="CUDAExecutionProvider"):
        select_providers("cuda", CPU_ONLY)


def test_cuda_requested_and_offered():
    assert select_providers("cuda", WITH_CUDA) == [CUDA, CPU]


def test_unknown_device():
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        select_providers("tpu", CPU_ONLY)


def test_session_provider_is_read_back():
    assert check_session_provider("auto", [CPU], [CPU]) == CPU
    assert check_session_provider("cuda", [CUDA, CPU], [CUDA, CPU]) == CUDA


def test_cuda_session_that_fell_back_is_an_error():
    # onnxruntime-gpu silently builds a CPU session when CUDA libraries fail to load; we do not.
    with pytest.raises(DeviceError, match="runs on CPUExecutionProvider"):
        check_session_provider("cuda", [CUDA, CPU], [CPU])


def test_auto_session_fallback_warns():
    with pytest.warns(UserWarning, match="CUDA was offered"):
        assert check_session_provider("auto", [CUDA, CPU], [CPU]) == CPU


def test_open_bundle_with_faked_cuda_provider(bundles, monkeypatch):
    """The whole load path under a faked onnxruntime-gpu whose CUDA cannot start."""
    import onnxruntime

    from gen.runtime import load

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: WITH_CUDA)
    seen = []
    real = onnxruntime.InferenceSession

    def session(blob, sess_options=None, providers=None):
        seen.append(providers)
        return real(blob, sess_options=sess_options, providers=[CPU])  # CUDA "fails" to load

    monkeypatch.setattr(onnxruntime, "InferenceSession", session)
    with pytest.raises(DeviceError, match="asked for but the session runs on CPUExecutionProvider"):
        load(bundles["ae"], device="cuda")
    assert seen[0] == [CUDA, CPU]
    with pytest.warns(UserWarning, match="CUDA was offered"):
        assert load(bundles["ae"], device="auto").provider == CPU
    assert load(bundles["ae"], device="cpu").provider == CPU and seen[-1] == [CPU]


def test_loaded_model_reports_real_provider(bundles):
    from gen.runtime import load

    model = load(bundles["ae"], device="cpu")
    assert model.provider == CPU
    assert all(s.get_providers()[0] == CPU for s in model.bundle.sessions.values())
