"""Export is checked: valid ONNX, raw units in and out, parity recorded, no randomness in
graphs, failures as one-line errors with nothing written."""

import json

import numpy as np
import pytest
import torch

from gen.exporters import ExportError, export_run
from gen.exporters import onnx_export
from gen.runtime.errors import BundleError, InputError
from gen.runtime.manifest import FORMAT_VERSION
from gen.trainer.run_folder import load_run



def test_manifest_records_the_contract(bundles):
    manifest = json.loads((bundles["vae"] / "manifest.json").read_text())
    assert manifest["format_version"] == FORMAT_VERSION and manifest["family"] == "vae" and manifest["quantization"] is None
    assert manifest["variant"] == "bernoulli decoder"
    assert manifest["config"]["seed"] == 0 and manifest["seed"] == 0
    assert manifest["config"]["decoder"] == "bernoulli" and manifest["config"]["lr"] == 1e-3
    data = manifest["data"]
    assert data["kind"] == "image" and data["shape"] == [1, 8, 8] and data["raw_range"] == [0.0, 16.0]
    assert data["preprocessing"] == {"offset": 0.0, "scale": 16.0, "model_range": [0.0, 1.0], "binarize": None}
    assert manifest["sampler"] == {"graph": "decoder", "input": "z", "output": "x", "codes": None, "kind": "ancestral"}
    assert manifest["latent"] == {"dim": 4, "prior": "normal", "mean": None, "cov": None, "codes": None}
    scoring = manifest["scoring"]
    assert scoring["kind"] == "negative_elbo" and scoring["contamination"] == 0.01
    assert len(scoring["quantile_levels"]) == len(scoring["quantile_values"]) == 101
    assert 0 < manifest["metrics"]["evaluation"]["auroc"] <= 1 and manifest["metrics"]["epochs"] == 30
    parity = manifest["parity"]
    assert parity["probe_rows"] > 0 and parity["tolerance"] == 1e-4 and set(parity["graphs"]) == {"encoder", "decoder", "score",
                                                                                              "widen"}
    assert parity["graphs"]["encoder"]["max_abs_diff"] <= 1e-4  # outputs of order 1: absolute
    assert manifest["graphs"]["encoder"]["inputs"] == [
        {"name": "x", "shape": ["batch", 1, 8, 8], "dtype": "float32", "kind": "data"}]
    assert manifest["graphs"]["encoder"]["outputs"] == [
        {"name": "z", "shape": ["batch", 4], "dtype": "float32", "kind": "latent"},
        {"name": "logvar", "shape": ["batch", 4], "dtype": "float32", "kind": "value"}]
    assert parity["graphs"]["widen"]["max_abs_diff"] == 0.0  # uint8 -> float32 is exact
    assert manifest["graphs"]["widen"]["inputs"] == [
        {"name": "x", "shape": ["batch", 1, 8, 8], "dtype": "uint8", "kind": "data"}]
    assert manifest["graphs"]["widen"]["outputs"] == [
        {"name": "x_float32", "shape": ["batch", 1, 8, 8], "dtype": "float32", "kind": "data"}]


def test_tabular_preprocessing_is_per_feature_inside_the_graph(tmp_path):
    from gen.runtime import load
    from gen.trainer.config import TrainConfig
    from gen.trainer.train import train

    rng = np.random.default_rng(0)
    rows = (rng.normal(size=(120, 3)) * [1, 10, 100] + [0, 5, -50]).astype(np.float32)
    np.save(tmp_path / "t.npy", rows)
    run = train(TrainConfig.make(model="ae", data=str(tmp_path / "t.npy"), epochs=2, hidden=[8], latent_dim=2,
                                 score="recon", quiet=True, out=str(tmp_path / "run")))  # net.score is the recon error
    bundle = tmp_path / "bundle"
    export_run(run, bundle)
    model = load(bundle, device="cpu")  # compared with torch on CPU (CUDA would use TF32)
    prep = model.manifest.data.preprocessing
    assert len(prep.offset) == len(prep.scale) == 3 and prep.model_range is None
    loaded = load_run(run)
    data, net = loaded.data, loaded.net
    want = net.score(torch.from_numpy((rows[:10] - np.float32(prep.offset)) / np.float32(prep.scale))).detach().numpy()
    np.testing.assert_allclose(model.score(rows[:10]), want, rtol=1e-5, atol=1e-6)


def test_parity_failure_writes_nothing(runs, tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_export, "PARITY_TOLERANCE", -1.0)
    with pytest.raises(ExportError, match="torch vs onnxruntime differ"):
        export_run(runs["ae"], tmp_path / "bundle")
    assert list(tmp_path.iterdir()) == []


def test_exporter_failure_is_one_line_and_writes_nothing(runs, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        try:
            raise RuntimeError("unsupported operator aten::frobnicate\nlong details")
        except RuntimeError as cause:
            raise ValueError("Failed to export the model.\nMany lines of advice") from cause

    monkeypatch.setattr(onnx_export, "export_graph", broken)
    with pytest.raises(ExportError) as info:
        export_run(runs["ae"], tmp_path / "bundle")
    assert str(info.value) == "encoder: export failed (RuntimeError: unsupported operator aten::frobnicate)"
    assert info.value.exit_code == 1 and list(tmp_path.iterdir()) == []


def test_runtime_score_equals_training_score(runs, bundles, digits_rows):
    """The exported score is the score calibrated at training (anomalib's complaint, avoided)."""
    from gen.runtime import load

    net = load_run(runs["vae"]).net
    model = load(bundles["vae"], device="cpu")  # compared with torch on CPU (CUDA would use TF32)
    with torch.no_grad():
        want = net.score(torch.from_numpy(digits_rows[:50].reshape(50, 1, 8, 8) / 16.0)).numpy()
    np.testing.assert_allclose(model.score(digits_rows[:50]), want, rtol=1e-5, atol=1e-4)


def test_force_replaces_a_bundle_but_never_a_user_folder(runs, tmp_path):
    bundle = tmp_path / "bundle"
    export_run(runs["gan"], bundle)
    first = (bundle / "manifest.json").read_text()
    with pytest.raises(BundleError, match="bundles are immutable"):
        export_run(runs["gan"], bundle)
    export_run(runs["gan"], bundle, force=True)
    assert json.loads((bundle / "manifest.json").read_text())["created"] >= json.loads(first)["created"]
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("precious")
    with pytest.raises(BundleError, match="exists and is not a gen bundle"):
        export_run(runs["gan"], user, force=True)
    assert (user / "notes.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "mine"]


def test_export_of_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(InputError, match="not a run folder"):
        export_run(tmp_path, tmp_path / "b")
    assert not (tmp_path / "b").exists()
