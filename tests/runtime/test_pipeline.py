"""The pipelined file path (gen.runtime.pipeline): reading, scoring and writing overlap, and
what comes out is byte for byte what the serial path writes; errors of the reader or the writer
stop the job with the serial path's message and no output; memory stays at three chunks."""

from __future__ import annotations

import threading
import time
import weakref

import numpy as np
import pytest

from gen.runtime import InputError, load
from gen.runtime import model as model_module
from gen.runtime.outputs import ScoreWriter
from gen.runtime.pipeline import Prefetch, WriteBehind


def write_input(rows: np.ndarray, path):
    """rows (n, 64) as CSV (with a header), NPY or Parquet, by the path's suffix."""
    suffix = path.suffix
    if suffix == ".npy":
        np.save(path, rows)
    elif suffix == ".csv":
        header = ",".join(f"p{i}" for i in range(rows.shape[1]))
        np.savetxt(path, rows, delimiter=",", header=header, comments="", fmt="%g")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({f"p{i}": rows[:, i] for i in range(rows.shape[1])}), path, row_group_size=50)
    return path


@pytest.mark.parametrize("src", [".csv", ".npy", ".parquet"])
@pytest.mark.parametrize("dst", [".csv", ".npy", ".parquet"])
def test_pipelined_and_serial_scores_are_the_same_bytes(bundles, digits_rows, tmp_path, src, dst):
    model = load(bundles["ae"], device="cpu")
    source = write_input(digits_rows[:301], tmp_path / f"in{src}")
    counts = {}
    for pipelined in (False, True):
        seen = []
        counts[pipelined] = model.score_file(source, tmp_path / f"out-{pipelined}{dst}", chunk_rows=16,
                                             pipelined=pipelined, on_chunk=seen.append)
        assert seen == [min(16 * (i + 1), 301) for i in range(len(seen))] and seen[-1] == 301
    assert counts == {False: 301, True: 301}
    assert (tmp_path / f"out-True{dst}").read_bytes() == (tmp_path / f"out-False{dst}").read_bytes()


def test_pipelined_explain_maps_kept_columns_and_encode_match_serial(bundles, digits_rows, tmp_path):
    model = load(bundles["ae"], device="cpu")
    rows = digits_rows[:97]
    source = tmp_path / "in.csv"
    header = "id," + ",".join(f"p{i}" for i in range(64))
    np.savetxt(source, np.column_stack([np.arange(97), rows]), delimiter=",", header=header, comments="", fmt="%g")
    for pipelined in (False, True):
        model.score_file(source, tmp_path / f"s-{pipelined}.csv", chunk_rows=10, explain=2, keep_columns="id",
                         maps=tmp_path / f"m-{pipelined}.png", maps_rows=5, pipelined=pipelined)
        np.save(tmp_path / "rows.npy", rows)
        model.encode_file(tmp_path / "rows.npy", tmp_path / f"z-{pipelined}.npy", chunk_rows=10, pipelined=pipelined)
    for name in ("s-{}.csv", "m-{}.png", "z-{}.npy"):
        assert (tmp_path / name.format(True)).read_bytes() == (tmp_path / name.format(False)).read_bytes(), name


def test_a_reader_error_in_a_later_chunk_names_the_row_and_leaves_no_output(bundles, digits_rows, tmp_path):
    model = load(bundles["ae"], device="cpu")
    source = write_input(digits_rows[:100], tmp_path / "in.csv")
    lines = source.read_text().splitlines()
    lines[58] = lines[58].replace(",", ",x", 1)  # data row 58, in the fourth chunk of 16
    source.write_text("\n".join(lines) + "\n")
    messages = {}
    for pipelined in (False, True):
        with pytest.raises(InputError) as caught:
            model.score_file(source, tmp_path / "out.npy", chunk_rows=16, pipelined=pipelined)
        messages[pipelined] = str(caught.value)
    assert messages[True] == messages[False] and "line 59" in messages[True]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]  # no output, no temp file
    assert not [t for t in threading.enumerate() if t.name in ("gen-reader", "gen-writer")]


