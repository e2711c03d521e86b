"""`gen export --quantize int8`: the score graph gets int8 weights, its cost is measured on the
run's held-out rows and recorded (format 6), the threshold is recalibrated on its own scores,
and export refuses past the tolerance or for a family that does not score."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from gen.cli.main import app
from gen.exporters import export_run
from gen.runtime import ExportError, load


def test_int8_score_graph_is_recorded_recalibrated_and_close(runs, bundles, tmp_path, digits_rows):
    out = tmp_path / "q"
    manifest = export_run(runs["ae"], out, quantize="int8")
    q = manifest.quantization
    assert manifest.format_version == 6 and q.graphs == ["score"] and q.n_rows > 0
    ops = {node.op_type for node in onnx.load(str(out / "score.onnx")).graph.node}
    assert ops & {"MatMulInteger", "DynamicQuantizeMatMul", "DynamicQuantizeLinear"}
    assert 0 < q.max_rel_score_diff < 0.05 and q.flag_agreement >= q.min_flag_agreement
    assert q.auroc_float is not None and q.auroc_float - q.auroc_quantized <= q.max_auroc_drop
    quantized, plain = load(out, device="cpu"), load(bundles["ae"], device="cpu")
    np.testing.assert_allclose(quantized.score(digits_rows[:50]), plain.score(digits_rows[:50]), rtol=0.05, atol=1e-4)
    assert quantized.threshold != plain.threshold  # recalibrated on the int8 scores
    assert "recalibrated on the int8 graph" in quantized.manifest.scoring.calibration
    assert quantized.manifest.graphs["encoder"].sha256 == plain.manifest.graphs["encoder"].sha256  # untouched
    info = CliRunner().invoke(app, ["info", str(out)])
    assert info.exit_code == 0 and "quantized: score" in info.output


def test_quantization_refusals(runs, tmp_path, monkeypatch):
    result = CliRunner().invoke(app, ["export", str(runs["autorec"]), "--out", str(tmp_path / "a"), "--quantize",
                                      "int8"])
    assert result.exit_code == 2 and "does not score" in result.output and not (tmp_path / "a").exists()
    from gen.exporters import quantize

    monkeypatch.setattr(quantize, "MAX_AUROC_DROP", -1.0)  # any result is past this tolerance
    with pytest.raises(ExportError, match="AUROC falls from"):
        export_run(runs["ae"], tmp_path / "b", quantize="int8")
    assert not (tmp_path / "b").exists()
