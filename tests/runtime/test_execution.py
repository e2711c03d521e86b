"""IOBinding: chosen for CUDA, and the bound path gives the same numbers as plain runs."""

import numpy as np
import pytest

from gen.runtime import DeviceError, InputError, load
from gen.runtime.execution import binding_device, default_batch_size
from gen.runtime.providers import CPU, CUDA
from gen.trainer import registry


def test_binding_device_choice():
    assert binding_device(CUDA, None) == "cuda"      # auto: bind on the GPU
    assert binding_device(CPU, None) is None          # auto: plain runs on CPU
    assert binding_device(CPU, True) == "cpu"
    assert binding_device(CUDA, False) is None
    with pytest.raises(DeviceError, match="not supported on DmlExecutionProvider"):
        binding_device("DmlExecutionProvider", True)


@pytest.mark.parametrize("family", registry.names())
def test_bound_runs_match_plain_runs(bundles, digits_rows, family):
    plain = load(bundles[family], device="cpu", io_binding=False, batch_size=7)
    bound = load(bundles[family], device="cpu", io_binding=True, batch_size=7)
    assert all(r.device == "cpu" for r in bound.runners.values())
    assert all(r.device is None for r in plain.runners.values())
    if "sample" in plain.capabilities:  # Gibbs chains keep their state bound between steps
        np.testing.assert_array_equal(bound.sample(20, seed=2), plain.sample(20, seed=2))
    if "score" in plain.capabilities:
        np.testing.assert_array_equal(bound.score(digits_rows[:20]), plain.score(digits_rows[:20]))
    if "reconstruct" in plain.capabilities:
        np.testing.assert_array_equal(bound.reconstruct(digits_rows[:20]), plain.reconstruct(digits_rows[:20]))
    if "encode" in plain.capabilities:
        np.testing.assert_array_equal(bound.encode(digits_rows[:20]), plain.encode(digits_rows[:20]))


def test_kept_outputs_are_device_values(bundles, digits_rows):
    model = load(bundles["ae"], device="cpu", io_binding=True)
    kept = model.runners["encoder"].run({"x": digits_rows[:3].reshape(3, 1, 8, 8)}, keep_on_device=True)
    assert type(kept["z"]).__name__ == "OrtValue" and kept["z"].shape() == [3, 4]
    decoded = model.runners["decoder"].run({"z": kept["z"]})["x"]
    assert isinstance(decoded, np.ndarray) and decoded.shape == (3, 1, 8, 8)


def test_outputs_are_read_by_name(bundles, digits_rows):
    model = load(bundles["vae"])
    rows = digits_rows[:3].reshape(3, 1, 8, 8)
    both = model.runners["encoder"].run({"x": rows})
    assert list(both) == ["z", "logvar"]
    only = model.runners["encoder"].run({"x": rows}, outputs=["logvar"])
    assert list(only) == ["logvar"]
    np.testing.assert_array_equal(only["logvar"], both["logvar"])
    with pytest.raises(KeyError, match=r"graph inputs \['x'\] not fed"):
        model.runners["encoder"].run({"rows": rows})


def test_default_batch_size_follows_the_row_size_and_device(bundles):
    assert default_batch_size(64, CPU) == 16384  # 4 MiB of 256-byte rows, at the cap
    assert default_batch_size(784, CPU) == 1024  # MNIST rows: 1,337 -> the nearest power of two
    assert default_batch_size(3 * 224 * 224, CPU) == 256  # large images: the floor, not 6 rows
    assert default_batch_size(784, CUDA) == 16384 and default_batch_size(64, CUDA) == 65536
    assert load(bundles["ae"], device="cpu").batch_size == 16384  # digits rows, 64 values
    assert load(bundles["ae"], device="cpu", batch_size=7).batch_size == 7
    with pytest.raises(InputError, match="batch_size must be an integer >= 1"):
        load(bundles["ae"], device="cpu", batch_size=0)
