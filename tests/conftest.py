"""Shared fixtures: tiny models trained on sklearn digits, exported once per test session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

FAMILIES = ("ae-naive", "ae", "ae-tied", "vae", "gan")


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One run folder per family: 30 epochs on the digits of class 0, small networks."""
    from gen.trainer.config import TrainConfig
    from gen.trainer.train import train

    root = tmp_path_factory.mktemp("runs")
    return {family: train(TrainConfig(model=family, data="digits", normal_class=0, epochs=30, seed=0,
                                       hidden=[32], latent_dim=4, out=str(root / family), quiet=True))
            for family in FAMILIES}


@pytest.fixture(scope="session")
def bundles(runs, tmp_path_factory) -> dict[str, Path]:
    """One exported bundle per family."""
    from gen.exporters import export_run

    root = tmp_path_factory.mktemp("bundles")
    for family, run in runs.items():
        export_run(run, root / family)
    return {family: root / family for family in runs}


@pytest.fixture(scope="session")
def digits_rows() -> np.ndarray:
    """Raw sklearn digits rows (values 0..16), float32."""
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
