"""`gen score --engine ray` and gen.pipelines.ray.score_dataset on a local Ray cluster started
here: the same scores, row by row, as the single-machine `gen score`; a bad file is one line
and exit 2; nothing is left in --out when the job fails."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from gen.cli.main import app

ray = pytest.importorskip("ray")
runner = CliRunner()
FEATURES = [f"p{i}" for i in range(64)]


def gen(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def cluster():
    """One local Ray cluster for the module (`gen score --engine ray` uses it as it finds it)."""
    import logging

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield
    ray.shutdown()


@pytest.fixture
def partitions(digits_rows, tmp_path):
    root = tmp_path / "in"
    for i in range(4):
        folder = root / f"date=2026-11-2{i // 2}"
        folder.mkdir(parents=True, exist_ok=True)
        rows = digits_rows[i * 70:(i + 1) * 70]
        pq.write_table(pa.table({"id": np.arange(i * 70, (i + 1) * 70),
                                 **{n: rows[:, j] for j, n in enumerate(FEATURES)}}),
                       folder / f"part-{i % 2}.parquet")
    return root


def read_folder(folder, fmt: str) -> pa.Table:
    files = sorted(p for p in folder.iterdir() if p.suffix == f".{fmt}")
    tables = [pq.read_table(p) if fmt == "parquet" else pacsv.read_csv(p) for p in files]
    return pa.concat_tables(tables)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_ray_equals_the_single_machine_row_by_row(cluster, bundles, partitions, tmp_path, fmt):
    if fmt == "csv":  # the same rows as CSV files with a header
        for path in sorted(partitions.rglob("*.parquet")):
            pacsv.write_csv(pq.read_table(path), path.with_suffix(".csv"))
            path.unlink()
    local = tmp_path / f"local.{fmt}"
    assert gen("score", bundles["ae"], partitions, "--out", local, "--single", "--keep-columns", "id",
               "--workers", 1).exit_code == 0
    out = tmp_path / "ray-out"
    result = gen("score", bundles["ae"], partitions, "--out", out, "--engine", "ray", "--keep-columns", "id",
                 "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["rows"] == 280 and summary["files"] == 4 and summary["engine"] == "ray"
    got = read_folder(out, fmt).sort_by("id")  # Ray names the files; rows are matched by the kept id
    want = pq.read_table(local) if fmt == "parquet" else pacsv.read_csv(local)
    assert got.column_names == ["id", "score", "normal_quantile", "flag"]
    assert got.column("id").to_pylist() == want.column("id").to_pylist() == list(range(280))
    np.testing.assert_allclose(got.column("score").to_numpy(), want.column("score").to_numpy(), rtol=1e-6)
    assert got.column("flag").to_pylist() == want.column("flag").to_pylist()
    assert summary["flagged"] == sum(want.column("flag").to_pylist())


def test_score_dataset_with_a_shipped_bundle(cluster, bundles, partitions):
    import ray.data

    from gen.pipelines.ray import score_dataset
    from gen.runtime import load

    files = sorted(str(p) for p in partitions.rglob("*.parquet"))
    dataset = ray.data.read_parquet(files, partitioning=None)
    got = pa.concat_tables(ray.get(ref) for ref in score_dataset(dataset, bundles["ae"], keep_columns=["id"],
                                                                 ship=True, concurrency=1, batch_size=64)
                           .to_arrow_refs()).sort_by("id")  # the order of rows is Ray's; the files hold ids 0..279
    assert got.column("id").to_pylist() == list(range(280))
    rows = np.concatenate([np.stack([pq.read_table(f).column(n).to_numpy() for n in FEATURES], axis=1)
                           for f in files]).astype(np.float32)
    np.testing.assert_allclose(got.column("score").to_numpy(), load(bundles["ae"], device="cpu").score(rows),
                               rtol=1e-6)


def test_a_bad_file_on_ray_is_one_line_and_leaves_no_output(cluster, bundles, partitions, tmp_path):
    bad = sorted(partitions.rglob("*.parquet"))[2]
    table = pq.read_table(bad)
    column = table.column("p7").to_numpy().copy()
    column[5] = np.nan
    pq.write_table(table.set_column(table.schema.get_field_index("p7"), "p7", pa.array(column)), bad)
    out = tmp_path / "ray-out"
    result = gen("score", bundles["ae"], partitions, "--out", out, "--engine", "ray", "--keep-columns", "id")
    assert result.exit_code == 2, result.output
    assert "column 9 (p7): value is nan" in result.output and len(result.output.strip().splitlines()) == 1
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".ray-out")]


def test_ray_refusals(cluster, bundles, partitions, tmp_path, digits_rows):
    np.save(partitions / "extra.npy", digits_rows[:5])
    result = gen("score", bundles["ae"], partitions, "--out", tmp_path / "o", "--engine", "ray")
    assert result.exit_code == 2 and "reads Parquet and CSV files" in result.output
    (partitions / "extra.npy").unlink()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("mine")
    result = gen("score", bundles["ae"], partitions, "--out", tmp_path / "full", "--engine", "ray")
    assert result.exit_code == 2 and "writes a new folder" in result.output
    assert (tmp_path / "full" / "x").read_text() == "mine"
    result = gen("score", bundles["ae"], partitions, "--out", tmp_path / "o", "--engine", "ray", "--single")
    assert result.exit_code == 2 and "local engine's" in result.output


def test_an_unreachable_address_is_one_line_not_minutes_of_retries():
    import socket

    from gen.pipelines.ray import check_reachable
    from gen.runtime import UsageError

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        with pytest.raises(UsageError, match=f"--address {address}: no Ray cluster answers there"):
            check_reachable(address, timeout=2)
    check_reachable("auto")  # Ray's own discovery: not checked here


def test_what_ray_prints_on_stdout_stays_out_of_the_json_summary(cluster, bundles, partitions, tmp_path, monkeypatch):
    """Ray's driver prints the raylet's warnings on sys.stdout (whatever log_to_driver says);
    during `gen score --engine ray` they go to gen's logger, not into the --json summary."""
    from ray._private.worker import print_to_stdstream

    import gen.pipelines.ray as engine

    real = engine.score_dataset

    def noisy(*args, **kwargs):  # what Ray's error listener thread does when the raylet warns
        print_to_stdstream({"lines": ["WARNING: 8 PYTHON worker processes have been started"], "pid": "raylet",
                            "is_err": False}, ignore_prefix=False)
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "score_dataset", noisy)
    result = gen("score", bundles["ae"], partitions, "--out", tmp_path / "out", "--engine", "ray", "--keep-columns", "id",
                 "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"] == 280
    assert "PYTHON worker processes" not in result.output


