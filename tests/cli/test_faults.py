"""Refusals a user can cause end as one line and exit 2; signals and kills leave no temp
file behind (issue 14's catalogue: usage errors, empty .npy, output over its input or inside
the bundle, unwritable folders, memory, SIGTERM / SIGINT / kill -9)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from gen.cli.errors import as_gen_error
from gen.cli.main import app
from gen.runtime import InputError
from gen.runtime.outputs import atomic_path, remove_stale_temps
from gen.runtime.readers import read_rows

runner = CliRunner()


def gen(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(result, code: int = 2) -> str:
    lines = result.output.strip().splitlines()
    assert result.exit_code == code, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


@pytest.mark.parametrize("args, words", [
    (("--n", 0), ["--n", "1"]),  # typer's wording of the range varies by version: the option and its bound
    (("--seed", -1), ["--seed"]),
    (("--seed", 2**63), ["--seed"]),
    (("--bogus", 3), ["--bogus"]),
])
def test_usage_errors_are_one_line(bundles, tmp_path, args, words):
    line = one_line_error(gen("sample", bundles["ae"], "--out", tmp_path / "s.npy", *args))
    assert all(w in line for w in words) and "gen sample --help" in line
    assert not (tmp_path / "s.npy").exists()


def test_largest_seed_is_accepted(bundles, tmp_path):
    result = gen("sample", bundles["ae"], "--n", 2, "--seed", 2**63 - 1, "--out", tmp_path / "s.npy")
    assert result.exit_code == 0, result.output


def test_missing_argument_is_one_line(bundles):
    assert "input" in one_line_error(gen("score", bundles["ae"]))


def test_empty_npy_is_refused(bundles, tmp_path):
    empty = tmp_path / "empty.npy"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty or truncated .npy"):
        read_rows(empty, [64])
    line = one_line_error(gen("score", bundles["ae"], empty, "--out", tmp_path / "o.csv"))
    assert "empty.npy" in line


def test_output_over_its_input_is_refused(bundles, digits_rows, tmp_path):
    rows = tmp_path / "rows.npy"
    np.save(rows, digits_rows[:4])
    before = rows.read_bytes()
    for verb in ("score", "encode"):
        line = one_line_error(gen(verb, bundles["ae"], rows, "--out", rows))
        assert "is also the input" in line
    # the same file by another name
    one_line_error(gen("score", bundles["ae"], rows, "--out", tmp_path / "." / "rows.npy"))
    assert rows.read_bytes() == before


def test_output_inside_the_bundle_is_refused(bundle_copy, digits_rows, tmp_path):
    bundle = bundle_copy("ae")
    before = sorted(p.name for p in bundle.iterdir())
    rows = tmp_path / "rows.npy"
    np.save(rows, digits_rows[:4])
    for args in (("score", bundle, rows, "--out", bundle / "s.csv"),
                 ("encode", bundle, rows, "--out", bundle / "z.npy"),
                 ("sample", bundle, "--out", bundle / "x.npy")):
        assert "inside the bundle folder" in one_line_error(gen(*args))
    assert sorted(p.name for p in bundle.iterdir()) == before


def test_unwritable_output_folder_is_one_line(bundles, monkeypatch, tmp_path):
    import tempfile

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    line = one_line_error(gen("sample", bundles["ae"], "--n", 2, "--out", tmp_path / "s.npy"))
    assert "cannot write in" in line and "Permission denied" in line


def test_memory_errors_become_a_user_error():
    error = as_gen_error(MemoryError("Unable to allocate 1.16 TiB for an array"))
    assert isinstance(error, InputError) and error.exit_code == 2 and "--n" in str(error)


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temps_of_dead_processes_are_removed(tmp_path):
    """Every output's temps in the folder whose writer is dead go; a live writer's and the
    user's own files stay."""
    target = tmp_path / "out.csv"
    dead, alive = dead_pid(), os.getpid()
    stale = [tmp_path / f".out.csv.{dead}.ab12cd34.part", tmp_path / f".out.csv.{dead}.ab12cd34.raw",
             tmp_path / f".out.csv.5.{dead}.qq11rr22.part",     # the temp of another output, "out.csv.5"
             tmp_path / f".other.npy.{dead}.gh34ij56.raw"]
    kept = [tmp_path / f".out.csv.{alive}.zz99yy88.part",     # a live writer
            tmp_path / f".out.csv.{dead}.part",                 # not a name gen writes
            tmp_path / "notes.part"]
    for path in stale + kept:
        path.write_text("x")
    (tmp_path / f".out.csv.{dead}.ff00ee11.part").mkdir()      # a staged folder of a killed export
    removed = remove_stale_temps(tmp_path)
    assert sorted(removed) == sorted(stale + [tmp_path / f".out.csv.{dead}.ff00ee11.part"])
    assert all(p.exists() for p in kept)
    with atomic_path(target) as tmp:  # the temp names this process writes carry its pid
        assert tmp.name.startswith(f".out.csv.{os.getpid()}.") and tmp.name.endswith(".part")
        tmp.write_text("done")
    assert target.read_text() == "done"


