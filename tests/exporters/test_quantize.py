"""Narrow score graphs: `gen export --quantize int8` (int8 weights) and `--precision fp16`
(float16 inside, float32 in and out). Their cost is measured on the run's held-out rows and
recorded (format 6), the threshold is recalibrated on their own scores, and export refuses
past the tolerance, on non-finite scores, or for a family that does not score."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from gen.cli.main import app
from gen.exporters import export_run
from gen.runtime import ExportError, load
from gen.runtime.manifest import FORMAT_VERSION


def test_int8_score_graph_is_recorded_recalibrated_and_close(runs, bundles, tmp_path, digits_rows):
    out = tmp_path / "q"
    manifest = export_run(runs["ae"], out, quantize="int8")
    q = manifest.quantization
    assert manifest.format_version == FORMAT_VERSION and q.graphs == ["score"] and q.n_rows > 0
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


def test_int8_keeps_the_error_pooling_float_so_a_score_does_not_depend_on_its_batch(runs, tmp_path, digits_rows):
    """Digits are images: the ae's score pools the error map by the blur's MatMuls (pool=smooth),
    which int8 leaves in float32. Quantizing them would scale each batch's error map by its own
    range: a normal row's score would move when an anomalous row joins its batch."""
    from gen.exporters.quantize import error_pool_nodes

    out = tmp_path / "q"
    export_run(runs["ae"], out, quantize="int8")
    graph = onnx.load(str(out / "score.onnx")).graph
    pooling = [n for n in graph.node if any("error_pool." in i for i in n.input)]
    assert len(pooling) == 2 and {n.op_type for n in pooling} == {"MatMul"}
    assert error_pool_nodes(out / "score.onnx") == [n.name for n in pooling]
    model = load(out, device="cpu", batch_size=None)
    normal = digits_rows[:8]
    odd = np.full((1, 64), 16.0, dtype=np.float32)  # every pixel on: far from any digit
    alone = model.score(normal)
    together = model.score(np.concatenate([normal, odd]))[:8]
    # the Gemms' int8 inputs still scale by the batch's range (~2e-3 here), so this bound is loose; the
    # structure above is what shows the pooling is not quantized (it would be 4 integer nodes)
    np.testing.assert_allclose(together, alone, rtol=2e-2)


def test_quantization_refusals(runs, tmp_path, monkeypatch):
    result = CliRunner().invoke(app, ["export", str(runs["autorec"]), "--out", str(tmp_path / "a"), "--quantize",
                                      "int8"])
    assert result.exit_code == 2 and "does not score" in result.output and not (tmp_path / "a").exists()
    from gen.exporters import quantize

    monkeypatch.setattr(quantize, "MAX_AUROC_DROP", -1.0)  # any result is past this tolerance
    with pytest.raises(ExportError, match="AUROC falls from"):
        export_run(runs["ae"], tmp_path / "b", quantize="int8")
    assert not (tmp_path / "b").exists()


def test_fp16_score_graph_is_half_inside_float32_outside_and_close(runs, bundles, tmp_path, digits_rows):
    out = tmp_path / "h"
    manifest = export_run(runs["vae"], out, precision="fp16")
    q = manifest.quantization
    assert q.graphs == ["score"] and "float16" in q.method and q.n_rows > 0
    graph = onnx.load(str(out / "score.onnx")).graph
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16}
    assert {i.data_type for i in graph.initializer if i.dims and i.data_type in floats} == {onnx.TensorProto.FLOAT16}
    assert {v.type.tensor_type.elem_type for v in [*graph.input, *graph.output]} == {onnx.TensorProto.FLOAT}
    assert 0 < q.max_rel_score_diff < 0.01 and q.auroc_float - q.auroc_quantized <= q.max_auroc_drop
    half, plain = load(out, device="cpu"), load(bundles["vae"], device="cpu")
    np.testing.assert_allclose(half.score(digits_rows[:50]), plain.score(digits_rows[:50]), rtol=1e-2)
    assert "recalibrated on the fp16 graph" in half.manifest.scoring.calibration
    assert half.manifest.graphs["decoder"].sha256 == plain.manifest.graphs["decoder"].sha256  # only the score graph


def test_fp16_refusals(runs, tmp_path, monkeypatch):
    both = CliRunner().invoke(app, ["export", str(runs["ae"]), "--out", str(tmp_path / "a"), "--quantize", "int8",
                                    "--precision", "fp16"])
    assert both.exit_code == 2 and "choose one" in both.output and not (tmp_path / "a").exists()
    from gen.exporters import quantize

    scores = quantize._scores
    # a score past float16's range (65504) comes back inf from the half graph: refused, named
    monkeypatch.setattr(quantize, "_scores", lambda path, *a: scores(path, *a) * (np.inf if ".fp16." in str(path) else 1))
    result = CliRunner().invoke(app, ["export", str(runs["ae"]), "--out", str(tmp_path / "b"), "--precision", "fp16"])
    assert result.exit_code == 1 and "--precision fp16:" in result.output and "not finite" in result.output
    assert not (tmp_path / "b").exists()
    monkeypatch.setattr(quantize, "_scores", scores)
    monkeypatch.setattr(quantize, "MAX_AUROC_DROP", -1.0)
    with pytest.raises(ExportError, match="--precision fp16: the one-class AUROC falls from"):
        export_run(runs["ae"], tmp_path / "c", precision="fp16")
    assert not (tmp_path / "c").exists()
