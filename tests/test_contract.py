"""The common contract every registered family passes (scikit-learn's common checks, for
gen): train a few steps on tiny data, export with parity, load torch-free, every declared
verb returns its declared shape and dtype, every other verb raises NotSupported, same seed
gives the same bytes, a re-export verifies, graphs take raw units, options are recorded
resolved. Parametrised over the registry: a newly registered family is tested here with no
edit to any list."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from gen.runtime import NotSupported, load
from gen.runtime.manifest import FORMAT_VERSION, VERBS
from gen.trainer import registry
from gen.trainer.options import check_value
from tests.runtime.test_torch_free import BLOCK_TORCH
from tests.pooling import reference_score
from tests.verbs import N, verb_outputs

FAMILIES = registry.names()
ROOT = Path(__file__).resolve().parents[1]


def expected_outputs(manifest) -> dict[str, tuple[list[int], str]]:
    shape = list(manifest.data.shape)
    want = {"sample": ([N, *shape], "float32"), "reconstruct": ([N, *shape], "float32"),
            "score": ([N], "float64"), "complete": ([N, *shape], "float32")}
    if "encode" in manifest.capabilities:
        z = manifest.graphs["encoder"].port("z", outputs=True)
        want["encode"] = ([N, *z.shape[1:]], "float32")
    return {verb: want[verb] for verb in manifest.capabilities}


def run_torch_free(bundle: Path, rows: Path) -> dict:
    """A bundle's verbs, run in a fresh interpreter where importing torch fails."""
    code = BLOCK_TORCH + (
        "import json, numpy as np\n"
        "from gen.runtime import load\n"
        "from tests.verbs import verb_outputs\n"
        f"report = verb_outputs(load({str(bundle)!r}), np.load({str(rows)!r}))\n"
        "assert 'torch' not in sys.modules\n"
        "print(json.dumps(report))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return {verb: tuple(out) for verb, out in json.loads(done.stdout).items()}


@pytest.mark.parametrize("name", FAMILIES)
def test_declaration_is_complete(name):
    family = registry.get(name)
    assert family.description and family.capabilities
    specs = family.option_specs()
    assert all(s.help for s in specs)
    for s in specs:  # every default satisfies its own constraint
        assert check_value(s, s.default, "default") == s.default
    assert set(family.test.options) <= {s.name for s in specs}


RANDOM_OPS = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli"}


@pytest.mark.parametrize("name", FAMILIES)
def test_export_parity_within_tolerance(name, bundles):
    manifest = load(bundles[name]).manifest
    assert manifest.format_version == FORMAT_VERSION and manifest.family == name
    assert set(manifest.parity.graphs) == set(manifest.graphs)
    for role, p in manifest.parity.graphs.items():
        assert p.max_abs_diff <= manifest.parity.tolerance * max(1.0, p.max_abs_output), role
        assert p.state_mismatch <= manifest.parity.state_tolerance, role


@pytest.mark.parametrize("name", FAMILIES)
def test_graphs_are_valid_random_free_and_batch_dynamic(name, bundles):
    """Every graph passes the onnx checker, holds no random operator (noise is an input), and
    runs at any batch size, agreeing with onnx's reference evaluator."""
    import onnx
    import onnxruntime as ort
    from onnx.reference import ReferenceEvaluator

    manifest = load(bundles[name], device="cpu").manifest
    rng = np.random.default_rng(0)
    for role, spec in manifest.graphs.items():
        model = onnx.load(str(bundles[name] / spec.file))
        onnx.checker.check_model(model, full_check=True)
        assert not RANDOM_OPS & {node.op_type for node in model.graph.node}, role
        assert all(t.shape[0] == "batch" for t in spec.inputs + spec.outputs), role
        session = ort.InferenceSession(str(bundles[name] / spec.file), providers=["CPUExecutionProvider"])
        reference = ReferenceEvaluator(model)
        for n in (1, 7):
            feed = {t.name: (rng.integers(0, 256, (n, *t.shape[1:])) if t.dtype == "uint8"
                             else (rng.random((n, *t.shape[1:])) < 0.5) if t.kind in ("state", "mask")
                             else rng.uniform(0, 1, (n, *t.shape[1:]))).astype(t.dtype) for t in spec.inputs}
            got, ref = session.run(None, feed), reference.run(None, feed)
            for t, g, r in zip(spec.outputs, got, ref):
                assert g.shape[0] == n, (role, t.name)
                if t.kind != "state":  # binary draws may flip where a probability meets its noise
                    np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(r).max())))


