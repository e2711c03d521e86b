"""Training from Python on rows in memory (issue 24): `gen.fit` takes numpy arrays,
pandas and pyarrow tables through the same code path as `gen train`, so the same rows give the
same model whichever way they come."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from gen import fit
from gen.cli.main import app
from gen.runtime import ConfigError, InputError, load


@pytest.fixture
def rows():
    return np.random.default_rng(3).normal(size=(240, 6)).astype(np.float32)


def test_fit_on_an_array_equals_gen_train_on_the_same_rows(tmp_path, rows, monkeypatch):
    np.save(tmp_path / "rows.npy", rows)
    result = CliRunner().invoke(app, ["train", "--model", "ae", "--data", str(tmp_path / "rows.npy"), "--epochs", "3",
                                      "--hidden", "16", "--latent-dim", "3", "--seed", "4",
                                      "--out", str(tmp_path / "cli"), "--threads", "1"])
    assert result.exit_code == 0, result.output
    run = fit(rows, model="ae", epochs=3, hidden=[16], latent_dim=3, seed=4, threads=1, out=tmp_path / "api")
    cli, api = load(_export(tmp_path / "cli", tmp_path / "b-cli")), load(run.export(tmp_path / "b-api"))
    for graph in ("score.onnx", "encoder.onnx", "decoder.onnx"):  # the same weights, byte for byte
        assert (tmp_path / "b-cli" / graph).read_bytes() == (tmp_path / "b-api" / graph).read_bytes()
    np.testing.assert_array_equal(api.score(rows), cli.score(rows))
    assert api.threshold == cli.threshold and api.manifest.data.source == "array"
    assert yaml.safe_load((run.folder / "config.yaml").read_text())["data"] == "array"
    assert run.family == "ae" and run.info["metrics"]["epochs"] == 3
    for line in run.summary()[1]:  # the CLI's lines come from the same library call
        assert line.split(" (")[0].replace(str(run.folder), str(tmp_path / "cli")) in result.output
    # Named by their file and exported under SOURCE_DATE_EPOCH, the rows give the same bundle
    # byte for byte (the run folders' own times and durations stay in run.json).
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")
    named = fit(rows, model="ae", epochs=3, hidden=[16], latent_dim=3, seed=4, threads=1, out=tmp_path / "named",
                source=str(tmp_path / "rows.npy"))
    _export(tmp_path / "cli", tmp_path / "r-cli")
    named.export(tmp_path / "r-api")
    files = sorted(p.name for p in (tmp_path / "r-cli").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "r-api").iterdir()) and "manifest.json" in files
    for name in files:
        assert (tmp_path / "r-cli" / name).read_bytes() == (tmp_path / "r-api" / name).read_bytes(), name
    manifest = load(tmp_path / "r-api").manifest
    assert manifest.created == "2026-01-01T00:00:00+00:00" and manifest.metrics.train_seconds is None
    assert manifest.data.source == str(tmp_path / "rows.npy") and "out" not in manifest.config
    assert named.info["metrics"]["train_seconds"] > 0  # the run folder keeps what it measured


def test_a_bad_source_date_epoch_or_source_is_refused_in_one_line(tmp_path, rows, monkeypatch):
    with pytest.raises(InputError, match="source: expected a one-line name"):
        fit(rows, model="pca", source="", out=tmp_path / "run")
    run = fit(rows, model="pca", out=tmp_path / "run")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(ConfigError, match="SOURCE_DATE_EPOCH='yesterday': expected whole seconds"):
        run.export(tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()


def test_a_quantized_export_measures_its_cost_on_the_rows_fit_held(tmp_path, rows):
    """int8 export recalibrates on the run's held-out rows: the Run from `fit` still holds them;
    the same run folder opened later names why it cannot."""
    from gen.fitting import Run

    run = fit(np.tile(rows, (3, 1)), model="ae", epochs=2, hidden=[16], latent_dim=3, seed=0, threads=1,
              out=tmp_path / "run")
    model = load(run.export(tmp_path / "int8", quantize="int8"))
    assert model.manifest.quantization is not None and model.manifest.data.source == "array"
    with pytest.raises(InputError, match="handed over in memory .gen.fit. and are no longer held"):
        Run(tmp_path / "run").export(tmp_path / "again", quantize="int8")
    assert not (tmp_path / "again").exists()


def _export(run, out):
    from gen.exporters.onnx_export import export_run

    export_run(run, out)
    return out


def test_tables_keep_their_column_names_and_labels_pick_the_normal_class(tmp_path, rows):
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame(rows, columns=[f"c{i}" for i in range(6)])
    y = np.arange(len(rows)) % 2
    run = fit(frame, y=y, normal_class=0, model="pca", out=tmp_path / "run")
    model = load(run.export(tmp_path / "bundle"))
    assert model.feature_names == [f"c{i}" for i in range(6)]
    assert "auroc" in run.info["metrics"]["evaluation"]  # labels: measured on the held-out rows
    summary, lines = run.summary()  # what `gen train` prints, from the library
    auroc = run.info["metrics"]["evaluation"]["auroc"]
    assert lines[-1] == f"one-class AUROC (normal class 0): {auroc:.4f}"
    assert lines[0].startswith(f"run folder: {run.folder} (pca, closed form (SVD); trained on cpu ")
    assert summary["config"]["model"] == "pca" and summary["metrics"]["evaluation"]["auroc"] == auroc
    import pyarrow as pa

    table = pa.Table.from_pandas(frame)
    again = fit(table, model="pca", out=tmp_path / "arrow")
    assert load(again.export(tmp_path / "b2")).feature_names == [f"c{i}" for i in range(6)]


def test_images_in_memory_train_as_images(tmp_path):
    from sklearn.datasets import load_digits

    images = load_digits().images[:300] / 16.0  # (N, 8, 8): one channel added
    run = fit(images, model="auto", out=tmp_path / "run")
    assert run.family == "pca" and run.info["data"]["kind"] == "image" and run.info["data"]["shape"] == [1, 8, 8]


def test_a_temporary_run_goes_with_cleanup(rows):
    run = fit(rows, model="pca")
    assert run.temporary and (run.folder / "run.json").exists()
    run.cleanup()
    assert not run.folder.exists()


@pytest.mark.parametrize("bad, message", [
    (np.array([["a", "b"]]), "expected numeric values"),
    (np.zeros((0, 3)), "expected a non-empty"),
    (np.zeros(5), "expected a non-empty"),
    (np.array([[1.0, np.nan], [0.0, 1.0]]), "row 1, column 2: value is nan"),
])
def test_bad_rows_are_refused_in_one_line(bad, message):
    with pytest.raises(InputError, match=message):
        fit(bad, model="pca")


def test_labels_and_options_are_checked(rows):
    with pytest.raises(InputError, match="y: expected 240 integer labels"):
        fit(rows, y=np.zeros(3), model="pca")
    with pytest.raises(InputError, match="y: expected 240 integer labels"):
        fit(rows, y=np.full(240, 0.5), model="pca")
    with pytest.raises(ConfigError, match="the rows are the first argument"):
        fit(rows, data="digits")
    with pytest.raises(ConfigError, match="latent_dm"):
        fit(rows, model="pca", latent_dm=3)


def test_import_gen_is_light_and_lazy():
    """`import gen` imports neither torch nor onnxruntime; `gen.load` brings the runtime only."""
    import subprocess
    import sys

    code = ("import sys, gen\nassert 'torch' not in sys.modules and 'onnxruntime' not in sys.modules\n"
            "gen.load; assert 'torch' not in sys.modules\nprint(sorted(gen.__all__), gen.__version__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "['Detector', 'GenModel', 'Run', '__version__', 'fit', 'load']" in out
    import gen

    assert callable(gen.fit) and gen.Run.__name__ == "Run" and gen.Detector.__name__ == "Detector"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        gen.nope


def test_temporary_folders_go_with_cleanup_and_with_a_failed_fit(rows, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where mkdtemp makes its folders
    run = fit(rows, model="pca")
    assert run.folder.parent.parent == tmp_path
    run.cleanup()
    with pytest.raises(ConfigError):
        fit(rows, model="pca", nonsense=1)
    assert list(tmp_path.iterdir()) == []  # neither the run's folder nor the failed one's is left


def test_dataframes_of_mixed_numeric_columns_and_missing_values():
    pandas = pytest.importorskip("pandas")
    from gen.trainer.data import from_arrays

    mixed = from_arrays(pandas.DataFrame({"a": [1, 2, 3], "b": [True, False, True], "c": [0.5, 1.5, 2.5]}))
    assert mixed.x.dtype == np.float32 and mixed.x[:, 1].tolist() == [1.0, 0.0, 1.0] and mixed.names == ["a", "b", "c"]
    with pytest.raises(InputError, match="row 2, column 1: value is nan"):
        from_arrays(pandas.DataFrame({"n": pandas.array([1, None, 3], dtype="Int64")}))
    with pytest.raises(InputError, match="column 'name' holds object values; expected numbers"):
        from_arrays(pandas.DataFrame({"x": [1.0, 2.0], "name": ["a", "b"]}))


def test_a_missing_training_stack_is_one_line(monkeypatch, rows):
    """Without torch (a runtime-only install) gen.fit says which extra to install; without
    scikit-learn gen.Detector does; gen.load still works."""
    import builtins
    import sys

    import gen
    from gen.runtime import MissingDependency

    real = builtins.__import__

    def without(*names):
        def guarded(name, *args, **kwargs):
            if name.split(".")[0] in names:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return real(name, *args, **kwargs)
        return guarded

    for module in [m for m in sys.modules if m.startswith(("gen.trainer.train", "gen.detector"))]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.delitem(gen.__dict__, "Detector", raising=False)
    monkeypatch.setattr(builtins, "__import__", without("torch", "sklearn"))
    with pytest.raises(MissingDependency, match=r"gen.fit trains with torch: pip install 'gen\[train\]'"):
        fit(rows, model="pca")
    with pytest.raises(MissingDependency, match=r"gen.Detector needs sklearn: pip install 'gen\[train\]'"):
        gen.Detector
    assert callable(gen.load)


@pytest.mark.parametrize("option", [{"nproc": 2}, {"engine": "ray"}, {"stream": True}])
def test_fit_trains_in_this_process_and_says_so(rows, option):
    with pytest.raises(ConfigError, match="the rows are in this process's memory"):
        fit(rows, model="ae", epochs=1, **option)
