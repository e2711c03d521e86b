"""Reading rows from files: formats, chunking, and one-line errors naming file/line/column."""

import numpy as np
import pytest

from gen.runtime.errors import InputError
from gen.runtime.readers import iter_rows as iter_file, read_rows as read_file

SHAPE = [3]


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_with_and_without_header(tmp_path):
    plain = write(tmp_path, "a.csv", "1,2,3\n4,5,6\n")
    header = write(tmp_path, "b.csv", "f1,f2,f3\n1,2,3\n\n4,5,6\n")
    expected = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32)
    np.testing.assert_array_equal(read_file(plain, SHAPE), expected)
    np.testing.assert_array_equal(read_file(header, SHAPE), expected)


def test_chunks_are_bounded(tmp_path):
    rows = np.arange(30, dtype=np.float32).reshape(10, 3)
    np.savetxt(tmp_path / "r.csv", rows, delimiter=",")
    np.save(tmp_path / "r.npy", rows)
    for name in ("r.csv", "r.npy"):
        chunks = list(iter_file(tmp_path / name, SHAPE, chunk_rows=4))
        assert [len(c) for c in chunks] == [4, 4, 2]
        np.testing.assert_array_equal(np.concatenate(chunks), rows)


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1.0, 2.0], "b": [3, 4], "c": [5.0, 6.0]}), tmp_path / "r.parquet")
    np.testing.assert_array_equal(read_file(tmp_path / "r.parquet", SHAPE), [[1, 3, 5], [2, 4, 6]])
    pq.write_table(pa.table({"a": [1.0], "b": ["x"], "c": [5.0]}), tmp_path / "s.parquet")
    with pytest.raises(InputError, match=r"s.parquet: column 2 \(b\): expected numbers, got string"):
        read_file(tmp_path / "s.parquet", SHAPE)
    pq.write_table(pa.table({"a": [1.0, None], "b": [1.0, 2.0], "c": [5.0, 6.0]}), tmp_path / "n.parquet")
    with pytest.raises(InputError, match=r"n.parquet: row 2, column 1 \(a\): missing value"):
        read_file(tmp_path / "n.parquet", SHAPE)


@pytest.mark.parametrize("text, message", [
    ("1,2,3\n4,5\n", r"bad.csv: line 2: expected 3 values, got 2"),
    ("1,2,3\n4,x,6\n", r"bad.csv: line 2, column 2: expected a number, got 'x'"),
    ("a,b,c\n1,2,3\n4,5,oops\n", r"bad.csv: line 3, column 3 \(c\): expected a number, got 'oops'"),
    ("1,2,3\n4,nan,6\n", r"bad.csv: line 2, column 2: value is nan \(NaN, inf and values beyond float32 are not allowed\)"),
    ("1,inf,3\n", r"bad.csv: line 1, column 2: value is inf"),
    ("", r"bad.csv: file is empty"),
    ("a,b,c\n", r"bad.csv: file is empty"),
    ("a,b\n1,2\n", r"bad.csv: header has 2 columns, expected 3"),
])
def test_bad_csv(tmp_path, text, message):
    with pytest.raises(InputError, match=message):
        read_file(write(tmp_path, "bad.csv", text), SHAPE)


def test_bad_npy(tmp_path):
    np.save(tmp_path / "wide.npy", np.zeros((2, 4)))
    with pytest.raises(InputError, match=r"wide.npy: expected rows of shape \(N, 3\), got array of shape \(2, 4\)"):
        read_file(tmp_path / "wide.npy", SHAPE)
    rows = np.zeros((6, 3))
    rows[5, 1] = np.inf
    np.save(tmp_path / "inf.npy", rows)
    with pytest.raises(InputError, match=r"inf.npy: row 6, column 2: value is inf"):
        list(iter_file(tmp_path / "inf.npy", SHAPE, chunk_rows=4))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="obj.npy: not a plain numeric .npy"):
        read_file(tmp_path / "obj.npy", SHAPE)
    np.save(tmp_path / "empty.npy", np.zeros((0, 3)))
    with pytest.raises(InputError, match="empty.npy: file is empty"):
        read_file(tmp_path / "empty.npy", SHAPE)
    np.save(tmp_path / "text.npy", np.array([["a", "b", "c"]]))
    with pytest.raises(InputError, match="expected numeric values"):
        read_file(tmp_path / "text.npy", SHAPE)