def wait_for(predicate, timeout: float = 60.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGKILL, -9)])
def test_signals_leave_no_temp_file(bundles, tmp_path, signum, code):
    """The console script's signal handling: a run stopped mid-write removes its temp file
    and says so in one line; after kill -9 the next run in the folder removes the leftover."""
    rows = tmp_path / "rows.npy"
    np.save(rows, np.random.default_rng(0).random((100_000, 64), dtype=np.float32) * 16)
    out = tmp_path / "out" / "scores.csv"
    out.parent.mkdir()
    script = "import sys; sys.argv[0] = 'gen'; from gen.cli.entry import main; main()"
    proc = subprocess.Popen([sys.executable, "-c", script, "score", str(bundles["ae"]), str(rows), "--out", str(out),
                             "--chunk-rows", "64", "--batch-size", "64", "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = wait_for(lambda: any(p.suffix == ".part" for p in out.parent.iterdir()) or proc.poll() is not None)
    assert started and proc.poll() is None, "the run ended before it could be signalled"
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert not out.exists()
    leftovers = [p.name for p in out.parent.iterdir()]
    if signum == signal.SIGKILL:
        assert leftovers and all(name.endswith(".part") for name in leftovers)
        np.save(tmp_path / "small.npy", np.zeros((2, 64), np.float32))
        assert gen("score", bundles["ae"], tmp_path / "small.npy", "--out", out).exit_code == 0
        assert sorted(p.name for p in out.parent.iterdir()) == ["scores.csv"]
    else:
        assert leftovers == []
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: interrupted"), err


def test_smaller_catalogue_items(bundles, tmp_path):
    """An empty folder as input (score takes folders of files; encode one file), a wrong-width .npy named by the file's shape (not a chunk's), a
    (3, 8, 8) array refused for a 64-feature bundle, and outputs with the umask's mode."""
    folder = tmp_path / "rows"
    folder.mkdir()
    line = one_line_error(gen("score", bundles["ae"], folder, "--out", tmp_path / "o"))  # a folder of no files
    assert "rows: no .csv, .npy, .parquet files found" in line
    assert "is a folder" in one_line_error(gen("encode", bundles["vae"], folder, "--out", tmp_path / "z.csv"))
    narrow = tmp_path / "narrow.npy"
    np.save(narrow, np.zeros((2, 63), np.float32))
    line = one_line_error(gen("score", bundles["ae"], narrow, "--out", tmp_path / "o.csv", "--chunk-rows", 1))
    assert "(2, 63)" in line
    cube = tmp_path / "cube.npy"
    np.save(cube, np.zeros((3, 8, 8), np.float32))
    assert "(3, 8, 8)" in one_line_error(gen("score", bundles["ae"], cube, "--out", tmp_path / "o.csv"))
    rows = tmp_path / "good.npy"
    np.save(rows, np.zeros((2, 64), np.float32))
    assert gen("score", bundles["ae"], rows, "--out", tmp_path / "o.csv").exit_code == 0
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "o.csv").stat().st_mode & 0o777 == 0o666 & ~mask


def test_undecodable_csvs_and_overflow_are_one_line(bundles, tmp_path):
    import gzip

    latin = tmp_path / "latin.csv"
    latin.write_bytes(("caf\xe9," + ",".join(f"p{i}" for i in range(63)) + "\n" + ",".join(["0"] * 64) + "\n")
                      .encode("latin-1"))
    zipped = tmp_path / "zipped.csv"
    zipped.write_bytes(gzip.compress(b"a,b\n1,2\n"))
    for data in (latin, zipped):
        line = one_line_error(gen("train", "--model", "ae", "--data", data, "--epochs", 1, "--out", tmp_path / "r"))
        assert data.name in line and "UTF-8" in line
        assert "UTF-8" in one_line_error(gen("score", bundles["ae"], data, "--out", tmp_path / "o.csv"))
    big = tmp_path / "big.csv"
    big.write_text(",".join(f"p{i}" for i in range(64)) + "\n" + ",".join(["1e308"] + ["0"] * 63) + "\n")
    line = one_line_error(gen("score", bundles["ae"], big, "--out", tmp_path / "o.csv"))
    assert "line 2, column 1" in line and "1e308" in line
    assert not (tmp_path / "o.csv").exists() and not (tmp_path / "r").exists()


def test_a_signal_during_the_exit_changes_nothing(tmp_path):
    """A SIGTERM that lands after the command has ended (here from an atexit hook, as torch's
    library finalizers run one; a `gen train --nproc` launcher can get its group's SIGTERM
    there) prints no traceback and keeps the command's exit code."""
    script = (
        "import atexit, os, signal, sys, time\n"
        "import gen.cli.main as cli\n"
        "def run():\n"
        "    atexit.register(lambda: (os.kill(os.getpid(), signal.SIGTERM), time.sleep(0.2)))\n"
        "    sys.stderr.write('error: the command failed\\n')\n"
        "    raise SystemExit(1)\n"
        "cli.main = run\n"
        "from gen.cli.entry import main\n"
        "main()\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert (proc.returncode, proc.stderr) == (1, "error: the command failed\n")
