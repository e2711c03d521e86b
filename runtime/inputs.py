"""Reading user rows (CSV, NPY, Parquet, numpy arrays) in bounded chunks, validated once.

Every problem is reported in one line naming the file and, where it applies, the line or
row and the column: a wrong feature count, a non-numeric cell, NaN or inf, an empty file.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .errors import InputError, MissingDependency

FORMATS = (".csv", ".npy", ".parquet")


def _shape_text(shape) -> str:
    return "x".join(str(s) for s in shape)


def as_rows(x: np.ndarray, shape: list[int], where: str) -> np.ndarray:
    """Return `x` as float32 rows of `shape`, accepting a flat (N, prod(shape)) view too."""
    x = np.asarray(x)
    if x.dtype.kind not in "fiub":
        raise InputError(f"{where}: expected numeric values, got dtype {x.dtype}")
    size = int(np.prod(shape))
    if x.ndim == 1 and x.shape[0] == size:
        raise InputError(f"{where}: expected a batch of rows (N, {_shape_text(shape)}), got a single "
                         f"row of shape ({x.shape[0]},); add a batch axis")
    if x.ndim < 2 or int(np.prod(x.shape[1:])) != size:
        raise InputError(f"{where}: expected rows of {size} features (shape {_shape_text(shape)}), "
                         f"got array of shape {tuple(x.shape)}")
    x = x.reshape((x.shape[0], *shape)).astype(np.float32, copy=False)
    return x


def check_finite(x: np.ndarray, where: str, first_row: int = 0, label: str = "row") -> None:
    """Refuse NaN or inf, naming the first offending row and column."""
    flat = x.reshape(x.shape[0], -1)
    bad = ~np.isfinite(flat)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        value = flat[r, c]
        raise InputError(f"{where}: {label} {first_row + int(r)}, column {int(c) + 1}: "
                         f"value is {value} (NaN and inf are not allowed)")


def check_array(x: np.ndarray, shape: list[int], where: str = "input") -> np.ndarray:
    """Validate an in-memory batch: numeric, right width, finite, at least one row."""
    rows = as_rows(x, shape, where)
    if rows.shape[0] == 0:
        raise InputError(f"{where}: no rows")
    check_finite(rows, where)
    return rows


def iter_file(path: str | Path, shape: list[int], chunk_rows: int = 4096) -> Iterator[np.ndarray]:
    """Yield validated float32 chunks of rows from a CSV, NPY or Parquet file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        chunks = _iter_csv(path, shape, chunk_rows)
    elif suffix == ".npy":
        chunks = _iter_npy(path, shape, chunk_rows)
    elif suffix == ".parquet":
        chunks = _iter_parquet(path, shape, chunk_rows)
    else:
        raise InputError(f"{path}: unsupported input format {suffix or '(none)'}; "
                         f"expected one of {', '.join(FORMATS)}")
    seen = 0
    for chunk in chunks:
        seen += chunk.shape[0]
        yield chunk
    if seen == 0:
        raise InputError(f"{path}: file is empty (no data rows)")


def read_file(path: str | Path, shape: list[int]) -> np.ndarray:
    """Read a whole input file into memory (for small inputs and the Python API)."""
    return np.concatenate(list(iter_file(path, shape)), axis=0)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _iter_csv(path: Path, shape: list[int], chunk_rows: int) -> Iterator[np.ndarray]:
    size = int(np.prod(shape))
    header: list[str] | None = None
    buffer: list[list[float]] = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        try:
            reader = csv.reader(f)
            for row in reader:
                line = reader.line_num
                if not row or all(not c.strip() for c in row):
                    continue
                if header is None and not buffer and line == 1 and not any(_is_number(c) for c in row):
                    header = [c.strip() for c in row]
                    if len(header) != size:
                        raise InputError(f"{path}: header has {len(header)} columns, expected {size}")
                    continue
                if len(row) != size:
                    raise InputError(f"{path}: line {line}: expected {size} values, got {len(row)}")
                values = []
                for j, cell in enumerate(row):
                    try:
                        v = float(cell)
                    except ValueError:
                        name = f" ({header[j]})" if header else ""
                        raise InputError(f"{path}: line {line}, column {j + 1}{name}: "
                                         f"expected a number, got {cell.strip()!r}") from None
                    if not math.isfinite(v):
                        name = f" ({header[j]})" if header else ""
                        raise InputError(f"{path}: line {line}, column {j + 1}{name}: value is "
                                         f"{cell.strip()} (NaN and inf are not allowed)")
                    values.append(v)
                buffer.append(values)
                if len(buffer) == chunk_rows:
                    yield np.asarray(buffer, dtype=np.float32).reshape(-1, *shape)
                    buffer = []
        except UnicodeDecodeError:
            raise InputError(f"{path}: not a text CSV file (cannot decode as UTF-8)") from None
        except csv.Error as exc:
            raise InputError(f"{path}: malformed CSV ({exc})") from None
    if buffer:
        yield np.asarray(buffer, dtype=np.float32).reshape(-1, *shape)


def _iter_npy(path: Path, shape: list[int], chunk_rows: int) -> Iterator[np.ndarray]:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise InputError(f"{path}: not a plain numeric .npy file ({exc})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read .npy ({exc})") from None
    where = str(path)
    if array.ndim >= 1 and array.shape[0] == 0:
        return
    as_rows(array[:1], shape, where)  # checks dtype and width without reading everything
    for start in range(0, array.shape[0], chunk_rows):
        chunk = as_rows(np.array(array[start:start + chunk_rows]), shape, where)
        check_finite(chunk, where, first_row=start)
        yield chunk


def _iter_parquet(path: Path, shape: list[int], chunk_rows: int) -> Iterator[np.ndarray]:
    try:
        import pyarrow.parquet as pq
        import pyarrow.types as pat
    except ImportError:
        raise MissingDependency(f"{path}: reading Parquet needs pyarrow: pip install 'gen[parquet]'") from None
    size = int(np.prod(shape))
    try:
        pfile = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid and friends
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from None
    schema = pfile.schema_arrow
    if len(schema) != size:
        raise InputError(f"{path}: expected {size} columns, got {len(schema)}")
    for j, fld in enumerate(schema):
        if not (pat.is_integer(fld.type) or pat.is_floating(fld.type) or pat.is_boolean(fld.type)):
            raise InputError(f"{path}: column {j + 1} ({fld.name}): expected numbers, got {fld.type}")
    start = 0
    for batch in pfile.iter_batches(batch_size=chunk_rows):
        cols = []
        for j in range(batch.num_columns):
            col = batch.column(j)
            if col.null_count:
                r = int(np.flatnonzero(np.asarray(col.is_null()))[0])
                raise InputError(f"{path}: row {start + r}, column {j + 1} ({schema[j].name}): missing value")
            cols.append(col.to_numpy(zero_copy_only=False).astype(np.float32))
        chunk = np.stack(cols, axis=1).reshape(-1, *shape)
        check_finite(chunk, str(path), first_row=start)
        start += chunk.shape[0]
        yield chunk