def test_missing_and_unknown_format(tmp_path):
    with pytest.raises(InputError, match="nope.csv: file not found"):
        read_file(tmp_path / "nope.csv", SHAPE)
    with pytest.raises(InputError, match=r"x.txt: unsupported input format .txt"):
        read_file(write(tmp_path, "x.txt", "1,2,3"), SHAPE)


def test_csv_with_byte_order_mark(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeff1,2,3\n4,5,6\n".encode("utf-8"))
    np.testing.assert_array_equal(read_file(path, SHAPE), [[1, 2, 3], [4, 5, 6]])


@pytest.mark.parametrize("order", ["C", "F"])
def test_npy_is_read_with_plain_reads_in_memory_that_does_not_grow_with_the_file(tmp_path, order):
    """A memory map would count every page read as resident (the whole file by the end); plain
    reads keep a chunk. Peak RSS of reading 50 MiB of rows, in a fresh interpreter, grows by
    less than a fifth of the file over reading 1/100 of it. The same for a Fortran-order file
    (np.save of a transposed array or of pandas' DataFrame.to_numpy()), read column by column."""
    import subprocess
    import sys

    big, small = tmp_path / "big.npy", tmp_path / "small.npy"
    rows = np.random.default_rng(0).normal(size=(200_000, 64)).astype(np.float32)
    np.save(big, np.asarray(rows, order=order))
    np.save(small, np.asarray(rows[:2_000], order=order))
    assert np.load(big, mmap_mode="r").flags.f_contiguous == (order == "F")
    from tests.memory import PEAK_MIB

    code = (PEAK_MIB + "import sys\nfrom gen.runtime.readers import iter_rows\n"
            "n = sum(len(c) for c in iter_rows(sys.argv[1], [64], 4096))\n"
            "print(n, peak_mib())\n")
    peaks = {}
    for path in (small, big):
        out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
        n, peak_mib = out.stdout.split()
        n = int(n)
        peaks[path.name] = float(peak_mib) * 2**20
        assert n == (2_000 if path == small else 200_000)
    assert peaks["big.npy"] - peaks["small.npy"] < big.stat().st_size / 5, peaks
    assert np.array_equal(np.concatenate(list(iter_file(big, [64], 4096))), rows)


@pytest.mark.parametrize("shape, dtype", [((37, 5), "<f4"), ((37, 5), ">f8"), ((37, 4, 3), "|u1"),
                                          ((37, 2, 3, 2), "<i2"), ((1, 4, 3), "<f4")])
def test_a_fortran_order_npy_reads_the_same_rows_as_c_order(tmp_path, shape, dtype):
    rows = np.random.default_rng(1).integers(0, 200, size=shape).astype(dtype)
    path = tmp_path / "f.npy"
    np.save(path, np.asfortranarray(rows))
    for chunk in (1, 8, 37, 100):
        got = list(iter_file(path, list(shape[1:]), chunk))
        assert [len(c) for c in got] == [min(chunk, shape[0] - i) for i in range(0, shape[0], chunk)]
        np.testing.assert_array_equal(np.concatenate(got), rows.astype(np.float32))
    np.testing.assert_array_equal(read_file(path, list(shape[1:])), rows.astype(np.float32))
    if dtype == "|u1":  # bytes kept as bytes, as for a C-order file
        assert next(iter_file(path, list(shape[1:]), 8, narrow=True)).dtype == np.uint8


def test_a_truncated_npy_is_refused_before_any_row(tmp_path):
    path = tmp_path / "cut.npy"
    np.save(path, np.ones((100, 64), np.float32))
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(InputError, match="truncated .npy file: its header says 100 rows, it holds 96"):
        next(iter_file(path, [64], 16))


@pytest.mark.parametrize("fortran", [False, True])
def test_rows_of_no_values_are_refused_by_their_shape_not_as_truncated(tmp_path, fortran):
    import io

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": fortran, "shape": (5, 0)})
    path = tmp_path / "empty-rows.npy"
    path.write_bytes(header.getvalue())
    with pytest.raises(InputError, match=r"expected rows of shape \(N, 3\), got array of shape \(5, 0\)"):
        read_file(path, SHAPE)


def _python_only(monkeypatch):
    """The CSV reader without pyarrow (a runtime-only install): Python's csv module alone."""
    import sys

    monkeypatch.setitem(sys.modules, "pyarrow.csv", None)


CSV_CASES = {
    "header, blank lines, CRLF": "f1,f2,f3\r\n1,2,3\r\n\r\n4.5,-5e-3,6\r\n,,\r\n7,8,9\r\n",
    "no header, quoted cells": '1,"2",3\n4,5,"6.25"\n',
    "byte order mark": "\ufeffa,b,c\n1,2,3\n",
    "a header repeating a name and leaving one empty": "a,a,\n1,2,3\n",
    "spaces and underscores Python reads": "1, 2 ,3\n1_000,5,6\n",
    "beyond float32, rounded onto its largest": "1,2,3\n4,5,3.40282350e38\n",
    "beyond float32": "1,2,3\n4,5,1e39\n",
    "nan late": "".join(f"{i},{i},{i}\n" for i in range(5000)) + "1,nan,3\n",
    "a word late": "".join(f"{i},{i},{i}\n" for i in range(5000)) + "1,2,x\n",
    "a short row late": "".join(f"{i},{i},{i}\n" for i in range(5000)) + "1,2\n",
    "blocks of pyarrow's beyond one, a word in the last": "".join(f"{i},{i}.5,-{i}\n" for i in range(250_000))
    + "1,2,x\n",
}


@pytest.mark.parametrize("case", sorted(CSV_CASES))
def test_csv_rows_and_errors_are_the_same_with_and_without_pyarrow(tmp_path, monkeypatch, case):
    """pyarrow parses a CSV block by block where it can; the rows, their chunks and every
    one-line error are those of the Python reader, which takes over at the first block that
    is not plain numbers."""
    pytest.importorskip("pyarrow.csv")
    path = tmp_path / "rows.csv"
    path.write_bytes(CSV_CASES[case].encode("utf-8"))

    def read():
        chunks = []
        try:
            for chunk in iter_file(path, SHAPE, chunk_rows=1000):
                chunks.append(chunk.copy())
        except InputError as exc:
            return chunks, str(exc)
        return chunks, None

    fast = read()
    _python_only(monkeypatch)
    slow = read()
    assert fast[1] == slow[1]
    assert [len(c) for c in fast[0]] == [len(c) for c in slow[0]]
    for a, b in zip(fast[0], slow[0]):
        np.testing.assert_array_equal(a, b)
    if case.endswith("late"):
        assert fast[1] is not None and "line 5001" in fast[1] and sum(len(c) for c in fast[0]) == 5000
    if case.startswith("blocks"):
        assert "line 250001" in fast[1] and len(fast[0]) == 250


def test_a_plain_numeric_csv_is_read_by_pyarrow_alone(tmp_path, monkeypatch):
    pytest.importorskip("pyarrow.csv")
    from gen.runtime import readers

    rows = np.random.default_rng(0).normal(size=(3000, 3)).astype(np.float32)
    np.savetxt(tmp_path / "r.csv", rows, delimiter=",", header="a,b,c", comments="", fmt="%.9g")

    def python_reader(*args, **kwargs):
        raise AssertionError("the Python reader was used")

    monkeypatch.setattr(readers, "_csv_stream", python_reader)
    chunks = list(iter_file(tmp_path / "r.csv", SHAPE, chunk_rows=1024))
    assert [len(c) for c in chunks] == [1024, 1024, 952]
    np.testing.assert_array_equal(np.concatenate(chunks), rows)
