"""The flagged-share drift check: quiet when the share is what the calibration allows
(held-out normal digits), a one-line warning naming the file when it is not (shifted data)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.datasets import load_digits
from typer.testing import CliRunner

from gen.cli.main import app
from gen.runtime.drift import LEVEL, MIN_ROWS, flagged_share_test

runner = CliRunner()


def scoring(contamination=0.01, n_cal=1000):
    return SimpleNamespace(contamination=contamination, n_calibration=n_cal, quantile_levels=[0.5],
                           quantile_values=[1.0])


def test_the_share_test_on_known_cases():
    assert flagged_share_test(MIN_ROWS - 1, 0, scoring()) is None
    calm = flagged_share_test(10_000, 110, scoring())  # 1.1% where about 1.1% is expected
    assert not calm["drift"] and calm["p_value"] > 0.5
    shifted = flagged_share_test(10_000, 500, scoring())  # 5%
    assert shifted["drift"] and shifted["p_value"] < LEVEL and shifted["share"] == 0.05
    too_few = flagged_share_test(10_000, 0, scoring(n_cal=10_000))  # nothing flagged is suspicious too
    assert too_few["drift"]
    # a small calibration set leaves the threshold's false-alarm rate uncertain: 5% is then chance
    assert not flagged_share_test(10_000, 500, scoring(n_cal=30))["drift"]


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    return data.data.astype(np.float32), data.target


def test_cli_warns_on_shifted_data_and_not_on_normal_rows(bundles, digits, tmp_path):
    x, y = digits
    normal = tmp_path / "normal.npy"
    np.save(normal, x[y == 0][-60:])
    result = runner.invoke(app, ["score", str(bundles["ae"]), str(normal), "--out", str(tmp_path / "a.csv")])
    assert result.exit_code == 0 and "drifted" not in result.output, result.output
    shifted = tmp_path / "shifted.npy"
    np.save(shifted, np.random.default_rng(0).uniform(0, 16, (400, 64)).astype(np.float32))
    result = runner.invoke(app, ["score", str(bundles["ae"]), str(shifted), "--out", str(tmp_path / "b.csv")])
    assert result.exit_code == 0
    warning = [line for line in result.output.splitlines() if line.startswith("warning: ")]
    assert len(warning) == 1 and "shifted.npy" in warning[0] and "may have drifted" in warning[0]
    assert "median score" in warning[0]


def test_score_file_returns_and_warns_the_drift_itself(bundles, tmp_path):
    """A Python caller of score_file gets the warning the CLI prints, and the verdict in `stats`;
    warn_drift=False (folder jobs, which warn once at the end) keeps only the verdict."""
    import warnings

    from gen.runtime import GenWarning, load

    shifted = tmp_path / "shifted.npy"
    np.save(shifted, np.random.default_rng(0).uniform(0, 16, (400, 64)).astype(np.float32))
    model = load(bundles["ae"], device="cpu")
    stats: dict = {}
    with pytest.warns(GenWarning, match="shifted.npy: .* may have drifted"):
        model.score_file(shifted, tmp_path / "s.csv", stats=stats)
    assert stats["drift"] and stats["drift"][0]["file"] == str(shifted) and stats["drift"][0]["share"] > 0.5
    quiet: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error", GenWarning)
        model.score_file(shifted, tmp_path / "t.csv", stats=quiet, warn_drift=False)
    assert quiet["drift"] == stats["drift"]