@pytest.mark.parametrize("name", FAMILIES)
def test_declared_verbs_torch_free(name, bundles, family_rows, tmp_path):
    np.save(tmp_path / "rows.npy", family_rows[name][:N])
    assert run_torch_free(bundles[name], tmp_path / "rows.npy") == expected_outputs(load(bundles[name]).manifest)


@pytest.mark.parametrize("name", FAMILIES)
def test_declared_verbs_in_process_and_others_refused(name, bundles, family_rows):
    digits_rows = family_rows[name]
    model = load(bundles[name])
    assert verb_outputs(model, digits_rows[:N]) == expected_outputs(model.manifest)
    calls = {"sample": lambda: model.sample(N), "reconstruct": lambda: model.reconstruct(digits_rows[:N]),
             "encode": lambda: model.encode(digits_rows[:N]), "score": lambda: model.score(digits_rows[:N]),
             "complete": lambda: model.complete(digits_rows[:N], np.ones_like(digits_rows[:N]))}
    for verb in VERBS:
        if verb not in model.capabilities:
            with pytest.raises(NotSupported, match=f"{name!r} does not support {verb!r}"):
                calls[verb]()
    if "score" in model.capabilities:
        assert np.isfinite(model.score(digits_rows[:50])).all()


@pytest.mark.parametrize("name", FAMILIES)
def test_same_seed_same_bytes(name, bundles):
    model = load(bundles[name])
    if "sample" not in model.capabilities:
        pytest.skip(f"{name} does not sample")
    a, b = model.sample(N, seed=7), model.sample(N, seed=7)
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != model.sample(N, seed=8).tobytes()
    # and independent of how rows are batched
    np.testing.assert_allclose(load(bundles[name], batch_size=2).sample(N, seed=7), a, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", FAMILIES)
def test_retraining_and_reexport_give_the_same_bundle(name, runs, bundles, tmp_path):
    from gen.exporters import export_run
    from tests.conftest import train_family

    again = train_family(name, tmp_path / "run")
    assert (again / "checkpoint.pt").read_bytes() == (runs[name] / "checkpoint.pt").read_bytes()
    manifest = export_run(again, tmp_path / "bundle")
    original = load(bundles[name]).manifest
    assert {r: g.sha256 for r, g in manifest.graphs.items()} == {r: g.sha256 for r, g in original.graphs.items()}
    export_run(again, tmp_path / "bundle", force=True)  # a re-export replaces the bundle and verifies
    assert load(tmp_path / "bundle").family == name


@pytest.mark.parametrize("name", FAMILIES)
def test_options_recorded_resolved(name, bundles):
    manifest = load(bundles[name]).manifest
    family = registry.get(name)
    for spec in family.option_specs():
        assert spec.name in manifest.config, spec.name
        value = manifest.config[spec.name]
        assert check_value(spec, value, "recorded") == value and value != "auto", (spec.name, value)


@pytest.mark.parametrize("name", FAMILIES)
def test_graphs_take_and_return_raw_units(name, bundles, family_rows):
    """The host does no numeric transform: float64 or float32, flat or shaped rows score the
    same; a plain onnxruntime session on the bundle's score graph gives the runtime's scores."""
    import onnxruntime as ort

    model = load(bundles[name], device="cpu")  # compared exactly with a CPU session below
    if "score" not in model.capabilities:
        pytest.skip(f"{name} does not score")
    rows = family_rows[name][:20]
    scores = model.score(rows)
    np.testing.assert_array_equal(model.score(rows.astype(np.float64)), scores)
    np.testing.assert_array_equal(model.score(rows.reshape(20, *model.shape)), scores)
    spec = model.manifest.scoring
    graph = model.manifest.graphs[spec.graph]
    session = ort.InferenceSession(str(bundles[name] / graph.file), providers=["CPUExecutionProvider"])
    (plain,) = session.run([spec.output], {"x": rows.reshape(20, *model.shape)})
    np.testing.assert_array_equal(plain.astype(np.float64), scores)


@pytest.mark.parametrize("name", FAMILIES)
def test_preview_is_what_gen_sample_draws(name, runs, bundles):
    """preview.png (torch, at training) and the bundle's samples for the same seed (onnxruntime)
    are the same picture, up to one grey level where float rounding crosses a step."""
    PIL = pytest.importorskip("PIL.Image")
    from gen.runtime.outputs import sample_image

    model = load(bundles[name], device="cpu")  # CUDA's TF32 matmuls would round differently from torch on CPU
    preview = runs[name] / "preview.png"
    if "sample" not in model.capabilities or not preview.exists():
        pytest.skip(f"{name} has no preview")
    drawn = sample_image(model.sample(64, seed=model.manifest.seed), model.manifest.data)
    shown = np.asarray(PIL.open(io.BytesIO(preview.read_bytes())))
    assert shown.shape == drawn.shape
    diff = np.abs(shown.astype(int) - drawn.astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99


@pytest.mark.parametrize("name", FAMILIES)
def test_reconstruction_errors_pool_to_the_score(name, runs, bundles, family_rows):
    """Every reconstruction family's score graph returns per-feature errors (anomaly maps,
    `gen score --explain`) in the rows' shape, and a row's score is what its `pool` makes of
    them (their mean; on images by default their smoothed energy), by a scipy reference."""
    if registry.get(name).score_kind != "reconstruction_mse":
        pytest.skip(f"{name} does not score by reconstruction error")
    model = load(bundles[name], device="cpu")
    assert model.manifest.scoring.errors is not None, f"{name}: score graph has no per-feature errors output"
    rows = family_rows[name][:20]
    errors = model.errors(rows)
    assert errors.shape == (20, *model.shape)
    pool = yaml.safe_load((runs[name] / "config.yaml").read_text())["pool"]
    assert pool == ("smooth" if len(model.shape) == 3 else "mean"), f"{name}: pool=auto resolved to {pool}"
    np.testing.assert_allclose(model.score(rows), reference_score(errors, pool), rtol=1e-4)
    top = model.explain(rows, k=1)
    np.testing.assert_array_equal(top.errors[:, 0], errors.reshape(20, -1).max(axis=1))


@pytest.mark.parametrize("name", FAMILIES)
def test_every_bundle_has_a_report_page(name, bundles, family_rows, tmp_path):
    """`gen report` renders for every family: the card always, calibration where it scores,
    samples where it samples, and given rows their scores (gen.runtime.report)."""
    pytest.importorskip("jinja2")
    from gen.runtime.report import report_html

    model = load(bundles[name], device="cpu")
    rows = None
    if "score" in model.capabilities:
        rows = tmp_path / "rows.npy"
        np.save(rows, np.asarray(family_rows[name][:60], dtype=np.float32))
    text = report_html(model, rows, samples=4, top_k=2, table_rows=5)
    assert 'id="card"' in text and f"gen report: {name}" in text
    assert ('id="calibration"' in text) == (model.manifest.scoring is not None)
    assert ('id="samples"' in text) == ("sample" in model.capabilities)
    if rows is not None:
        flagged = int(model.flag(np.load(rows)).sum())
        assert f'<strong id="flagged-count">{flagged:,}</strong> of 60 rows' in text
