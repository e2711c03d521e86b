"""IOBinding: chosen for CUDA, and the bound path gives the same numbers as plain runs."""

import numpy as np
import pytest

from gen.runtime import DeviceError, load
from gen.runtime.execution import binding_device
from gen.runtime.providers import CPU, CUDA


def test_binding_device_choice():
    assert binding_device(CUDA, None) == "cuda"      # auto: bind on the GPU
    assert binding_device(CPU, None) is None          # auto: plain runs on CPU
    assert binding_device(CPU, True) == "cpu"
    assert binding_device(CUDA, False) is None
    with pytest.raises(DeviceError, match="not supported on DmlExecutionProvider"):
        binding_device("DmlExecutionProvider", True)


@pytest.mark.parametrize("family", ["ae", "vae", "gan"])
def test_bound_runs_match_plain_runs(bundles, digits_rows, family):
    plain = load(bundles[family], io_binding=False, batch_size=7)
    bound = load(bundles[family], io_binding=True, batch_size=7)
    assert all(r.device == "cpu" for r in bound.runners.values())
    assert all(r.device is None for r in plain.runners.values())
    np.testing.assert_array_equal(bound.sample(20, seed=2), plain.sample(20, seed=2))
    np.testing.assert_array_equal(bound.score(digits_rows[:20]), plain.score(digits_rows[:20]))
    if "reconstruct" in plain.capabilities:
        np.testing.assert_array_equal(bound.reconstruct(digits_rows[:20]), plain.reconstruct(digits_rows[:20]))
        np.testing.assert_array_equal(bound.encode(digits_rows[:20]), plain.encode(digits_rows[:20]))


def test_kept_outputs_are_device_values(bundles, digits_rows):
    model = load(bundles["ae"], io_binding=True)
    rows = model.to_model_space(digits_rows[:3])
    kept = model.runners["encoder"].run(rows, keep_on_device=True)
    assert type(kept[0]).__name__ == "OrtValue" and kept[0].shape() == [3, 4]
    decoded = model.runners["decoder"].run(kept[0])[0]
    assert isinstance(decoded, np.ndarray) and decoded.shape == (3, 64)
