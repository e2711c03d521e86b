"""Training rows streamed from files (issue 25, trainer/stream.py): the held-out rows follow
from a seeded hash of row positions alone (the same whatever the chunking, run or process),
each epoch visits every fitting row once, seeded, and the statistics of one streamed pass
equal those of the rows in memory; `gen train` on a folder trains and exports like a file."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from gen.cli.main import app
from gen.runtime import load
from gen.runtime.batch import expand
from gen.trainer import stream
from gen.trainer.protocols.one_class import calibration_size
from gen.trainer.stream import CALIBRATION, FIT, TEST, row_hash, scan

runner = CliRunner()


def gen(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def folder(tmp_path):
    """Rows whose first column is their position in the file list (partitions sorted by name),
    in Parquet, CSV and NPY files of uneven lengths."""
    rng = np.random.default_rng(0)
    root, start = tmp_path / "in", 0
    for i, (n, fmt) in enumerate([(130, "parquet"), (70, "csv"), (201, "npy"), (99, "parquet")]):
        rows = np.column_stack([np.arange(start, start + n), rng.normal(size=(n, 3))]).astype(np.float32)
        start += n
        folder = root / f"day={i}"
        folder.mkdir(parents=True)
        if fmt == "parquet":
            pq.write_table(pa.table({f"c{j}": rows[:, j] for j in range(4)}), folder / "part.parquet")
        elif fmt == "csv":
            np.savetxt(folder / "part.csv", rows, delimiter=",", header="c0,c1,c2,c3", comments="", fmt="%.9g")
        else:
            np.save(folder / "part.npy", rows)
    return root


def scanned(root, seed=5, fraction=0.1, **kw):
    return scan(expand(root)[1], str(root), seed, calibration_fraction=fraction, **kw)


def ids(rows) -> np.ndarray:
    return np.asarray(rows)[:, 0].astype(np.int64)


def test_the_held_out_rows_follow_from_the_seed_and_position_alone(folder, monkeypatch):
    a = scanned(folder)
    zone = a.zone(np.arange(a.n_rows))
    assert a.n_rows == 500 and a.n_fit == int((zone == FIT).sum())
    np.testing.assert_array_equal(ids(a.test[0]), np.flatnonzero(zone == TEST))
    np.testing.assert_array_equal(ids(a.calibration[0]), np.flatnonzero(zone == CALIBRATION))
    assert 0.12 < (zone == TEST).mean() < 0.28
    n_train = int((zone != TEST).sum())  # the in-memory split's number: 10%, at least min(200, 25%)
    assert (zone == CALIBRATION).sum() == calibration_size(n_train, 0.1) == n_train // 4
    monkeypatch.setattr(stream, "CHUNK_ROWS", 17)  # other chunks, the same rows held out
    b = scanned(folder)
    np.testing.assert_array_equal(a.calibration[0], b.calibration[0])
    np.testing.assert_array_equal(a.test[0], b.test[0])
    assert not np.array_equal(ids(scanned(folder, seed=6).test[0]), ids(a.test[0]))
    np.testing.assert_array_equal(row_hash(np.arange(5), 5), row_hash(np.arange(5), 5))


def test_samples_are_capped_at_the_rows_of_smallest_hash(folder, monkeypatch):
    monkeypatch.setattr(stream, "MAX_SAMPLE_ROWS", 20)
    a = scanned(folder)
    zone = a.zone(np.arange(a.n_rows))
    test_rows = np.flatnonzero(zone == TEST)
    h = row_hash(test_rows, 5 ^ 0x5A5A5A5A)
    np.testing.assert_array_equal(ids(a.test[0]), np.sort(test_rows[np.argsort(h)[:20]]))
    assert len(a.calibration[0]) == 20 and len(a.fit_sample[0]) <= 20 and a.n_fit > 300  # the statistics: all
    np.testing.assert_array_equal(ids(a.calibration[0]), np.flatnonzero(zone == CALIBRATION))
    assert not set(ids(a.fit_sample[0])) & set(ids(a.calibration[0]))
    monkeypatch.setattr(stream, "CHUNK_ROWS", 9)
    np.testing.assert_array_equal(scanned(folder).test[0], a.test[0])


def test_one_pass_statistics_equal_those_of_the_rows_in_memory(folder):
    a = scanned(folder)
    every = np.concatenate([chunk for f in range(4) for _, chunk, _ in a._chunks(f)])
    fit = every[a.zone(np.arange(len(every))) == FIT].astype(np.float64)
    np.testing.assert_allclose(a.mean, fit.mean(axis=0), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(a.std, fit.std(axis=0), rtol=1e-9)
    assert (a.lo, a.hi) == (fit.min(), fit.max())


@pytest.mark.parametrize("shuffle_rows", [None, 40])
def test_an_epoch_visits_every_fitting_row_once_seeded(folder, monkeypatch, shuffle_rows):
    if shuffle_rows:  # a buffer smaller than the data: rows are mixed in it as they stream
        monkeypatch.setattr(stream, "SHUFFLE_BYTES", 4 * 4 * shuffle_rows)
    a = scanned(folder)
    fit = np.flatnonzero(a.zone(np.arange(a.n_rows)) == FIT)
    batches = list(a.epoch(np.random.default_rng(1), 16))
    seen = np.concatenate([ids(b) for b in batches])
    assert all(len(b) == 16 for b in batches[:-1]) and 0 < len(batches[-1]) <= 16
    np.testing.assert_array_equal(np.sort(seen), fit)  # each once
    assert not np.array_equal(seen, fit)  # shuffled
    again = np.concatenate([ids(b) for b in a.epoch(np.random.default_rng(1), 16)])
    np.testing.assert_array_equal(seen, again)  # seeded
    other = np.concatenate([ids(b) for b in a.epoch(np.random.default_rng(2), 16)])
    assert not np.array_equal(seen, other)


@pytest.mark.parametrize("files", [4, 2, 1])
def test_processes_take_disjoint_shares_of_whole_batches_in_the_same_number_of_steps(folder, files):
    paths = expand(folder)[1][:files]
    a = scan(paths, "in", 5, calibration_fraction=0.1)
    for seed in range(4):
        shares = [[ids(b) for b in a.epoch(np.random.default_rng(seed), 8, rank, 2)] for rank in (0, 1)]
        assert len(shares[0]) == len(shares[1]) > 0
        assert all(len(b) == 8 for s in shares for b in s)  # the same batch sizes: the same optimiser steps
        first, second = (np.concatenate(s) for s in shares)
        assert not set(first) & set(second)
        fit = set(np.flatnonzero(a.zone(np.arange(a.n_rows)) == FIT))
        assert set(first) | set(second) <= fit
        assert len(first) + len(second) > 0.85 * len(fit) - 16  # balanced: few rows wait for another epoch


def test_too_few_rows_for_the_processes_is_one_line(folder):
    a = scan(expand(folder)[1][:1], "in", 5)
    with pytest.raises(Exception, match="too few for 2 processes of 512 rows a step"):
        next(a.epoch(np.random.default_rng(0), 512, 0, 2))


def test_a_batch_larger_than_half_the_buffer_still_streams(folder, monkeypatch):
    monkeypatch.setattr(stream, "SHUFFLE_BYTES", 4 * 4 * 10)  # a 10-row buffer, batches of 64
    a = scanned(folder)
    seen = np.concatenate([ids(b) for b in a.epoch(np.random.default_rng(0), 64)])
    np.testing.assert_array_equal(np.sort(seen), np.flatnonzero(a.zone(np.arange(a.n_rows)) == FIT))


def test_labels_pick_the_normal_rows_for_fitting(tmp_path):
    rng = np.random.default_rng(1)
    rows = rng.normal(size=(300, 3)).astype(np.float32)
    labels = np.arange(300) % 3
    pq.write_table(pa.table({"a": rows[:, 0], "y": labels, "b": rows[:, 1], "c": rows[:, 2]}), tmp_path / "t.parquet")
    a = scan([tmp_path / "t.parquet"], "t", 0, label_column="y", normal_class=1, calibration_fraction=0.2)
    assert a.shape == [3] and a.names == ["a", "b", "c"]
    assert set(a.fit_sample[1]) == {1} and set(a.calibration[1]) == {1} and set(a.test[1]) == {0, 1, 2}
    zone = a.zone(np.arange(300))
    assert a.n_fit == int(((zone == FIT) & (labels == 1)).sum())
    with pytest.raises(Exception, match="--normal-class 7: no such label"):
        scan([tmp_path / "t.parquet"], "t", 0, label_column="y", normal_class=7)


def test_gen_train_on_a_folder_streams_and_the_bundle_serves(folder, tmp_path):
    result = gen("train", "--model", "ae", "--data", folder, "--epochs", 2, "--hidden", 8, "--latent-dim", 2,
                 "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.output
    run = (tmp_path / "run" / "run.json").read_text()
    a = scanned(folder, seed=0)  # the run's seed
    assert f'"n_fit": {a.n_fit}' in run and f'"n_train": {a.n_fit}' in run
    assert gen("export", tmp_path / "run", "--out", tmp_path / "b").exit_code == 0
    model = load(tmp_path / "b")
    assert model.manifest.data.source == str(folder) and model.manifest.data.feature_names == ["c0", "c1", "c2", "c3"]
    np.testing.assert_allclose(model.manifest.data.preprocessing.offset, a.mean, rtol=1e-6)
    assert model.score(a.test[0]).shape == (len(a.test[0]),)
    # int8 export recalibrates on the run's held-out rows: the same ones, streamed again
    assert gen("export", tmp_path / "run", "--out", tmp_path / "q", "--quantize", "int8").exit_code == 0
    assert load(tmp_path / "q").manifest.quantization.n_rows == len(a.calibration[0]) + len(a.test[0])


def test_one_file_streams_with_the_flag_and_all_at_once_families_say_so(folder, tmp_path):
    one = expand(folder)[1][0]
    result = gen("train", "--model", "vae", "--data", one, "--stream", "--epochs", 1, "--out", tmp_path / "r",
                 "--quiet")
    assert result.exit_code == 0, result.output
    result = gen("train", "--model", "pca", "--data", folder, "--out", tmp_path / "p", "--quiet")
    assert result.exit_code == 2 and "fits on all its rows at once" in result.output
    assert not (tmp_path / "p").exists()
    result = gen("train", "--model", "ae", "--data", "digits", "--stream", "--out", tmp_path / "d", "--quiet")
    assert result.exit_code == 2 and "only CSV, NPY and Parquet rows are streamed" in result.output


def test_a_folder_of_mismatched_files_is_one_line(folder, tmp_path):
    np.save(folder / "day=9.npy", np.zeros((10, 5), np.float32))
    result = gen("train", "--model", "ae", "--data", folder, "--out", tmp_path / "r", "--quiet")
    assert result.exit_code == 2 and "expected" in result.output and "day=9.npy" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_normal_class_without_labels_is_one_line(folder, tmp_path):
    result = gen("train", "--model", "ae", "--data", folder, "--normal-class", 0, "--out", tmp_path / "r", "--quiet")
    assert result.exit_code == 2 and "--normal-class 0 needs labelled data" in result.output
