"""Export is checked: valid ONNX, torch vs onnxruntime parity recorded, no randomness in graphs."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx.reference import ReferenceEvaluator

from gen.exporters import ExportError, export_run
from gen.exporters import onnx_export
from gen.runtime.bundle import sha256_file
from gen.trainer.train import load_checkpoint

RANDOM_OPS = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli"}
ROLES = {"ae-naive": {"encoder", "decoder", "score"}, "ae": {"encoder", "decoder", "score"},
         "ae-tied": {"encoder", "decoder", "score"}, "vae": {"encoder", "decoder", "score"},
         "gan": {"generator", "discriminator", "score"}}


def graph_inputs(spec, rng, n):
    width = spec.inputs[0].shape[1]
    return {spec.inputs[0].name: rng.uniform(0, 1, size=(n, width)).astype(np.float32)}


@pytest.mark.parametrize("family", sorted(ROLES))
def test_bundle_graphs_are_valid_and_match_torch(family, bundles, runs):
    folder = bundles[family]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["graphs"]) == ROLES[family]
    _, _, net = load_checkpoint(runs[family])
    graphs = net.graphs()
    rng = np.random.default_rng(0)
    for role, spec in manifest["graphs"].items():
        path = folder / spec["file"]
        assert sha256_file(path) == spec["sha256"]
        model = onnx.load(str(path))
        onnx.checker.check_model(model, full_check=True)
        assert not RANDOM_OPS & {node.op_type for node in model.graph.node}
        assert manifest["parity"]["max_abs_diff"][role] <= 1e-4 * max(1.0, manifest["parity"]["max_abs_output"][role])
        assert spec["inputs"][0]["shape"][0] == "batch"
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        reference = ReferenceEvaluator(model)
        for n in (1, 33):  # the batch axis is dynamic
            feed = {spec["inputs"][0]["name"]: rng.uniform(0, 1, size=(n, spec["inputs"][0]["shape"][1])).astype(np.float32)}
            got = session.run(None, feed)
            ref = reference.run(None, feed)
            with torch.no_grad():
                want = graphs[role].module(torch.from_numpy(next(iter(feed.values()))))
            want = want if isinstance(want, tuple) else (want,)
            assert len(got) == len(ref) == len(want) == len(spec["outputs"])
            for g, r, w in zip(got, ref, want):
                assert g.shape[0] == n
                np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)
                np.testing.assert_allclose(g, w.numpy(), rtol=1e-4, atol=1e-4)


def test_manifest_records_the_contract(bundles):
    manifest = json.loads((bundles["vae"] / "manifest.json").read_text())
    assert manifest["format_version"] == 1 and manifest["family"] == "vae"
    assert manifest["config"]["seed"] == 0 and manifest["seed"] == 0
    assert manifest["data"]["shape"] == [64] and manifest["data"]["image_shape"] == [1, 8, 8]
    assert manifest["data"]["offset"] == 0.0 and manifest["data"]["scale"] == 16.0
    assert manifest["latent"] == {"dim": 4, "prior": "normal", "mean": None, "cov": None}
    scoring = manifest["scoring"]
    assert scoring["kind"] == "negative_elbo" and scoring["contamination"] == 0.01
    assert len(scoring["quantile_levels"]) == len(scoring["quantile_values"]) == 101
    assert 0 < manifest["metrics"]["auroc"] <= 1
    assert manifest["parity"]["probe_rows"] > 0 and manifest["parity"]["tolerance"] == 1e-4
    assert set(manifest["parity"]["max_abs_diff"]) == {"encoder", "decoder", "score"}
    assert manifest["parity"]["max_abs_diff"]["encoder"] <= 1e-4  # outputs of order 1: absolute
    assert manifest["graphs"]["encoder"]["outputs"] == [
        {"name": "mu", "shape": ["batch", 4], "dtype": "float32"},
        {"name": "logvar", "shape": ["batch", 4], "dtype": "float32"}]


def test_parity_failure_writes_nothing(runs, tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_export, "PARITY_TOLERANCE", -1.0)
    with pytest.raises(ExportError, match="torch vs onnxruntime differ"):
        export_run(runs["ae"], tmp_path / "bundle")
    assert list(tmp_path.iterdir()) == []


def test_runtime_score_equals_training_score(runs, bundles, digits_rows):
    """The exported score is the score calibrated at training (anomalib's complaint, avoided)."""
    from gen.runtime import load

    _, info, net = load_checkpoint(runs["vae"])
    model = load(bundles["vae"])
    with torch.no_grad():
        want = net.anomaly_score(torch.from_numpy(digits_rows[:50] / 16.0)).numpy()
    np.testing.assert_allclose(model.score(digits_rows[:50]), want, rtol=1e-5, atol=1e-4)


def test_force_replaces_a_bundle_but_never_a_user_folder(runs, tmp_path):
    from gen.trainer.errors import TrainError

    bundle = tmp_path / "bundle"
    export_run(runs["gan"], bundle)
    first = (bundle / "manifest.json").read_text()
    export_run(runs["gan"], bundle, force=True)
    assert json.loads((bundle / "manifest.json").read_text())["created"] >= json.loads(first)["created"]
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("precious")
    with pytest.raises(TrainError, match="exists and is not a gen bundle"):
        export_run(runs["gan"], user, force=True)
    assert (user / "notes.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "mine"]
