"""Issue 23, folder jobs (`gen score BUNDLE FOLDER|GLOB --out DIR`), what a hostile tester
found: an output never lands on an input; the resume ledger records what was read; unreadable
inputs and unwritable outputs are one line; symbolic-link loops are walked once; workers die
with their parent; no gen temp file outlives a run; names that are not UTF-8; a stale error
report; summaries that count this run only, in the right plural; no progress bar off a
terminal. The session runs as root, so unreadable files are simulated by patching `open`."""

from __future__ import annotations

import builtins
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gen.cli.main import app

runner = CliRunner()
SCRIPT = "import sys; sys.argv[0] = 'gen'; from gen.cli.entry import main; main()"


def gen(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(result, code: int = 2) -> str:
    lines = result.output.strip().splitlines()
    assert result.exit_code == code, (result.output, result.exception)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def save_csv(path: Path, rows: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, rows, delimiter=",", fmt="%g")
    return path


def data_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def gen_temps(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.name.endswith((".part", ".raw")))


def scored_alone(bundle: Path, source: Path, out: Path, *options) -> bytes:
    assert gen("score", bundle, source, "--out", out, *options).exit_code == 0
    return out.read_bytes()


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under `folder` (symbolic links not followed) and each file's bytes."""
    return {str(p): None if p.is_dir() or p.is_symlink() else p.read_bytes() for p in folder.rglob("*")}


# -- 1. an output never lands on an input ---------------------------------------------------

@pytest.mark.parametrize("source, out", [
    ("nest", "."),                  # nest/nest/f.csv's output is ./nest/f.csv, an input
    ("nest/*.csv", "nest"),         # a glob's outputs written over its own inputs
    ("nest", "alias"),              # the same through a symbolic link to the parent
    ("nest", "nest/nest/../.."),    # ... and through `..`
])
def test_outputs_never_land_on_an_input(bundles, digits_rows, tmp_path, monkeypatch, source, out):
    monkeypatch.chdir(tmp_path)
    save_csv(tmp_path / "nest" / "f.csv", digits_rows[:5])
    save_csv(tmp_path / "nest" / "nest" / "f.csv", digits_rows[5:10])
    (tmp_path / "alias").symlink_to(tmp_path)
    before = snapshot(tmp_path)
    line = one_line_error(gen("score", bundles["ae"], source, "--out", out, "--workers", 1))
    assert "f.csv" in line and "input" in line
    assert snapshot(tmp_path) == before  # nothing written, nothing overwritten


def test_single_never_removes_an_input_in_its_parts_folder(bundles, digits_rows, tmp_path):
    """--single removes its parts folder when done: an input inside it would go with it."""
    source = save_csv(tmp_path / ".all.csv.gen-parts" / "day=1" / "f.csv", digits_rows[:5])
    before = source.read_bytes()
    line = one_line_error(gen("score", bundles["ae"], source.parent, "--single", "--out", tmp_path / "all.csv",
                              "--workers", 1))
    assert "input" in line and source.read_bytes() == before and not (tmp_path / "all.csv").exists()


@pytest.mark.parametrize("verb", ["score", "encode"])
def test_one_file_over_its_input_by_another_name(bundles, digits_rows, tmp_path, verb):
    source = save_csv(tmp_path / "d" / "rows.csv", digits_rows[:5])
    (tmp_path / "link.csv").symlink_to(source)
    before = source.read_bytes()
    for out in (tmp_path / "link.csv", tmp_path / "d" / ".." / "d" / "rows.csv"):
        assert "is also the input" in one_line_error(gen(verb, bundles["ae"], source, "--out", out))
    assert source.read_bytes() == before


# -- 2. the ledger records what was read ----------------------------------------------------

def replace_while_reading(monkeypatch, target: Path, make_new, times: int = 1) -> None:
    """Patch the rows reader so that, after the first chunk of `target`, the file is replaced
    (`mv new a`: a new inode, as an upstream writer does) `times` times."""
    from gen.runtime import model as model_module

    real = model_module.iter_rows
    left = [times]

    def reader(path, *args, **kwargs):
        for i, chunk in enumerate(real(path, *args, **kwargs)):
            if i == 1 and left[0] and Path(path) == target:
                left[0] -= 1
                new = make_new()
                os.replace(new, target)
            yield chunk

    monkeypatch.setattr(model_module, "iter_rows", reader)


@pytest.mark.parametrize("suffix", [".csv", ".npy"])
def test_a_file_replaced_while_scored_is_rescored_not_resumed(bundles, digits_rows, tmp_path, monkeypatch, suffix):
    def write(path, rows):
        path.parent.mkdir(parents=True, exist_ok=True)
        save_csv(path, rows) if suffix == ".csv" else np.save(path, rows)
        return path

    source = write(tmp_path / "in" / f"a{suffix}", digits_rows[:300])
    new_rows = digits_rows[300:500] + 1
    expected = scored_alone(bundles["ae"], write(tmp_path / f"new{suffix}", new_rows), tmp_path / f"expected{suffix}",
                            "--chunk-rows", 64)
    replace_while_reading(monkeypatch, source, lambda: write(tmp_path / f"next{suffix}", new_rows))
    out = tmp_path / "out"
    result = gen("score", bundles["ae"], tmp_path / "in", "--out", out, "--workers", 1, "--chunk-rows", 64)
    assert result.exit_code == 0, result.output
    assert (out / f"a{suffix}").read_bytes() == expected  # the new file's scores, not the old rows'
    summary = json.loads(gen("score", bundles["ae"], tmp_path / "in", "--out", out, "--workers", 1, "--resume",
                             "--json").stdout)
    assert summary["resumed"] == 1 and (out / f"a{suffix}").read_bytes() == expected


def test_a_file_that_keeps_changing_is_one_line_and_has_no_output(bundles, digits_rows, tmp_path, monkeypatch):
    source = save_csv(tmp_path / "in" / "a.csv", digits_rows[:300])
    save_csv(tmp_path / "in" / "b.csv", digits_rows[300:310])
    counter = iter(range(1000))
    replace_while_reading(monkeypatch, source,
                          lambda: save_csv(tmp_path / "next.csv", digits_rows[:300] + next(counter)), times=100)
    out = tmp_path / "out"
    line = one_line_error(gen("score", bundles["ae"], tmp_path / "in", "--out", out, "--workers", 1,
                              "--chunk-rows", 64))
    assert "a.csv" in line and "changed while" in line
    assert not (out / "a.csv").exists()
    result = gen("score", bundles["ae"], tmp_path / "in", "--out", out, "--workers", 1, "--chunk-rows", 64,
                 "--skip-bad", "--json")
    assert result.exit_code == 2
    failed = json.loads((out / ".gen-errors.json").read_text())
    assert [f["input"] for f in failed] == [str(source)] and (out / "b.csv").is_file()
    assert not (out / "a.csv").exists()


# -- 3. unreadable inputs -------------------------------------------------------------------

@pytest.fixture
def deny(monkeypatch):
    """Make `open` and `os.scandir` of the given paths fail as they do for a non-root user
    without the read permission (the tests run as root, whom chmod 000 does not stop)."""
    denied: set[str] = set()
    real_open, real_scandir = builtins.open, os.scandir

    def check(path):
        if isinstance(path, (str, bytes, os.PathLike)) and os.path.realpath(os.fsdecode(path)) in denied:
            raise PermissionError(13, "Permission denied", os.fsdecode(path))

    def fake_open(file, *args, **kwargs):
        check(file)
        return real_open(file, *args, **kwargs)

    def fake_scandir(path="."):
        check(path)
        return real_scandir(path)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(os, "scandir", fake_scandir)
    return lambda *paths: denied.update(os.path.realpath(p) for p in paths)


@pytest.mark.parametrize("suffix", [".csv", ".npy"])
def test_an_unreadable_file_is_one_line_and_a_bad_file(bundles, digits_rows, tmp_path, deny, suffix):
    root = tmp_path / "in"
    save_csv(root / "good.csv", digits_rows[:5])
    bad = root / f"locked{suffix}"
    save_csv(bad, digits_rows[:5]) if suffix == ".csv" else np.save(bad, digits_rows[:5])
    deny(bad)
    line = one_line_error(gen("score", bundles["ae"], root, "--out", tmp_path / "o", "--workers", 1))
    assert f"locked{suffix}" in line and "Permission denied" in line
    result = gen("score", bundles["ae"], root, "--out", tmp_path / "o2", "--workers", 1, "--skip-bad")
    assert result.exit_code == 2 and "Permission denied" in result.stderr
    failed = json.loads((tmp_path / "o2" / ".gen-errors.json").read_text())
    assert [f["input"] for f in failed] == [str(bad)] and data_files(tmp_path / "o2") == ["good.csv"]


@pytest.mark.parametrize("source", ["folder", "glob"])
def test_an_unreadable_sub_folder_is_reported(bundles, digits_rows, tmp_path, deny, source):
    root = tmp_path / "in"
    save_csv(root / "day=1" / "f.csv", digits_rows[:5])
    save_csv(root / "day=2" / "f.csv", digits_rows[5:10])
    deny(root / "day=2")
    arg = root if source == "folder" else f"{root}/**/*.csv"
    line = one_line_error(gen("score", bundles["ae"], arg, "--out", tmp_path / "o", "--workers", 1))
    assert "day=2" in line and "Permission denied" in line
    assert not (tmp_path / "o").exists()
    result = gen("score", bundles["ae"], arg, "--out", tmp_path / "o2", "--workers", 1, "--skip-bad")
    assert result.exit_code == 2
    failed = json.loads((tmp_path / "o2" / ".gen-errors.json").read_text())
    assert [f["input"] for f in failed] == [str(root / "day=2")]
    assert data_files(tmp_path / "o2") == ["day=1/f.csv"]


# -- 4. outputs that cannot be written ------------------------------------------------------

def test_an_output_folder_that_cannot_be_made_is_one_line(bundles, digits_rows, tmp_path, monkeypatch):
    root = tmp_path / "in"
    save_csv(root / "day=1" / "f.csv", digits_rows[:5])
    (tmp_path / "afile").write_text("a file, not a folder")
    line = one_line_error(gen("score", bundles["ae"], root, "--out", tmp_path / "afile" / "out", "--workers", 1))
    assert "afile" in line and "Not a directory" in line
    named = tmp_path / "named"  # --engine ray reads CSV with a header
    named.mkdir()
    np.savetxt(named / "f.csv", digits_rows[:5], delimiter=",", fmt="%g", comments="",
               header=",".join(f"p{i}" for i in range(64)))
    line = one_line_error(gen("score", bundles["ae"], named, "--out", tmp_path / "afile" / "out", "--engine", "ray"))
    assert "afile" in line and ("Not a directory" in line or "File exists" in line)

    real_mkdir = Path.mkdir

    def read_only(self, *args, **kwargs):  # a read-only parent, as a non-root user meets it
        if str(self).startswith(str(tmp_path / "ro")):
            raise PermissionError(13, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    line = one_line_error(gen("score", bundles["ae"], root, "--out", tmp_path / "ro" / "out", "--workers", 1))
    assert "ro/out" in line and "Permission denied" in line


def test_a_full_disk_is_one_line_and_stops_even_skip_bad(bundles, digits_rows, tmp_path, monkeypatch):
    import errno

    real_open = builtins.open

    class Full:  # a file on a full disk: every write fails as the OS says
        def __init__(self, file):
            self.file = file

        def __getattr__(self, name):
            return getattr(self.file, name)

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        writelines = write

    def fake_open(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        full = "w" in mode and str(file).startswith(str(tmp_path / "full")) and str(file).endswith(".part")
        return Full(handle) if full else handle

    monkeypatch.setattr(builtins, "open", fake_open)
    source = save_csv(tmp_path / "in" / "a.csv", digits_rows[:5])
    save_csv(tmp_path / "in" / "b.csv", digits_rows[5:10])
    (tmp_path / "full").mkdir()
    line = one_line_error(gen("score", bundles["ae"], source, "--out", tmp_path / "full" / "a.csv"))
    assert "full/a.csv: cannot write (No space left on device)" in line
    line = one_line_error(gen("score", bundles["ae"], tmp_path / "in", "--out", tmp_path / "full", "--workers", 1,
                              "--skip-bad"))
    assert "full/a.csv: cannot write (No space left on device)" in line  # not a bad input: the job stops
    assert gen_temps(tmp_path / "full") == [] and data_files(tmp_path / "full") == []


# -- 5. symbolic-link loops -----------------------------------------------------------------

def test_symlink_loops_are_walked_once(digits_rows, tmp_path):
    from gen.runtime.batch import expand

    d = tmp_path / "d"
    save_csv(d / "f.csv", digits_rows[:2])
    save_csv(d / "sub" / "g.csv", digits_rows[:2])
    save_csv(tmp_path / "other" / "h.csv", digits_rows[:2])
    (d / "self").symlink_to(".")                   # a loop onto the folder itself
    (d / "sub" / "up").symlink_to("..")            # a loop onto an ancestor
    (d / "parent").symlink_to("..")                # the root's own parent: never walked
    (d / "again").symlink_to("sub")                # a folder already walked
    (d / "ext").symlink_to(tmp_path / "other")     # a folder outside: walked once
    (d / "alias.csv").symlink_to("f.csv")          # a file already found
    for source in (d, f"{d}/**/*.csv", f"{d}/**"):
        root, files = expand(source)
        assert root == d
        assert [str(f.relative_to(d)) for f in files] == ["ext/h.csv", "f.csv", "sub/g.csv"], source
    root, files = expand(f"{d}/*/*.csv")
    assert [str(f.relative_to(d)) for f in files] == ["ext/h.csv", "sub/g.csv"]


def test_two_symlink_loops_finish(bundles, digits_rows, tmp_path):
    d = tmp_path / "d"
    save_csv(d / "f.csv", digits_rows[:2])
    (d / "self").symlink_to(".")
    (d / "loop").symlink_to(".")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", SCRIPT, "score", str(bundles["ae"]), f"{d}/**/*.csv", "--out",
                           str(out), "--workers", "1", "--device", "cpu"], capture_output=True, text=True,
                          timeout=300)  # bounds a hang (the old walk took minutes); not a speed check
    assert proc.returncode == 0, proc.stderr
    assert data_files(out) == ["f.csv"]


# -- 6. workers die with their parent -------------------------------------------------------

def children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with open(task / "children") as f:
            found |= {int(p) for p in f.read().split()}
    return found


def running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


LINUX_CHILDREN = Path(f"/proc/self/task/{os.getpid()}/children").exists()


@pytest.mark.skipif(not LINUX_CHILDREN, reason="reads worker pids from /proc (Linux)")
def test_workers_exit_when_the_main_process_is_killed(bundles, digits_rows, tmp_path):
    root = tmp_path / "in"
    for i in range(4):
        (root / f"part={i}").mkdir(parents=True)
        np.save(root / f"part={i}" / "rows.npy", np.tile(digits_rows[:50], (1000, 1)))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, "score", str(bundles["ae"]), str(root), "--out", str(out),
                             "--workers", "2", "--chunk-rows", "64", "--device", "cpu"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: set[int] = set()
    try:
        end = time.monotonic() + 120
        while time.monotonic() < end and proc.poll() is None and not (len(workers) == 2 and gen_temps(out)):
            workers = children(proc.pid) if proc.poll() is None else workers
            time.sleep(0.05)
        assert proc.poll() is None and len(workers) == 2, "the job ended before its workers were seen scoring"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        end = time.monotonic() + 60  # generous: a bound on a hang, not a speed check
        while time.monotonic() < end and any(running(p) for p in workers):
            time.sleep(0.1)
        assert not any(running(p) for p in workers), "worker processes outlived the killed job"
    finally:
        for pid in workers:  # the old behaviour: leave nothing running after the test
            if running(pid):
                os.kill(pid, signal.SIGKILL)
    result = gen("score", bundles["ae"], root, "--out", out, "--workers", 1, "--resume")
    assert result.exit_code == 0, result.output
    assert gen_temps(out) == [] and data_files(out) == data_files(root)


@pytest.mark.skipif(not hasattr(os, "fork") or not Path("/proc/self/stat").exists(), reason="forks; reads /proc")
def test_the_parent_watch_alone_ends_an_orphan():
    """The portable half (no parent-death signal): a process watching its parent ends once
    the parent is gone."""
    code = ("import os, sys, time\n"
            "if os.fork() == 0:\n"
            "    from gen.runtime.batch import _watch_parent\n"
            "    parent = os.getppid()\n"
            "    print(os.getpid(), flush=True)\n"
            "    _watch_parent(parent)\n"
            "else:\n"
            "    time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    orphan = None
    try:
        import select

        ready, _, _ = select.select([proc.stdout], [], [], 60)
        line = proc.stdout.readline() if ready else ""
        assert line.strip().isdigit(), "the watcher did not start"
        orphan = int(line)
        assert running(orphan)
        proc.kill()
        proc.wait()
        end = time.monotonic() + 60  # generous: a bound on a hang, not a speed check
        while time.monotonic() < end and running(orphan):
            time.sleep(0.1)
        assert not running(orphan), "the orphan outlived its parent"
    finally:
        proc.kill()
        if orphan is not None and running(orphan):
            os.kill(orphan, signal.SIGKILL)


# -- 7. no gen temp file outlives a run -----------------------------------------------------

def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_resume_with_nothing_to_do_removes_dead_temps(bundles, digits_rows, tmp_path):
    root = tmp_path / "in"
    save_csv(root / "day=1" / "f.csv", digits_rows[:5])
    out = tmp_path / "out"
    assert gen("score", bundles["ae"], root, "--out", out, "--workers", 1).exit_code == 0
    dead = dead_pid()
    stale = [out / f".gen-score.json.{dead}.ab12cd34.part", out / "day=1" / f".f.csv.{dead}.ef56gh78.part",
             out / "day=1" / f".gone.npy.{dead}.ij90kl12.raw"]
    for path in stale:
        path.write_text("left by a killed run")
    result = gen("score", bundles["ae"], root, "--out", out, "--workers", 1, "--resume")
    assert result.exit_code == 0, result.output
    assert gen_temps(out) == []


def test_a_write_removes_the_dead_temps_of_other_outputs_beside_it(bundles, digits_rows, tmp_path):
    folder = tmp_path / "scores"
    folder.mkdir()
    stale = folder / f".first.csv.{dead_pid()}.ab12cd34.part"  # what kill -9 left of another output
    stale.write_text("left by a killed run")
    source = save_csv(tmp_path / "rows.csv", digits_rows[:5])
    assert gen("score", bundles["ae"], source, "--out", folder / "second.csv").exit_code == 0
    assert sorted(p.name for p in folder.iterdir()) == ["second.csv"]


# -- 8. names that are not UTF-8 ------------------------------------------------------------

@pytest.mark.skipif(sys.platform in ("darwin", "win32"), reason="file names there are always Unicode")
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_single_with_a_folder_name_that_is_not_utf8(bundles, digits_rows, tmp_path, suffix):
    root = tmp_path / "in"
    odd = root / os.fsdecode(b"date=caf\xe9")
    save_csv(odd / "f.csv", digits_rows[:3])
    save_csv(root / "date=plain" / "f.csv", digits_rows[3:5])
    out = tmp_path / f"all{suffix}"
    result = gen("score", bundles["ae"], root, "--single", "--out", out, "--workers", 1)
    assert result.exit_code == 0, (result.output, result.exception)
    if suffix == ".csv":
        names = [line.split(",")[0] for line in out.read_text(encoding="utf-8").splitlines()[1:]]
    else:
        import pyarrow.parquet as pq

        names = pq.read_table(out).column("source").to_pylist()
    assert names == ["date=caf\\xe9/f.csv"] * 3 + ["date=plain/f.csv"] * 2


# -- 9. a stale error report ----------------------------------------------------------------

def test_a_fixed_bad_file_leaves_no_stale_error_report(bundles, digits_rows, tmp_path):
    root = tmp_path / "in"
    save_csv(root / "good.csv", digits_rows[:5])
    bad = root / "bad.npy"
    np.save(bad, np.zeros((3, 63), np.float32))
    out = tmp_path / "out"
    assert gen("score", bundles["ae"], root, "--out", out, "--workers", 1, "--skip-bad").exit_code == 2
    assert (out / ".gen-errors.json").is_file()
    np.save(bad, digits_rows[:3])
    for extra in (("--resume",), ()):
        result = gen("score", bundles["ae"], root, "--out", out, "--workers", 1, *extra)
        assert result.exit_code == 0, result.output
        assert not (out / ".gen-errors.json").exists()


# -- 10. summaries count this run -----------------------------------------------------------

def test_a_resume_summary_counts_only_what_it_scored(bundles, digits_rows, tmp_path):
    root = tmp_path / "in"
    for i in range(3):
        save_csv(root / f"day={i}" / "f.csv", digits_rows[i * 100:(i + 1) * 100])
    out = tmp_path / "out"
    assert gen("score", bundles["ae"], root, "--out", out, "--workers", 1).exit_code == 0
    result = gen("score", bundles["ae"], root, "--out", out, "--workers", 2, "--resume")
    assert result.exit_code == 0
    assert result.stdout.startswith("nothing to score: 3 files already done") and "rows/s" not in result.stdout
    summary = json.loads(gen("score", bundles["ae"], root, "--out", out, "--workers", 2, "--resume", "--json").stdout)
    assert summary["rows"] == 300 and summary["rows_scored"] == 0 and summary["rows_per_s"] is None
    assert summary["workers"] == 0 and summary["workers_requested"] == 2

    save_csv(root / "day=0" / "f.csv", digits_rows[:40])  # changed: scored again, alone
    summary = json.loads(gen("score", bundles["ae"], root, "--out", out, "--workers", 2, "--resume", "--json").stdout)
    assert summary["files"] == 3 and summary["rows"] == 240 and summary["resumed"] == 2
    assert summary["files_scored"] == 1 and summary["rows_scored"] == 40
    assert summary["rows_per_s"] == pytest.approx(40 / summary["seconds"])
    assert summary["workers"] == 1 and summary["workers_requested"] == 2
    text = gen("score", bundles["ae"], root, "--out", out, "--workers", 2).stdout  # all three again
    assert text.startswith("3 files, 240 rows scored") and "with 2 workers" in text


# -- 11. plurals ----------------------------------------------------------------------------

def test_summaries_say_one_row_one_file(bundles, digits_rows, tmp_path, monkeypatch):
    source = save_csv(tmp_path / "in" / "one.csv", digits_rows[:1])
    result = gen("score", bundles["ae"], source, "--out", tmp_path / "o.csv")
    assert result.stdout.startswith("1 row scored ->"), result.stdout
    result = gen("encode", bundles["ae"], source, "--out", tmp_path / "z.csv")
    assert result.stdout.startswith("1 code of dimension"), result.stdout
    result = gen("sample", bundles["ae"], "--n", 1, "--out", tmp_path / "s.npy")
    assert result.stdout.startswith("1 sample ->"), result.stdout
    result = gen("score", bundles["ae"], tmp_path / "in", "--out", tmp_path / "o", "--workers", 1)
    assert result.stdout.startswith("1 file, 1 row scored ->") and "with 1 worker;" in result.stdout

    import gen.pipelines.ray as ray_module

    def one_file(bundle, source, out, **kwargs):
        return {"files": 1, "outputs": [str(Path(out) / "x.csv")], "rows": 1, "flagged": 1, "seconds": 0.5}

    monkeypatch.setattr(ray_module, "score_files", one_file)
    result = gen("score", bundles["ae"], tmp_path / "in", "--out", tmp_path / "r", "--engine", "ray")
    assert result.exit_code == 0, result.output
    line = result.stdout.strip()
    assert line.startswith("1 file, 1 row scored on Ray") and "(1 output file;" in line, line


# -- 12. progress off a terminal ------------------------------------------------------------

@pytest.mark.parametrize("env", [{"FORCE_COLOR": "1"}, {"TTY_COMPATIBLE": "1"}])
def test_no_progress_bar_on_a_stderr_that_is_not_a_terminal(bundles, digits_rows, tmp_path, monkeypatch, env):
    for name, value in env.items():  # what CI systems set: rich then draws its bar, cut at 80 columns
        monkeypatch.setenv(name, value)
    source = tmp_path / "rows.npy"
    np.save(source, np.tile(digits_rows, (4, 1)))
    result = gen("score", bundles["ae"], source, "--out", tmp_path / "o.csv", "--chunk-rows", 64)
    assert result.exit_code == 0
    assert "scoring:" not in result.stderr and "\r" not in result.stderr and "\x1b" not in result.stderr
