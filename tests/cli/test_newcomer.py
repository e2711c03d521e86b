"""What a new user meets on a fresh clone: the demo says what it does and in that order,
`gen train` reports what the README says it does, progress that reads well in a log, and
careless inputs refused at once, in one line, before torch is loaded."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from typer.testing import CliRunner

from gen.cli.main import app

runner = CliRunner()


def gen(*args):
    return runner.invoke(app, [str(a) for a in args])


def gen_without(modules: list[str], *args, cwd=None) -> subprocess.CompletedProcess:
    """`gen ARGS` in a fresh interpreter where importing any of `modules` fails as it does
    where the package is not installed; the child prints, last, whether torch was loaded."""
    code = textwrap.dedent(f"""
        import sys
        from importlib.abc import MetaPathFinder

        class Absent(MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {modules!r}:
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)

        for name in {modules!r}:
            sys.modules.pop(name, None)
        sys.meta_path.insert(0, Absent())
        from gen.cli.main import app
        try:
            app({[str(a) for a in args]!r})
        finally:
            print("torch loaded:", "torch" in sys.modules, file=sys.stderr)
        """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=cwd)


# -- 1, 5. the demo: its order is the one it announces; counts in words ----------------------------

def test_demo_plan_samples_and_scores_first_then_completes():
    from gen.cli.demo import demo_plan
    from gen.trainer import registry

    imaging, completion = demo_plan()
    assert imaging == ["ae", "vae", "gan"] and completion == ["autorec"]  # README: ae, vae, gan, then autorec
    assert all("complete" not in registry.get(n).capabilities for n in imaging)
    # the registry lists autorec before vae: the demo must not simply follow it
    assert list(registry.families()).index("autorec") < list(registry.families()).index("vae")


@pytest.mark.parametrize("flagged, words", [(0, "0 digits flagged"), (1, "1 digit flagged"),
                                            (2, "2 digits flagged")])
def test_demo_score_line_counts_in_words(flagged, words):
    from gen.cli.demo import score_summary

    line = score_summary("ae", 360, flagged, 20, 20)
    assert words in line and "380 rows (360 held-out digits + 20 noise rows)" in line
    assert "20/20 noise rows flagged" in line


# -- 2. autorec reports held-out RMSE and MAE --------------------------------------------------------

def test_train_autorec_reports_test_rmse_and_mae(tmp_path):
    args = ("train", "--model", "autorec", "--data", "lowrank", "--epochs", 2, "--hidden", 8, "--threads", 1, "-q")
    result = gen(*args, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    evaluation = json.loads((tmp_path / "run" / "run.json").read_text())["metrics"]["evaluation"]
    line = next(line for line in result.stdout.splitlines() if "RMSE" in line)
    assert f"RMSE {evaluation['rmse']:.4f}" in line and f"MAE {evaluation['mae']:.4f}" in line
    assert f"({evaluation['n_test']:,})" in line
    summary = json.loads(gen(*args, "--out", tmp_path / "again", "--json").stdout)
    assert summary["metrics"]["evaluation"]["rmse"] == evaluation["rmse"]
    assert summary["metrics"]["evaluation"]["mae"] == evaluation["mae"]


# -- 3. dbm: progress for every phase, and the whole time ---------------------------------------------

def test_train_dbm_shows_each_phase_and_the_whole_time(tmp_path):
    result = gen("train", "--model", "dbm", "--epochs", 2, "--n-hidden1", 24, "--n-hidden2", 8,
                 "--pretrain-epochs", 2, "--n-chains", 8, "--log-z", "ais", "--ais-betas", 300, "--ais-chains", 4, "--gibbs-steps", 5,
                 "--threads", 1, "--out", tmp_path / "run", "--json")
    assert result.exit_code == 0, result.output
    for name in ("dbm: pretraining layer 1 (CD-1)", "dbm: pretraining layer 2 (CD-1)", "dbm on digits",
                 "dbm: log Z by AIS, 300 betas", "dbm: calibration"):
        assert any(line.startswith(name + ":") for line in result.stderr.splitlines()), (name, result.stderr)
    assert "dbm: log Z by AIS, 300 betas: 299/299 steps" in result.stderr
    # the convergence rule runs the schedule again twice as long before it records log Z
    assert "dbm: log Z by AIS, 600 betas: 599/599 steps" in result.stderr
    summary = json.loads(result.stdout)
    # the whole run (pretraining, joint training, log Z, calibration, preview), not the epochs alone
    assert summary["seconds"] >= summary["metrics"]["train_seconds"] > 0


def test_train_summary_says_the_whole_time_and_the_fitting_time(tmp_path):
    result = gen("train", "--model", "ae", "--epochs", 1, "--hidden", 8, "--latent-dim", 2, "--threads", 1,
                 "--out", tmp_path / "run", "-q")
    assert result.exit_code == 0, result.output
    seconds = json.loads((tmp_path / "run" / "run.json").read_text())["metrics"]["train_seconds"]
    assert f"s, {seconds:.1f} s of it fitting)" in result.stdout


# -- 4. progress off a terminal: whole lines on stderr, nothing on stdout ------------------------------

def test_progress_off_a_terminal_is_whole_lines_on_stderr(tmp_path):
    result = gen("train", "--model", "ae", "--epochs", 3, "--hidden", 8, "--latent-dim", 2, "--threads", 1,
                 "--out", tmp_path / "run", "--json")
    assert result.exit_code == 0, result.output
    json.loads(result.stdout)  # the progress went elsewhere: stdout is the JSON summary alone
    assert "\r" not in result.stderr and "━" not in result.stderr
    last = [line for line in result.stderr.splitlines() if line.startswith("ae on digits: ")][-1]
    assert last.startswith("ae on digits: 3/3 epochs, 0:00:") and "loss " in last


def test_a_progress_line_is_never_cut(monkeypatch):
    import io

    from gen.trainer import progress

    stream = io.StringIO()  # not a terminal
    monkeypatch.setattr(sys, "stderr", stream)
    description = "a phase with a long name " * 6
    with progress.reporting(), progress.phase(description, 4, "epochs") as shown:
        for _ in range(4):
            shown.advance(info="loss 0.1234  " * 8)
    last = stream.getvalue().splitlines()[-1]
    assert last.startswith(f"{description}: 4/4 epochs, 0:0") and last.endswith(", " + "loss 0.1234  " * 8)
    assert len(last) > 200 and "\r" not in stream.getvalue()
    quiet = io.StringIO()
    monkeypatch.setattr(sys, "stderr", quiet)
    with progress.reporting(quiet=True), progress.phase("x", 2) as shown:
        shown.advance(2)
    assert quiet.getvalue() == ""


# -- 6. a torch-free environment: every training verb says it needs torch ------------------------------

@pytest.mark.parametrize("args", [["export", "some-run", "--out", "bundle"], ["train", "--epochs", "1"],
                                  ["models"], ["demo", "--out", "bundle"]])
def test_without_the_train_extra_every_training_verb_names_torch(tmp_path, args):
    done = gen_without(["torch", "onnx", "onnxscript"], *args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[0] == "error: this command needs torch: pip install 'gen[train]'"
    assert not (tmp_path / "bundle").exists()


def test_with_torch_but_without_onnx_export_names_onnx(tmp_path):
    done = gen_without(["onnx"], "export", "some-run", "--out", "bundle", cwd=tmp_path)
    assert done.returncode == 2 and "needs onnx: pip install 'gen[train]'" in done.stderr


# -- 7. an rbm trains on any rows whose values lie in [0, 1] -----------------------------------------

@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_rbm_trains_on_a_binary_table(tmp_path, suffix):
    rows = (np.random.default_rng(0).random((80, 64)) < 0.3).astype(np.float32)
    path = tmp_path / f"binary{suffix}"
    if suffix == ".npy":
        np.save(path, rows)
    else:
        np.savetxt(path, rows, delimiter=",", fmt="%d", header=",".join(f"p{i}" for i in range(64)), comments="")
    result = gen("train", "--model", "rbm", "--data", path, "--epochs", 1, "--n-hidden", 8, "--threads", 1,
                 "--out", tmp_path / "run", "-q")
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "run" / "run.json").read_text())["data"]
    assert data["kind"] == "tabular" and data["preprocessing"]["model_range"] == [0.0, 1.0]


def test_rbm_refuses_values_outside_unit_range_naming_them(tmp_path):
    np.save(tmp_path / "counts.npy", np.random.default_rng(0).integers(0, 4, (80, 6)).astype(np.float32))
    result = gen("train", "--model", "rbm", "--data", tmp_path / "counts.npy", "--epochs", 1, "--n-hidden", 8,
                 "--out", tmp_path / "run", "-q")
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert "values from 0 to 3: use grbm" in result.output and not (tmp_path / "run").exists()


# -- 8. a bad --data or run option is refused before torch is imported --------------------------------

@pytest.mark.parametrize("args, message", [
    (["--data", "missing.npy"], "missing.npy: not a built-in dataset (digits, ring8, grid25, lowrank) and no such file"),
    (["--data", "."], ".: no .csv, .npy, .parquet files found"),  # a folder streams its files
    (["--data", "notes.txt"], "notes.txt: unsupported data format"),
    (["--epochs", "0"], "option epochs=0: expected an integer >= 1"),
    (["--data", "notes.txt", "--label-column", "y"], "only a CSV or Parquet file has named columns"),
])
def test_bad_data_or_option_is_refused_before_torch(tmp_path, args, message):
    (tmp_path / "notes.txt").write_text("not data\n")
    done = gen_without(["torch"], "train", *args, "--out", "run", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    first, loaded = done.stderr.splitlines()
    assert first.startswith("error: ") and message in first
    assert loaded == "torch loaded: False" and not (tmp_path / "run").exists()


def test_unreadable_data_is_one_line(tmp_path, monkeypatch):
    import builtins

    path = tmp_path / "rows.npy"
    np.save(path, np.zeros((4, 2), np.float32))
    real = builtins.open

    def locked(file, *args, **kwargs):  # root reads any file: simulate a file it may not open
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied", str(file))
        return real(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", locked)
    from gen.runtime.errors import InputError
    from gen.trainer.config import check_before_torch

    with pytest.raises(InputError, match=r"rows.npy: cannot be read \(Permission denied\)"):
        check_before_torch({"data": str(path)})


# -- 9. other careless inputs ------------------------------------------------------------------------

def test_one_row_of_data_is_one_line(tmp_path):
    (tmp_path / "one.csv").write_text("a,b\n1,2\n")
    result = gen("train", "--data", tmp_path / "one.csv", "--model", "ae", "--epochs", 1, "--out", tmp_path / "run",
                 "-q")
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert "one.csv: only 1 row; training needs at least 2" in result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("case, message", [
    ("text-only CSV", "column 1 (name): expected a number, got 'bob'"),
    ("unknown model", "model='nope': expected one of"),
    ("absent normal class", "--normal-class 42: no such label in digits"),
    ("--out is a file", "taken: exists and is not a gen run folder"),
])
def test_careless_inputs_are_one_line_exit_2(tmp_path, case, message):
    (tmp_path / "text.csv").write_text("name,city\nbob,paris\nann,rome\n")
    (tmp_path / "taken").write_text("mine")
    args = {"text-only CSV": ["--data", tmp_path / "text.csv"], "unknown model": ["--model", "nope"],
            "absent normal class": ["--normal-class", 42], "--out is a file": []}[case]
    out = tmp_path / ("taken" if case == "--out is a file" else "run")
    result = gen("train", *args, "--epochs", 1, "--out", out, "-q")
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert message in result.output
    assert not (tmp_path / "run").exists() and (tmp_path / "taken").read_text() == "mine"
