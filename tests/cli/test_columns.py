"""`gen score --columns / --keep-columns` on wide tables, `--single` on folders, and a worker
process killed mid-file: retried once, outputs as if nothing happened."""

from __future__ import annotations

import csv
import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from gen.cli.main import app

runner = CliRunner()
FEATURES = [f"p{i}" for i in range(64)]


def gen(*args):
    return runner.invoke(app, [str(a) for a in args])


def wide_table(rows: np.ndarray, first_id: int = 0) -> pa.Table:
    """An id and a text column around the 64 features, plus an unused column at the end."""
    n = len(rows)
    return pa.table({"id": np.arange(first_id, first_id + n), "day": [f"d,{i % 3}" for i in range(n)],
                     **{name: rows[:, i] for i, name in enumerate(FEATURES)}, "unused": np.ones(n)})


def write_csv(table: pa.Table, path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(table.column_names)
        for row in zip(*(table.column(c).to_pylist() for c in table.column_names)):
            writer.writerow([f"{v:.9g}" if isinstance(v, float) else v for v in row])


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_columns_select_features_and_keep_columns_copy_ids(bundles, digits_rows, tmp_path, fmt):
    rows = digits_rows[:120]
    table = wide_table(rows, first_id=500)
    source = tmp_path / f"wide.{fmt}"
    pq.write_table(table, source) if fmt == "parquet" else write_csv(table, source)
    plain = tmp_path / "plain.npy"
    np.save(plain, rows)
    assert gen("score", bundles["ae"], plain, "--out", tmp_path / "plain.csv").exit_code == 0
    expected = np.loadtxt(tmp_path / "plain.csv", delimiter=",", skiprows=1)

    out = tmp_path / f"scores.{fmt}"
    result = gen("score", bundles["ae"], source, "--out", out, "--columns", ",".join(FEATURES),
                 "--keep-columns", "id,day")
    assert result.exit_code == 0, result.output
    got = pq.read_table(out) if fmt == "parquet" else pacsv.read_csv(out)
    assert got.column_names == ["id", "day", "index", "score", "normal_quantile", "flag"]
    assert got.column("id").to_pylist() == list(range(500, 620))
    assert got.column("day").to_pylist() == [f"d,{i % 3}" for i in range(120)]  # quoted in CSV, read back whole
    np.testing.assert_allclose(got.column("score").to_numpy(), expected[:, 1], rtol=1e-6)
    assert got.column("flag").to_numpy().astype(int).tolist() == expected[:, 3].astype(int).tolist()
    if fmt == "parquet":  # kept columns keep their type
        assert got.schema.field("id").type == pa.int64()


def test_column_errors_name_the_column(bundles, digits_rows, tmp_path):
    table = wide_table(digits_rows[:20])
    source = tmp_path / "wide.parquet"
    pq.write_table(table, source)
    cases = [
        (("--keep-columns", "id,day"), "expected 64 feature columns, got 65"),  # `unused` is a feature too
        (("--columns", ",".join(FEATURES), "--keep-columns", "ident"), "no column 'ident' (columns: id, day, p0"),
        (("--columns", "p1,p1"), "column 'p1' is named twice"),
        (("--columns", ",".join(["day", *FEATURES[1:]])), "column 2 (day): expected numbers, got string"),
        (("--columns", ",".join(FEATURES), "--keep-columns", "id", "--out", tmp_path / "s.npy"),
         "--keep-columns writes .csv or .parquet"),
    ]
    for options, message in cases:
        out = ("--out", tmp_path / "s.csv") if "--out" not in options else ()
        result = gen("score", bundles["ae"], source, *out, *options)
        assert result.exit_code == 2, (options, result.output)
        assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
    np.save(tmp_path / "rows.npy", digits_rows[:5])
    result = gen("score", bundles["ae"], tmp_path / "rows.npy", "--out", tmp_path / "r.csv", "--keep-columns", "id")
    assert result.exit_code == 2 and "an NPY file has none" in result.output
    assert not list(tmp_path.glob("s.*")) and not (tmp_path / "r.csv").exists()


@pytest.fixture
def partitions(digits_rows, tmp_path):
    root = tmp_path / "in"
    for i in range(4):
        folder = root / f"date=2026-11-2{i // 2}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(wide_table(digits_rows[i * 60:(i + 1) * 60], first_id=i * 60).drop(["unused"]),
                       folder / f"part-{i % 2}.parquet")
    return root


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_single_output_joins_the_files_in_order_with_their_source(bundles, partitions, tmp_path, fmt):
    per_file = tmp_path / "per-file"
    assert gen("score", bundles["ae"], partitions, "--out", per_file, "--keep-columns", "id,day",
               "--workers", 1).exit_code == 0
    out = tmp_path / f"all.{fmt}"
    result = gen("score", bundles["ae"], partitions, "--out", out, "--single", "--keep-columns", "id,day",
                 "--workers", 2, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"] == 240
    table = pq.read_table(out) if fmt == "parquet" else pacsv.read_csv(out)
    names = sorted(p.relative_to(per_file).as_posix() for p in per_file.rglob("*.parquet"))
    assert table.column_names == ["source", "id", "day", "index", "score", "normal_quantile", "flag"]
    assert table.column("source").to_pylist() == [n for n in names for _ in range(60)]
    assert table.column("id").to_pylist() == list(range(240))
    expected = np.concatenate([pq.read_table(per_file / n).column("score").to_numpy() for n in names])
    np.testing.assert_allclose(table.column("score").to_numpy(), expected, rtol=1e-8)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir()), "the parts folder is removed"


