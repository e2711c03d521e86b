"""Shared fixtures: one tiny model per registered family, trained on sklearn digits (normal
class 0) with the family's `test` preset and exported once per test session. A family
added to the registry is in these fixtures with no edit here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def family_names() -> list[str]:
    from gen.trainer import registry

    return registry.names()


def train_family(name: str, out: Path, seed: int = 0) -> Path:
    """Train `name` with its test preset (digits class 0 unless the preset names other data)
    into `out`, on the CPU: the
    contract's byte-for-byte checks (same seed, same checkpoint) hold there on any machine,
    CUDA or not; `--device auto` itself is exercised in tests/trainer/test_train.py."""
    from gen.trainer import registry
    from gen.trainer.config import TrainConfig
    from gen.trainer.train import train

    family = registry.get(name)
    preset = family.test
    cfg = TrainConfig.make(model=name, data=preset.data, normal_class=preset.normal_class, epochs=preset.epochs,
                           seed=seed, device="cpu", out=str(out), quiet=True, **preset.options)
    return train(cfg)


class Lazy(dict):
    """A mapping that builds each family's entry on first use, so a test run that needs one
    family (`-k vae`) trains only that one."""

    def __init__(self, make):
        super().__init__()
        self.make = make

    def __missing__(self, name: str) -> Path:
        self[name] = self.make(name)
        return self[name]


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny models on a shared 2-core machine: one torch thread avoids OpenMP spin-waiting
    that made such fits up to 200x slower under load."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One run folder per registered family (built on first use)."""
    root = tmp_path_factory.mktemp("runs")
    return Lazy(lambda name: train_family(name, root / name))


@pytest.fixture(scope="session")
def bundles(runs, tmp_path_factory) -> dict[str, Path]:
    """One exported bundle per registered family (built on first use)."""
    from gen.exporters import export_run

    root = tmp_path_factory.mktemp("bundles")

    def make(name: str) -> Path:
        export_run(runs[name], root / name)
        return root / name

    return Lazy(make)


@pytest.fixture(scope="session")
def family_rows(runs, digits_rows) -> dict[str, np.ndarray]:
    """Raw rows a family's test bundle takes, flat: digits rows for the families tested on
    digits, else the run's held-out probe rows (e.g. rating rows)."""
    from gen.trainer import registry

    def make(name: str) -> np.ndarray:
        if registry.get(name).test.data == "digits":
            return digits_rows
        probe = np.load(runs[name] / "probe.npy")
        return probe.reshape(len(probe), -1)

    return Lazy(make)


@pytest.fixture(scope="session")
def digits_rows() -> np.ndarray:
    """Raw sklearn digits rows (values 0..16), float32, flat (N, 64)."""
    from sklearn.datasets import load_digits

    return load_digits().data.astype(np.float32)


@pytest.fixture
def bundle_copy(bundles, tmp_path):
    """A private copy of a bundle that a test may corrupt."""
    import shutil

    def make(family: str = "ae") -> Path:
        target = tmp_path / f"copy-{family}"
        shutil.copytree(bundles[family], target)
        return target

    return make
