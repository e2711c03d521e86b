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
    assert check_session_provider("auto", [CPU]) == CPU
    assert check_session_provider("cuda", [CUDA, CPU]) == CUDA


def test_cuda_session_that_fell_back_is_an_error():
    # onnxruntime-gpu silently drops CUDA when its libraries fail to load; we do not.
    with pytest.raises(DeviceError, match="runs on CPUExecutionProvider"):
        check_session_provider("cuda", [CPU])


def test_auto_session_fallback_warns():
    with pytest.warns(UserWarning, match="CUDA was offered"):
        assert check_session_provider("auto", [CPU, CUDA]) == CPU


def test_loaded_model_reports_real_provider(bundles):
    from gen.runtime import load

    model = load(bundles["ae"], device="cpu")
    assert model.provider == CPU
    assert all(s.get_providers()[0] == CPU for s in model.bundle.sessions.values())