def test_ray_train_writes_a_run_that_exports_and_serves(cluster, partitions, tmp_path):
    """`gen train --engine ray`: Ray Train's TorchTrainer with two workers on the local cluster,
    each streaming its share of the partition files; rank 0's run folder comes back whole."""
    out = tmp_path / "run"
    result = gen("train", "--model", "ae", "--data", partitions, "--label-column", "id", "--epochs", 2,
                 "--hidden", 16, "--latent-dim", 3, "--engine", "ray", "--nproc", 2, "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    assert not list(tmp_path.glob(".gen-ray-train-*"))  # Ray Train's storage beside --out is gone
    assert "nproc: 2" in (out / "config.yaml").read_text() and "engine" not in gen("export", out, "--out",
                                                                                     tmp_path / "b").output
    from gen.runtime import load

    model = load(tmp_path / "b")
    assert model.manifest.data.feature_names == FEATURES and "engine" not in model.manifest.config
    table = read_folder(partitions / "date=2026-11-20", "parquet")
    rows = np.column_stack([table.column(n).to_numpy() for n in FEATURES]).astype(np.float32)
    assert model.score(rows).shape == (len(rows),)


def test_ray_train_reports_a_bad_input_in_one_line(cluster, partitions, tmp_path):
    result = gen("train", "--model", "ae", "--data", partitions, "--label-column", "nope", "--engine", "ray",
                 "--nproc", 2, "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 2 and "label column 'nope' not found" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "run").exists()
