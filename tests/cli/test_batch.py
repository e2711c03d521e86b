"""`gen score` on a folder (Hive-style partitions) or a glob: one output per input at the same
relative path, equal to scoring each file alone; a worker pool gives the same bytes as one
process; the first bad file stops the job with one line and leaves the finished outputs."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from gen.cli.main import app

runner = CliRunner()


def gen(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def dataset(digits_rows, tmp_path):
    root = tmp_path / "in"
    for i, day in enumerate(("2026-11-21", "2026-11-22")):
        (root / f"date={day}").mkdir(parents=True)
        np.save(root / f"date={day}" / "part-0.npy", digits_rows[i * 200:(i + 1) * 200])
    np.savetxt(root / "date=2026-11-22" / "part-1.csv", digits_rows[400:450], delimiter=",", fmt="%g")
    (root / "date=2026-11-22" / "notes.txt").write_text("not data")
    (root / ".hidden.npy").write_bytes(b"skipped")
    return root


def files(folder):
    """The data files under `folder` (not the hidden ledger)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


@pytest.mark.parametrize("workers", [1, 2])
def test_folder_outputs_mirror_inputs_and_equal_single_files(bundles, dataset, tmp_path, workers):
    out = tmp_path / f"out{workers}"
    result = gen("score", bundles["ae"], dataset, "--out", out, "--workers", workers, "--json", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert files(out) == ["date=2026-11-21/part-0.npy", "date=2026-11-22/part-0.npy", "date=2026-11-22/part-1.csv"]
    import json

    summary = json.loads(result.stdout)  # a drift warning may go to stderr
    assert summary["files"] == 3 and summary["rows"] == 450 and summary["workers"] == min(workers, 3)
    for name in files(out):
        single = tmp_path / "single" / name
        single.parent.mkdir(parents=True, exist_ok=True)
        assert gen("score", bundles["ae"], dataset / name, "--out", single, "--device", "cpu").exit_code == 0
        assert (out / name).read_bytes() == single.read_bytes(), name
    assert summary["flagged"] == sum(int(np.asarray(np.load(out / n)["flag"]).sum()) for n in files(out)
                                     if n.endswith(".npy")) + int(np.loadtxt(out / "date=2026-11-22/part-1.csv",
                                                                             delimiter=",", skiprows=1)[:, 3].sum())


def test_glob_input(bundles, dataset, tmp_path):
    out = tmp_path / "out"
    result = gen("score", bundles["ae"], f"{dataset}/*/part-0.npy", "--out", out, "--workers", 1)
    assert result.exit_code == 0, result.output
    assert files(out) == ["date=2026-11-21/part-0.npy", "date=2026-11-22/part-0.npy"]


def test_a_bad_file_stops_the_job_in_one_line(bundles, dataset, tmp_path):
    bad = dataset / "date=2026-11-22" / "part-0.npy"
    np.save(bad, np.zeros((3, 63), np.float32))
    out = tmp_path / "out"
    result = gen("score", bundles["ae"], dataset, "--out", out, "--workers", 1)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and "part-0.npy" in lines[0] and "(3, 63)" in lines[0]
    assert "date=2026-11-22/part-0.npy" not in files(out)
    assert files(out) == ["date=2026-11-21/part-0.npy"]  # finished before the bad one, and valid
    assert np.load(out / "date=2026-11-21/part-0.npy").shape == (200,)


def test_refusals(bundles, dataset, tmp_path):
    for args, words in ((("--out", dataset / "scores"), "inside the input folder"),
                        (("--out", tmp_path / "o", "--explain", 2), "single input file"),
                        (("--out", tmp_path / "o2"), None)):
        result = gen("score", bundles["ae"], dataset, *args, "--workers", 1)
        if words is None:
            assert result.exit_code == 0
        else:
            assert result.exit_code == 2 and words in result.output
    result = gen("score", bundles["ae"], tmp_path / "nothing-*.npy", "--out", tmp_path / "o3")
    assert result.exit_code == 2 and "no .csv, .npy, .parquet files found" in result.output
    single = tmp_path / "one.npy"
    np.save(single, np.zeros((2, 64), np.float32))
    result = gen("score", bundles["ae"], single, "--out", tmp_path / "one.csv", "--workers", 2)
    assert result.exit_code == 2 and "--workers, --resume, --skip-bad, --single and --engine apply to a folder" in result.output


def test_resume_after_a_kill_gives_the_uninterrupted_output(bundles, digits_rows, tmp_path):
    """A job killed (SIGKILL) after its first file, re-run with --resume, skips what finished
    and ends with outputs byte-equal to an uninterrupted run; a changed input is redone."""
    import os
    import signal
    import subprocess
    import sys
    import time

    root = tmp_path / "in"
    for i in range(6):
        (root / f"part={i}").mkdir(parents=True)
        np.save(root / f"part={i}" / "rows.npy", np.tile(digits_rows[i * 50:(i + 1) * 50], (400, 1)))
    whole = tmp_path / "whole"
    assert gen("score", bundles["ae"], root, "--out", whole, "--workers", 1).exit_code == 0

    out = tmp_path / "out"
    script = "import sys; sys.argv[0] = 'gen'; from gen.cli.entry import main; main()"
    proc = subprocess.Popen([sys.executable, "-c", script, "score", str(bundles["ae"]), str(root), "--out", str(out),
                             "--workers", "1", "--chunk-rows", "64", "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ledger = out / ".gen-score.json"
    end = time.monotonic() + 120
    while time.monotonic() < end and proc.poll() is None and not ledger.is_file():
        time.sleep(0.02)
    assert proc.poll() is None, "the job finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 1 <= len(files(out)) < 6

    result = gen("score", bundles["ae"], root, "--out", out, "--workers", 1, "--resume", "--json")
    assert result.exit_code == 0, result.output
    import json

    summary = json.loads(result.stdout)
    assert summary["resumed"] >= 1 and summary["rows"] == 6 * 20_000
    assert files(out) == files(whole)
    for name in files(whole):
        assert (out / name).read_bytes() == (whole / name).read_bytes(), name

    # an input changed since: redone, not skipped; an output edited since: redone too
    np.save(root / "part=0" / "rows.npy", np.tile(digits_rows[:50], (401, 1)))
    (out / "part=1" / "rows.npy").write_bytes(b"damaged")
    summary = json.loads(gen("score", bundles["ae"], root, "--out", out, "--workers", 1, "--resume",
                             "--json").stdout)
    assert summary["resumed"] == 4 and summary["rows"] == 6 * 20_000 + 50
    assert (out / "part=1" / "rows.npy").read_bytes() == (whole / "part=1" / "rows.npy").read_bytes()


@pytest.mark.parametrize("workers", [1, 2])
def test_skip_bad_lists_the_bad_file_and_completes_the_others(bundles, dataset, tmp_path, workers):
    import json

    bad = dataset / "date=2026-11-21" / "part-0.npy"
    np.save(bad, np.full((3, 64), np.nan, np.float32))
    out = tmp_path / "out"
    result = gen("score", bundles["ae"], dataset, "--out", out, "--workers", workers, "--skip-bad", "--json")
    assert result.exit_code == 2
    summary = json.loads(result.stdout)
    assert summary["files"] == 2 and [f["input"] for f in summary["failed"]] == [str(bad)]
    assert "value is nan" in summary["failed"][0]["error"]
    assert files(out) == ["date=2026-11-22/part-0.npy", "date=2026-11-22/part-1.csv"]
    report = json.loads((out / ".gen-errors.json").read_text())
    assert report == summary["failed"]
    assert result.stderr.strip().splitlines()[-1].startswith("error: 1 bad file skipped")
