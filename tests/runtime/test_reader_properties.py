"""Property-based tests (Hypothesis): any bytes given to a reader (CSV, NPY, Parquet, IDX,
ratings and pairs files) or any JSON given to the manifest loader end in arrays or in gen's
own error (one line), never in another exception. Examples per property: 60 here, more with
GEN_HYPOTHESIS_EXAMPLES (a few thousand for a local soak run)."""

from __future__ import annotations

import gzip
import io
import json
import os
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from gen.runtime.errors import GenError  # noqa: E402
from gen.runtime.manifest import Manifest  # noqa: E402
from gen.runtime.ratings import read_pairs, read_ratings  # noqa: E402
from gen.runtime.readers import read_idx, read_rows, read_table  # noqa: E402

EXAMPLES = int(os.environ.get("GEN_HYPOTHESIS_EXAMPLES", "60"))
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def outcome(read, data: bytes, suffix: str):
    """Write `data` to a file and read it: the result, or the GenError (anything else fails)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"input{suffix}"
        path.write_bytes(data)
        try:
            return read(path)
        except GenError as exc:
            text = str(exc)
            assert text and "\n" not in text, repr(text)
            assert "Traceback" not in text and "object at 0x" not in text, text
            return exc


def mutated(seed_bytes: bytes):
    """Valid files with bytes flipped, cut or inserted: closer to real damage than noise."""
    return st.one_of(
        st.binary(max_size=512),
        st.tuples(st.integers(0, max(0, len(seed_bytes) - 1)), st.integers(1, 255)).map(
            lambda t: seed_bytes[:t[0]] + bytes([seed_bytes[t[0]] ^ t[1]]) + seed_bytes[t[0] + 1:]),
        st.integers(0, len(seed_bytes)).map(lambda n: seed_bytes[:n]),
        st.tuples(st.integers(0, len(seed_bytes)), st.binary(min_size=1, max_size=16)).map(
            lambda t: seed_bytes[:t[0]] + t[1] + seed_bytes[t[0]:]),
    )


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


CSV = b"a,b,c\n1,2,3\n4.5,-6,7e2\n"
NPY = npy_bytes(np.arange(12, dtype=np.float32).reshape(4, 3))
IDX = struct.pack(">HBB", 0, 0x08, 3) + struct.pack(">III", 2, 2, 2) + bytes(range(8))
RATINGS = b"1\t10\t4\t881250949\n2\t10\t3\t881250950\n1\t11\t5\t881250951\n"
PAIRS = b"user,item\n1,10\n2,11\n"


def check_rows(result, width: int) -> None:
    if not isinstance(result, GenError):
        assert result.dtype == np.float32 and result.shape[1:] == (width,) and np.isfinite(result).all()


@PROPERTY
@given(st.one_of(mutated(CSV), st.text(max_size=300).map(str.encode)))
def test_csv_reader(data):
    check_rows(outcome(lambda p: read_rows(p, [3]), data, ".csv"), 3)
    table = outcome(lambda p: read_table(p), data, ".csv")
    if not isinstance(table, GenError):
        assert np.isfinite(table.x).all()


@PROPERTY
@given(mutated(NPY))
def test_npy_reader(data):
    check_rows(outcome(lambda p: read_rows(p, [3]), data, ".npy"), 3)
    outcome(lambda p: read_table(p), data, ".npy")


@PROPERTY
@given(st.integers(0, 3), st.integers(0, 4), st.sampled_from(["<f4", "<f8", "<i4", "|u1", "<f2", "|b1", ">f4"]),
       st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), max_size=24), st.booleans())
def test_npy_reader_on_well_formed_arrays(rows, cols, dtype, values, fortran):
    """Any valid .npy of any shape, numeric dtype and order, NaN and inf included."""
    size = rows * cols
    array = np.resize(np.asarray(values or [0.0], dtype=np.float64), size).reshape(rows, cols)
    with np.errstate(all="ignore"):
        array = array.astype(dtype)
    if fortran:
        array = np.asfortranarray(array)
    check_rows(outcome(lambda p: read_rows(p, [3]), npy_bytes(array), ".npy"), 3)


@PROPERTY
@given(mutated(IDX), st.booleans())
def test_idx_reader(data, zipped):
    suffix = ".gz" if zipped else ""
    result = outcome(read_idx, gzip.compress(data, mtime=0) if zipped else data, f"-idx3-ubyte{suffix}")
    if not isinstance(result, GenError):
        assert isinstance(result, np.ndarray) and result.ndim >= 1


@PROPERTY
@given(st.one_of(mutated(RATINGS), st.text(max_size=300).map(str.encode)))
def test_ratings_reader(data):
    result = outcome(read_ratings, data, ".data")
    if not isinstance(result, GenError):
        assert len(result.users) == len(result.items) == len(result.ratings)
        assert np.isfinite(np.asarray(result.ratings, dtype=np.float64)).all()


@PROPERTY
@given(st.one_of(mutated(PAIRS), st.text(max_size=200).map(str.encode)))
def test_pairs_reader(data):
    result = outcome(read_pairs, data, ".csv")
    if not isinstance(result, GenError):
        users, items = result
        assert len(users) == len(items)


@pytest.fixture(scope="module")
def parquet_bytes():
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.table({"a": [1.0, 2.0], "b": [3.0, 4.0], "c": [5.0, 6.0]}), buffer)
    return buffer.getvalue()


def test_parquet_reader(parquet_bytes):
    @PROPERTY
    @given(mutated(parquet_bytes))
    def check(data):
        check_rows(outcome(lambda p: read_rows(p, [3]), data, ".parquet"), 3)

    check()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)


def test_manifest_loader(bundles):
    """A real manifest with one value replaced anywhere by any JSON value, or with keys dropped:
    a Manifest or a BundleError."""
    raw = json.loads((bundles["ae"] / "manifest.json").read_text())
    paths = []

    def walk(node, path):
        paths.append(path)
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, child in items:
            walk(child, path + (key,))

    walk(raw, ())

    def replaced(path, value, drop):
        copy = json.loads(json.dumps(raw))
        if not path:
            return value
        node = copy
        for key in path[:-1]:
            node = node[key]
        if drop and isinstance(node, dict):
            node.pop(path[-1])
        else:
            node[path[-1]] = value
        return copy

    @PROPERTY
    @given(st.sampled_from(paths), JSON, st.booleans())
    def check(path, value, drop):
        try:
            manifest = Manifest.from_dict(replaced(path, value, drop))
        except GenError as exc:
            assert str(exc) and "\n" not in str(exc)
        else:
            assert manifest.format_version >= 1

    check()