def test_a_writer_error_stops_the_job_with_no_output(bundles, digits_rows, tmp_path, monkeypatch):
    model = load(bundles["ae"], device="cpu")
    source = write_input(digits_rows[:200], tmp_path / "in.npy")
    original, calls = ScoreWriter.write, []

    def failing(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ScoreWriter, "write", failing)
    with pytest.raises(OSError, match="No space left"):
        model.score_file(source, tmp_path / "out.csv", chunk_rows=16)
    assert len(calls) <= 5  # stopped within a chunk or two, not after reading the whole file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npy"]


def test_a_slow_writer_keeps_at_most_three_input_chunks_alive(bundles, digits_rows, tmp_path, monkeypatch):
    model = load(bundles["ae"], device="cpu")
    source = write_input(digits_rows[:320], tmp_path / "in.npy")
    alive, peak, lock = [0], [0], threading.Lock()
    reader = model_module.iter_rows

    def counted(*args, **kwargs):
        for chunk in reader(*args, **kwargs):
            with lock:
                alive[0] += 1
                peak[0] = max(peak[0], alive[0])
            weakref.finalize(chunk, lambda: alive.__setitem__(0, alive[0] - 1))
            yield chunk

    original = ScoreWriter.write

    def slow(self, *args, **kwargs):
        time.sleep(0.02)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(model_module, "iter_rows", counted)
    monkeypatch.setattr(ScoreWriter, "write", slow)
    assert model.score_file(source, tmp_path / "out.npy", chunk_rows=8) == 320  # 40 chunks
    assert 2 <= peak[0] <= 3, peak[0]


def test_prefetch_raises_where_the_source_failed_and_closes_it():
    closed = []

    def source():
        try:
            yield 1
            yield 2
            raise ValueError("row 3: bad")
        finally:
            closed.append(True)

    got = []
    with pytest.raises(ValueError, match="row 3: bad"):
        with Prefetch(source()) as items:
            for item in items:
                got.append(item)
    assert got == [1, 2] and closed == [True]
    # stopping early (the consumer failed) stops the reader and closes the source
    closed.clear()

    def endless():
        try:
            while True:
                yield np.zeros(4)
        finally:
            closed.append(True)

    with Prefetch(endless()) as items:
        next(iter(items))
    assert closed == [True]


def test_write_behind_keeps_order_and_raises_the_first_error():
    out = []
    writer = WriteBehind()
    for i in range(50):
        writer.submit(out.append, i)
    writer.finish()
    assert out == list(range(50))

    def fail(_):
        raise OSError("disk gone")

    writer = WriteBehind()
    writer.submit(fail, 0)
    with pytest.raises(OSError, match="disk gone"):
        for i in range(10):
            writer.submit(out.append, i)
        writer.finish()


def test_an_early_stop_does_not_wait_for_a_reader_or_writer_blocked_on_a_quiet_pipe():
    """SIGTERM or Ctrl-C (an exception in the consumer) while the reader waits on a producer that
    sends nothing more, or the writer on a stalled pipe: the job stops within STOP_WAIT_S, and
    the stuck thread ends by itself, closing its source, once its read returns."""
    from gen.runtime.pipeline import STOP_WAIT_S

    release, closed = threading.Event(), []

    def quiet():
        try:
            yield 1
            release.wait(20)  # a live producer that sends nothing more
            yield 2
        finally:
            closed.append(True)

    start = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        with Prefetch(quiet()) as items:
            for _ in items:
                raise KeyboardInterrupt
    assert time.perf_counter() - start < STOP_WAIT_S + 1.0 and closed == []
    release.set()
    for _ in range(100):
        if closed:
            break
        time.sleep(0.05)
    assert closed == [True]

    stalled = threading.Event()
    writer = WriteBehind()
    writer.submit(stalled.wait, 20)  # a write blocked on a full pipe
    writer.submit(lambda: None)
    start = time.perf_counter()
    writer.stop()
    assert time.perf_counter() - start < STOP_WAIT_S + 1.0
    stalled.set()
