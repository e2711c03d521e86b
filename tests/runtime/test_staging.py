"""The CUDA path's staging (issue 27), run on the CPU: rows copied by threads into two host
buffers piece by piece (ordinary memory here, pinned on CUDA), checked for NaN/inf as they are
copied, while the graph runs on the previous piece. Same scores as the plain path, the same
one-line errors, the same row numbers."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from gen.runtime import InputError, load, staging
from gen.runtime.providers import CPU


@pytest.fixture
def small_pieces(monkeypatch):
    """Pieces and chunks small enough that digits rows (64 values) take the staged path in
    several pieces, each copied by several threads in several chunks."""
    monkeypatch.setattr(staging, "MIN_STAGED_BYTES", 1)
    monkeypatch.setattr(staging, "MIN_PIECE_BYTES", 256 * 16)  # 16 rows of 64 float32 values
    monkeypatch.setattr(staging, "TASK_BYTES", 256 * 5)  # each thread copies 5 rows or more


def many(digits_rows, n=1000):
    return np.resize(digits_rows, (n, digits_rows.shape[1])).astype(np.float32)


def test_staging_is_chosen_for_cuda_only(bundles):
    assert load(bundles["ae"], device="cpu").stager is None
    assert load(bundles["ae"], device="cpu", staging=True).stager is not None
    # the CPU provider never asks the CUDA runtime for pinned memory
    assert staging.HostBuffer(1024, pinned=False).kind == "pageable"


@pytest.mark.parametrize("io_binding,device_input", [(False, False), (True, False), (True, True)])
def test_staged_scores_equal_plain_scores(bundles, digits_rows, small_pieces, io_binding, device_input, monkeypatch):
    monkeypatch.setattr(staging, "DEVICE_INPUT", device_input)  # pieces bound as they are, or copied to the device
    rows = many(digits_rows)
    plain = load(bundles["ae"], device="cpu", staging=False, batch_size=64)
    staged = load(bundles["ae"], device="cpu", staging=True, io_binding=io_binding, batch_size=64)
    pieces = []
    original = staged.stager.pieces
    staged.stager.pieces = lambda *a, **k: (pieces.append(p[0]) or p for p in original(*a, **k))
    np.testing.assert_array_equal(staged.score(rows), plain.score(rows))
    assert pieces == list(range(0, 1000, 64))  # n / 4 = 250 rows, cut to the batch size: 16 pieces
    if device_input:  # full pieces share one device buffer, the last its own
        assert sorted(k[1][0] for k in staged.stager._device_values) == [40, 64]
    assert staged.stager.kind == "pageable" and staged.provider == CPU
    u8 = rows.astype(np.uint8)  # uint8 rows are staged as bytes and widened where the graphs run
    np.testing.assert_array_equal(staged.score(u8), plain.score(u8.astype(np.float32)))
    shaped = rows.reshape(-1, 1, 8, 8).astype(np.float64)  # converted first, then staged
    np.testing.assert_array_equal(staged.score(shaped), plain.score(rows))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e39])
@pytest.mark.parametrize("row", [0, 517, 999])
def test_a_bad_value_is_named_as_the_plain_path_names_it(bundles, digits_rows, small_pieces, bad, row):
    rows = many(digits_rows).astype(np.float64)
    rows[row, 9] = bad
    plain = load(bundles["ae"], device="cpu", staging=False, batch_size=64)
    staged = load(bundles["ae"], device="cpu", staging=True, batch_size=64)
    with pytest.raises(InputError) as expected:
        plain.score(rows)
    with pytest.raises(InputError) as got:
        staged.score(rows)
    assert str(got.value) == str(expected.value)
    assert f"row {row + 1}, column 10" in str(got.value)
    # the stager is free again and scores the next call
    rows[row, 9] = 0.0
    np.testing.assert_array_equal(staged.score(rows), plain.score(rows))


def test_piece_sizes_follow_the_call_and_the_batch():
    stager = staging.Stager([784], pinned=False)
    row = 784 * 4  # MNIST rows in float32
    assert stager.piece_rows(65536, 16384, row) == 16384  # four batches
    assert stager.piece_rows(16384, 16384, row) == 4096  # one batch cut in four, to overlap copies
    assert stager.piece_rows(4096, 16384, row) == 2675  # but never below MIN_PIECE_BYTES (8 MiB)
    assert stager.piece_rows(300, 16384, row) == 300
    assert stager.piece_rows(1, 16384, row) == 1
    assert stager.piece_rows(65536, 16384, 784) == 16384  # uint8 rows: the batch caps it
    image = 3 * 224 * 224 * 4  # 602 KB rows: 111 a piece, so two pinned buffers stay near 128 MiB
    assert stager.piece_rows(65536, 1024, image) == 111 and stager.piece_rows(10, 1024, image) == 10
    assert stager.piece_rows(4, 1024, 100 << 20) == 1  # a row beyond the cap still goes, one at a time


@pytest.mark.parametrize("chunk", [0, 64])
def test_fill_copies_and_finds_non_finite_values(monkeypatch, chunk):
    monkeypatch.setattr(staging, "FILL_CHUNK_BYTES", chunk)  # in one go, or 4 rows at a time
    src = np.arange(400, dtype=np.float32).reshape(100, 4)
    dst = np.empty_like(src)
    assert staging.fill(dst, src, check=True) and np.array_equal(dst, src)
    src[77, 2] = np.nan
    assert not staging.fill(dst, src, check=True)
    assert staging.fill(dst, src, check=False)  # unchecked (rows a reader already checked)
    src[77, 2] = 3e38  # finite values whose sum overflows float32 are looked at one by one: finite
    src[78, 2] = 3e38
    assert staging.fill(dst, src, check=True) and np.array_equal(dst, src)


def test_buffers_grow_by_powers_of_two_up_to_the_batch():
    stager = staging.Stager([4], pinned=False)
    first = stager._slots(np.dtype(np.float32), 100, 1024)
    assert first[0].nbytes == 128 * 16 and first is stager._slots(np.dtype(np.float32), 128, 1024)
    assert stager._slots(np.dtype(np.float32), 1000, 1024)[0].nbytes == 1024 * 16
    assert stager._slots(np.dtype(np.uint8), 10, 1024)[0].nbytes == 16 * 4  # one pair per dtype


def test_a_second_caller_takes_the_plain_path(bundles, digits_rows, small_pieces):
    """Two threads scoring on one model: the stager serves one, the other runs plainly, and
    both get the right scores."""
    rows = many(digits_rows)
    model = load(bundles["ae"], device="cpu", staging=True, batch_size=64)
    expected = load(bundles["ae"], device="cpu", staging=False).score(rows)
    model.stager.lock.acquire()  # as if another call were streaming
    try:
        np.testing.assert_array_equal(model.score(rows), expected)
    finally:
        model.stager.lock.release()
    results = [None] * 4

    def work(i):
        results[i] = model.score(rows)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got in results:
        np.testing.assert_array_equal(got, expected)
    model.close()
    assert model.stager._pool is None


def test_files_score_through_the_stager(bundles, digits_rows, small_pieces, tmp_path):
    rows = many(digits_rows)
    np.save(tmp_path / "rows.npy", rows)
    staged = load(bundles["ae"], device="cpu", staging=True, batch_size=64)
    calls = []
    original = staged.stager.pieces
    staged.stager.pieces = lambda *a, **k: (calls.append(1), original(*a, **k))[1]
    staged.score_file(tmp_path / "rows.npy", tmp_path / "s.npy", chunk_rows=300)
    plain = load(bundles["ae"], device="cpu", staging=False)
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy")["score"] if np.load(tmp_path / "s.npy").dtype.names
                                  else np.load(tmp_path / "s.npy"), plain.score(rows))
    assert len(calls) == 4  # one stream per chunk read