def test_single_refusals(bundles, partitions, tmp_path):
    for out, options, message in [(tmp_path / "all.npy", (), "--single writes one .csv or .parquet"),
                                  (tmp_path / "all.csv", ("--keep-columns", "source"), "'source' is also"),
                                  (tmp_path / "x.csv", (), None)]:
        if message is None:  # --single with one input file
            result = gen("score", bundles["ae"], partitions / "date=2026-11-20" / "part-0.parquet", "--out", out,
                         "--single")
            message = "apply to a folder or glob input"
        else:
            result = gen("score", bundles["ae"], partitions, "--out", out, "--single", *options)
        assert result.exit_code == 2 and message in result.output, result.output


def test_a_killed_worker_is_retried_and_the_outputs_are_whole(bundles, digits_rows, tmp_path):
    """SIGKILL one worker while it writes a file: the pool is rebuilt once, every file is
    scored, nothing partial stays, and the outputs equal an uninterrupted run's."""
    import os
    import re
    import signal
    import subprocess
    import sys
    import time

    root = tmp_path / "in"
    root.mkdir()
    for i in range(3):  # CSV parsing is slow enough to catch a worker mid-file
        np.savetxt(root / f"part-{i}.csv", np.tile(digits_rows[i * 40:(i + 1) * 40], (500, 1)), delimiter=",",
                   fmt="%g")
    whole = tmp_path / "whole"
    assert gen("score", bundles["ae"], root, "--out", whole, "--workers", 1).exit_code == 0

    out = tmp_path / "out"
    script = "import sys; sys.argv[0] = 'gen'; from gen.cli.entry import main; main()"
    proc = subprocess.Popen([sys.executable, "-c", script, "score", str(bundles["ae"]), str(root), "--out", str(out),
                             "--workers", "2", "--device", "cpu", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    temp = re.compile(r"^\.part-\d\.csv\.(\d+)\.\w+\.part$")
    victim, end = None, time.monotonic() + 120
    while victim is None and time.monotonic() < end and proc.poll() is None:
        for entry in (out.iterdir() if out.is_dir() else ()):
            match = temp.match(entry.name)
            if match and int(match.group(1)) != proc.pid:
                victim = int(match.group(1))
                break
        time.sleep(0.005)
    assert victim is not None, "no worker was caught writing"
    os.kill(victim, signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert json.loads(stdout)["rows"] == 3 * 20_000
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert names == ["part-0.csv", "part-1.csv", "part-2.csv"]
    assert not [p.name for p in out.iterdir() if p.name.endswith((".part", ".raw"))]
    for name in names:
        assert (out / name).read_bytes() == (whole / name).read_bytes(), name


def test_a_worker_dying_twice_stops_the_job_in_one_line(bundles, digits_rows, tmp_path, monkeypatch):
    from concurrent.futures.process import BrokenProcessPool

    from gen.runtime import batch

    calls = []

    def broken(jobs, *args, **kwargs):
        calls.append(len(jobs))
        raise BrokenProcessPool("a child process terminated abruptly")

    monkeypatch.setattr(batch, "_run_pool", broken)
    root = tmp_path / "in"
    root.mkdir()
    for i in range(2):
        np.save(root / f"p{i}.npy", digits_rows[:10])
    result = gen("score", bundles["ae"], root, "--out", tmp_path / "out", "--workers", 2)
    assert calls == [2, 2]  # tried, then retried once
    assert result.exit_code == 1
    assert "a worker process died twice" in result.output and "--resume" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_single_csv_keeps_multiline_cells_and_writes_nothing_when_every_file_is_bad(bundles, digits_rows, tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    for i in range(2):
        table = wide_table(digits_rows[i * 5:(i + 1) * 5], first_id=i * 5).drop(["unused"])
        table = table.set_column(1, "day", pa.array([f"line one\nline {k}" for k in range(5)]))
        write_csv(table, root / f"p{i}.csv")
    out = tmp_path / "all.csv"
    assert gen("score", bundles["ae"], root, "--out", out, "--single", "--keep-columns", "id,day").exit_code == 0
    got = pacsv.read_csv(out, parse_options=pacsv.ParseOptions(newlines_in_values=True))
    assert got.column("source").to_pylist() == ["p0.csv"] * 5 + ["p1.csv"] * 5
    assert got.column("day").to_pylist() == [f"line one\nline {k}" for k in range(5)] * 2
    for f in root.iterdir():
        f.write_text("id,day\n1,x\n")  # every file bad: too few feature columns
    result = gen("score", bundles["ae"], root, "--out", tmp_path / "none.parquet", "--single", "--keep-columns", "id",
                 "--skip-bad")
    assert result.exit_code == 2 and not (tmp_path / "none.parquet").exists()


def test_a_column_named_twice_in_the_header_is_refused(bundles, digits_rows, tmp_path):
    path = tmp_path / "dup.csv"
    names = ["id", *FEATURES[:20], FEATURES[20], FEATURES[20], *FEATURES[22:]]
    np.savetxt(path, np.column_stack([np.arange(5), digits_rows[:5]]), delimiter=",", fmt="%g",
               header=",".join(names), comments="")
    result = gen("score", bundles["ae"], path, "--out", tmp_path / "s.csv", "--keep-columns", "id")
    assert result.exit_code == 2 and "column 'p20' appears twice in the header" in result.output
    result = gen("score", bundles["ae"], path, "--out", tmp_path / "s.csv",
                 "--keep-columns", "id", "--explain", "1")
    assert result.exit_code == 2
    table = wide_table(digits_rows[:5]).drop(["unused"]).rename_columns(["id", "top1_error", *FEATURES])
    pq.write_table(table, tmp_path / "clash.parquet")
    result = gen("score", bundles["ae"], tmp_path / "clash.parquet", "--out", tmp_path / "c.csv", "--explain", "1",
                 "--keep-columns", "id,top1_error", "--columns", ",".join(FEATURES))
    assert result.exit_code == 2 and "'top1_error' is also an output column" in result.output
