"""Readers of every input format, shared by training and serving so both read a file the
same way: CSV, NPY, Parquet (in bounded chunks) and IDX (MNIST's format).

Every problem is reported in one line naming the file and, where it applies, the line or
row and the column: a wrong feature count, a non-numeric cell, NaN or inf (also a value that
overflows float32), an empty file.

A CSV's first non-empty line is a header when any of its cells is not a number (so
`id,2020,2021` is a header, as pandas would read it); every later line must be numeric.
"""

from __future__ import annotations

import csv
import functools
import gzip
import math
import os
import struct
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError, MissingDependency

FORMATS = (".csv", ".npy", ".parquet")
FLOAT32_MAX = float(np.finfo(np.float32).max)
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass
class Table:
    """A whole file read into memory: float32 rows, column names when the file has them."""

    x: np.ndarray
    names: list[str] | None = None


def _shape_text(shape) -> str:
    return "x".join(str(s) for s in shape)


def is_number(cell: str) -> bool:
    """Whether a CSV cell reads as a number (a header's cells do not)."""
    try:
        float(cell)
    except ValueError:
        return False
    return True


def check_finite(x: np.ndarray, where: str, first_row: int = 0, label: str = "row") -> None:
    """Refuse NaN or inf (after conversion to the model's dtype), naming the first offending
    row and column, both counted from 1 (`first_row`: rows before this chunk)."""
    if np.isfinite(x).all():  # the common case in two ufunc calls; the search below only on failure
        return
    flat = x.reshape(x.shape[0], -1)
    bad = ~np.isfinite(flat)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise InputError(f"{where}: {label} {first_row + int(r) + 1}, column {int(c) + 1}: value is "
                         f"{flat[r, c]} in float32 (NaN, inf and values beyond float32 are not allowed)")


def check_layout(array_shape: tuple, dtype: np.dtype, shape: list[int], where: str) -> None:
    """Refuse an array that is not numeric rows of `shape`: flat (N, prod(shape)) or shaped
    (N, *shape); any other layout is refused, even with the right number of values."""
    if np.dtype(dtype).kind not in "fiub":
        raise InputError(f"{where}: expected numeric values, got dtype {dtype}")
    size = math.prod(shape)
    if len(array_shape) == 1 and array_shape[0] == size:
        raise InputError(f"{where}: expected a batch of rows (N, {_shape_text(shape)}), got a single "
                         f"row of shape ({array_shape[0]},); add a batch axis")
    if len(array_shape) < 2 or (list(array_shape[1:]) != [size] and list(array_shape[1:]) != list(shape)):
        accepted = f"(N, {size})" + (f" or (N, {', '.join(map(str, shape))})" if len(shape) > 1 else "")
        raise InputError(f"{where}: expected rows of shape {accepted}, got array of shape {tuple(array_shape)}")


def as_rows(x: np.ndarray, shape: list[int], where: str, narrow: bool = False) -> np.ndarray:
    """Return `x` as float32 rows of `shape` (see `check_layout` for what is accepted); with
    `narrow`, uint8 rows stay uint8 (4x fewer bytes to move; widened where the graphs run)."""
    x = np.asarray(x)
    check_layout(x.shape, x.dtype, shape, where)
    if narrow and x.dtype == np.uint8:
        return x.reshape((x.shape[0], *shape))
    with np.errstate(over="ignore", invalid="ignore"):
        return x.reshape((x.shape[0], *shape)).astype(np.float32, copy=False)


def check_array(x: np.ndarray, shape: list[int], where: str = "input", narrow: bool = False) -> np.ndarray:
    """Validate an in-memory batch: numeric, right shape, finite in float32, at least one row;
    float32 rows, or with `narrow` uint8 rows as they are (always finite)."""
    rows = as_rows(x, shape, where, narrow)
    if rows.shape[0] == 0:
        raise InputError(f"{where}: no rows")
    if rows.dtype != np.uint8:
        check_finite(rows, where)
    return rows


def os_reason(exc: OSError) -> str:
    """The operating system's reason for `exc` in a few words ("Permission denied"), without
    the errno and file name Python and pyarrow wrap around it."""
    return os.strerror(exc.errno) if exc.errno else (str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


def _reads(func):
    """A reader (a generator taking the path first) whose OSErrors, a file that cannot be read
    (permission, vanished, an I/O error), end as one line naming the file."""
    @functools.wraps(func)
    def reader(path, *args, **kwargs):
        try:
            yield from func(path, *args, **kwargs)
        except OSError as exc:
            raise InputError(f"{STDIN_NAME if is_stdio(path) else path}: cannot read ({os_reason(exc)})") from None
    return reader


def arrow_path(path: str | Path, mode: str = "rb"):
    """`path` as pyarrow takes it: its text or, for a name that is not UTF-8 (its bytes are
    held in a str by surrogate escapes, which pyarrow cannot encode), the file opened from its
    bytes (`mode` "rb" or "wb"; the caller closes a file it opened for writing)."""
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        import pyarrow as pa

        return pa.OSFile(os.fsencode(text), mode[0])
    return text


# -- chunked readers: (column names or None, float32 (n, D) chunk) ----------------------------

@_reads
def iter_table(path: str | Path, chunk_rows: int = 4096, width: int | None = None
               ) -> Iterator[tuple[list[str] | None, np.ndarray]]:
    """Yield (column names, float32 (n, D) chunk) from a CSV, NPY or Parquet file.

    `width`, when given, is the number of columns every row must have. NPY files yield their
    rows flattened; the caller reshapes. An empty file is an error.
    """
    if is_stdio(path):
        yield from _stdin_table(chunk_rows, width)
        return
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected a {', '.join(FORMATS)} file")
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    suffix = path.suffix.lower()
    readers = {".csv": _csv_chunks, ".npy": _npy_chunks, ".parquet": _parquet_chunks}
    if suffix not in readers:
        raise InputError(f"{path}: unsupported input format {suffix or '(none)'}; "
                         f"expected one of {', '.join(FORMATS)}")
    seen = 0
    for names, chunk in readers[suffix](path, chunk_rows, width):
        seen += len(chunk)
        yield names, chunk
    if seen == 0:
        raise InputError(f"{path}: file is empty (no data rows)")


def read_table(path: str | Path, width: int | None = None) -> Table:
    """Read a whole CSV, NPY or Parquet file (training data, small inputs)."""
    names, parts = None, []
    for names, chunk in iter_table(path, chunk_rows=1 << 16, width=width):
        parts.append(chunk)
    return Table(np.concatenate(parts, axis=0), names)


@_reads
def iter_rows(path: str | Path, shape: list[int], chunk_rows: int = 4096, narrow: bool = False
              ) -> Iterator[np.ndarray]:
    """Yield validated float32 chunks of rows of `shape` from a CSV, NPY or Parquet file, or
    from standard input (`-`: CSV, or NPY recognised by its magic bytes). With `narrow`, a
    uint8 NPY file yields uint8 chunks (a quarter of the bytes; the model widens them)."""
    path = Path(path) if not is_stdio(path) else path
    if not is_stdio(path) and path.suffix.lower() == ".npy":
        yield from _npy_rows(path, shape, chunk_rows, narrow)
        return
    size = int(np.prod(shape))
    for _, chunk in iter_table(path, chunk_rows, width=size):
        yield chunk.reshape(-1, *shape)


@dataclass(frozen=True)
class Selection:
    """Columns of a named table (a CSV with a header, Parquet, an Arrow table): `features`, in
    order, are the model's inputs (None: every column not kept); `keep` are copied to the
    output unchanged (ids, timestamps) so a pipeline can join back."""

    features: tuple[str, ...] | None = None
    keep: tuple[str, ...] = ()

    @classmethod
    def of(cls, columns=None, keep=None) -> Selection | None:
        """From lists or comma-separated text (`--columns a,b`); None when neither is given."""
        def names(value, option):
            if value is None:
                return None
            items = [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v) for v in value]
            if not items or any(not v for v in items):
                raise InputError(f"{option} {value!r}: expected comma-separated column names, e.g. a,b")
            if len(set(items)) != len(items):
                dup = next(v for v in items if items.count(v) > 1)
                raise InputError(f"{option}: column {dup!r} is named twice")
            return tuple(items)

        features, kept = names(columns, "--columns"), names(keep, "--keep-columns")
        if features is None and kept is None:
            return None
        return cls(features, kept or ())

    def resolve(self, names: list[str], where: str, width: int) -> tuple[list[int], list[int]]:
        """(feature positions, kept positions) in a table with columns `names`; every named
        column must exist, and the features must be `width` (the model's input size)."""
        index = {name: j for j, name in enumerate(names)}
        twice = {n for n in names if names.count(n) > 1}
        used = set(self.keep) | (set(self.features) if self.features is not None else set(names) - set(self.keep))
        if twice & used:
            raise InputError(f"{where}: column {sorted(twice & used)[0]!r} appears twice in the header; "
                             "rename one (or leave it out with --columns)")
        for name in (*(self.features or ()), *self.keep):
            if name not in index:
                shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
                raise InputError(f"{where}: no column {name!r} (columns: {shown})")
        features = list(self.features) if self.features is not None else [n for n in names if n not in self.keep]
        if len(features) != width:
            raise InputError(f"{where}: expected {width} feature columns, got {len(features)}"
                             + (" (every column not in --keep-columns is a feature; name them with --columns)"
                                if self.features is None else ""))
        return [index[n] for n in features], [index[n] for n in self.keep]


@_reads
def iter_selected(path: str | Path, shape: list[int], selection: Selection, chunk_rows: int = 4096
                  ) -> Iterator[tuple[np.ndarray, dict]]:
    """Yield (float32 rows of `shape`, {kept column: values}) chunks from a CSV with a header
    (standard input too) or a Parquet file, with the features and kept columns of `selection`.
    Kept values are text for CSV and Arrow arrays, of the file's own type, for Parquet."""
    size = int(np.prod(shape))
    if is_stdio(path):
        import io
        import sys

        stream = sys.stdin.buffer
        if hasattr(stream, "peek") and stream.peek(6)[:6] == b"\x93NUMPY":
            raise InputError(f"{STDIN_NAME}: --columns and --keep-columns need named columns (CSV with a "
                             "header, or Parquet); an NPY stream has none")
        chunks = _csv_selected(io.TextIOWrapper(stream, encoding="utf-8-sig", newline=""), STDIN_NAME,
                               chunk_rows, selection, size)
    else:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: {'is a folder, expected a file' if path.is_dir() else 'file not found'}")
        suffix = path.suffix.lower()
        if suffix == ".npy":
            raise InputError(f"{path}: --columns and --keep-columns need named columns (CSV with a header, or "
                             "Parquet); an NPY file has none")
        if suffix == ".csv":
            chunks = _csv_selected_file(path, chunk_rows, selection, size)
        elif suffix == ".parquet":
            chunks = _parquet_selected(path, chunk_rows, selection, size)
        else:
            raise InputError(f"{path}: unsupported input format {suffix or '(none)'}; "
                             f"expected one of {', '.join(FORMATS)}")
    seen = 0
    for rows, kept in chunks:
        seen += len(rows)
        yield rows.reshape(-1, *shape), kept
    if seen == 0:
        raise InputError(f"{path}: file is empty (no data rows)")


def _csv_selected_file(path: Path, chunk_rows: int, selection: Selection, width: int):
    with open(path, newline="", encoding="utf-8-sig") as f:
        yield from _csv_selected(f, path, chunk_rows, selection, width)


def _csv_selected(f, path, chunk_rows: int, selection: Selection, width: int):
    header: list[str] | None = None
    feats: list[int] = []
    kept: list[int] = []
    buffer: list[list[float]] = []
    texts: list[list[str]] = []
    for line, row in _csv_rows(f, path):
        if header is None:
            if all(is_number(c) for c in row):
                raise InputError(f"{path}: line {line}: --columns and --keep-columns need a header line "
                                 "naming the columns; this file starts with numbers")
            header = [c.strip() for c in row]
            feats, kept = selection.resolve(header, str(path), width)
            continue
        if len(row) != len(header):
            raise InputError(f"{path}: line {line}: expected {len(header)} values, got {len(row)}")
        buffer.append([_csv_number(row[j], path, line, j, header) for j in feats])
        texts.append([row[j] for j in kept])
        if len(buffer) == chunk_rows:
            yield np.asarray(buffer, dtype=np.float32), _text_columns(selection.keep, texts)
            buffer, texts = [], []
    if buffer:
        yield np.asarray(buffer, dtype=np.float32), _text_columns(selection.keep, texts)


def _text_columns(names: tuple[str, ...], texts: list[list[str]]) -> dict[str, list[str]]:
    return {name: [t[j] for t in texts] for j, name in enumerate(names)}


def _parquet_selected(path: Path, chunk_rows: int, selection: Selection, width: int):
    pfile = _open_parquet(path)
    schema = pfile.schema_arrow
    names = list(schema.names)
    feats, kept = selection.resolve(names, str(path), width)
    for j in feats:
        check_numeric_type(schema.field(j).type, str(path), j + 1, names[j])
    wanted = list(dict.fromkeys(names[j] for j in feats + kept))
    for start, batch in _parquet_batches(pfile, path, chunk_rows, wanted):
        rows = numeric_columns([batch.column(names[j]) for j in feats], [names[j] for j in feats],
                               [j + 1 for j in feats], str(path), start)
        yield rows, {names[j]: batch.column(names[j]) for j in kept}


def read_rows(path: str | Path, shape: list[int]) -> np.ndarray:
    """Read a whole input file into memory as rows of `shape` (small inputs, the Python API)."""
    return np.concatenate(list(iter_rows(path, shape)), axis=0)


STDIO = "-"
STDIN_NAME = "<stdin>"


def is_stdio(path) -> bool:
    """`-` stands for standard input (as an input) or standard output (as an output)."""
    return str(path) == STDIO


def _stdin_table(chunk_rows: int, width: int | None):
    """CSV, or NPY (sniffed by its magic bytes), streamed from standard input."""
    import sys

    stream = sys.stdin.buffer
    head = stream.peek(6)[:6] if hasattr(stream, "peek") else b""
    seen = 0
    if head == b"\x93NUMPY":
        chunks = _npy_stream_chunks(stream, chunk_rows, width)
    else:
        import io

        chunks = _csv_stream(io.TextIOWrapper(stream, encoding="utf-8-sig", newline=""), STDIN_NAME,
                             chunk_rows, width)
    for names, chunk in chunks:
        seen += len(chunk)
        yield names, chunk
    if seen == 0:
        raise InputError(f"{STDIN_NAME}: no data rows")


def _npy_stream_chunks(stream, chunk_rows: int, width: int | None):
    """An NPY array read from a stream without seeking: header, then rows chunk by chunk."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(stream)
        shape, fortran, dtype = (fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0)(stream)
    except (ValueError, SyntaxError, tokenize.TokenError, EOFError):
        raise InputError(f"{STDIN_NAME}: not a plain numeric .npy stream (malformed header)") from None
    if fortran:
        raise InputError(f"{STDIN_NAME}: a Fortran-order .npy cannot be read row by row from a stream (each row "
                         "is spread over the whole array); pass it as a file, or save np.ascontiguousarray(rows)")
    if dtype.kind not in "fiub" or dtype.hasobject or len(shape) < 2:
        raise InputError(f"{STDIN_NAME}: expected a numeric array of rows, got dtype {dtype}, shape {shape}")
    flat_width = int(np.prod(shape[1:]))
    if width is not None and flat_width != width:
        raise InputError(f"{STDIN_NAME}: expected rows of {width} values, got array of shape {tuple(shape)}")
    row_bytes = flat_width * dtype.itemsize
    for start in range(0, shape[0], chunk_rows):
        count = min(chunk_rows, shape[0] - start)
        data = stream.read(count * row_bytes)
        if len(data) != count * row_bytes:
            raise InputError(f"{STDIN_NAME}: .npy stream ends at row {start + len(data) // max(1, row_bytes)} "
                             f"of {shape[0]}")
        with np.errstate(over="ignore", invalid="ignore"):
            chunk = np.frombuffer(data, dtype=dtype).astype(np.float32).reshape(count, flat_width)
        check_finite(chunk, STDIN_NAME, first_row=start)
        yield None, chunk


def _csv_chunks(path: Path, chunk_rows: int, width: int | None):
    """A CSV file's chunks: parsed by pyarrow's CSV reader where pyarrow is installed (C++, tens
    of times the rate of Python's csv module), else, and from the first block pyarrow does not
    take whole (anything but plain numbers in the expected columns), by the Python reader, which
    then names the line and column. Blocks are yielded only once checked, so the rows yielded
    are the same either way, and the Python reader goes on from the first row not yielded."""
    done = 0
    try:
        import pyarrow.csv  # noqa: F401 - gen[parquet]; without it the Python reader does it all
    except ModuleNotFoundError:
        pass
    else:
        done = yield from _csv_arrow(path, chunk_rows, width)
        if done is None:  # the whole file, by pyarrow
            return
    with open(path, newline="", encoding="utf-8-sig") as f:
        yield from _csv_stream(f, path, chunk_rows, width, skip=done)


def _csv_arrow(path: Path, chunk_rows: int, width: int | None):
    """Yield (header, chunk) from pyarrow's streaming CSV reader, in chunks of chunk_rows; return
    None when it read the whole file, else how many data rows it yielded before a block it could not take whole
    (a cell that is not a plain number, NaN, inf or beyond float32, a row of another width, a
    line of only commas, text that is not UTF-8): the Python reader takes over from there."""
    import pyarrow as pa
    import pyarrow.csv as pv

    head = _csv_head(path)
    if head is None:
        return 0  # no data rows, or a file Python's reader refuses: it says why
    header, data_line, cells = head
    if width is not None and cells != width:
        return 0
    done, pending = 0, np.zeros((0, 0), dtype=np.float32)
    try:
        columns = [f"c{j}" for j in range(cells)]  # pyarrow's own names: a header may repeat or leave one out
        reader = pv.open_csv(str(path), read_options=pv.ReadOptions(column_names=columns, skip_rows=data_line - 1,
                                                                      block_size=1 << 22),
                             parse_options=pv.ParseOptions(ignore_empty_lines=True),
                             convert_options=pv.ConvertOptions(column_types={c: pa.float64() for c in columns},
                                                               null_values=[], strings_can_be_null=False,
                                                               quoted_strings_can_be_null=False))
        for batch in reader:
            block = np.empty((batch.num_rows, len(columns)), dtype=np.float32)
            with np.errstate(over="ignore", invalid="ignore"):
                for j, column in enumerate(batch.columns):  # column by column into C order: no transpose pass
                    block[:, j] = column.to_numpy(zero_copy_only=False)
            # beyond float32 became inf; a value that rounded onto float32's largest may lie beyond
            # it: the Python reader checks such a block value by value
            if not np.isfinite(block).all() or (np.abs(block) == FLOAT32_MAX).any():
                break
            # chunks of exactly chunk_rows, as the Python reader makes them: a block's last rows
            # wait for the next block's first
            block = np.concatenate([pending, block]) if len(pending) else block
            full = len(block) - len(block) % chunk_rows
            for start in range(0, full, chunk_rows):
                yield header, block[start:start + chunk_rows]
            done, pending = done + full, block[full:].copy()
        else:
            if len(pending):
                yield header, pending
            return None
    except (pa.ArrowException, OSError, ValueError):  # parse, conversion or decoding: the Python reader explains
        pass
    return done


def _csv_head(path: Path) -> tuple[list[str] | None, int, int] | None:
    """(header or None, physical line number of the first data row, its number of cells), as
    the Python reader decides them (the first non-empty row is a header when not all its cells
    are numbers); None where there is no data row or the Python reader refuses the file."""
    header = None
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            for line, row in _csv_rows(f, path):
                if header is None and not all(is_number(c) for c in row):
                    header = [c.strip() for c in row]
                    continue
                return header, line, len(header) if header is not None else len(row)
    except InputError:
        return None
    return None


def _csv_rows(f, path):
    """(line number, cells) of each non-empty line of the CSV text stream `f`; an undecodable
    or malformed file is one line naming it."""
    try:
        reader = csv.reader(f)
        for row in reader:
            if row and any(c.strip() for c in row):
                yield reader.line_num, row
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text CSV file (cannot decode as UTF-8)") from None
    except csv.Error as exc:
        raise InputError(f"{path}: malformed CSV ({exc})") from None


def _csv_stream(f, path, chunk_rows: int, width: int | None, skip: int = 0):
    """CSV rows from the text stream `f` (`path` names it in errors), after the first `skip`
    data rows (checked for their width, not parsed: another reader yielded them)."""
    header: list[str] | None = None
    buffer: list[list[float]] = []
    start = 0
    for line, row in _csv_rows(f, path):
        if header is None and not buffer and start == 0 and not all(is_number(c) for c in row):
            header = [c.strip() for c in row]
            if width is not None and len(header) != width:
                raise InputError(f"{path}: header has {len(header)} columns, expected {width}")
            width = len(header)
            continue
        if width is None:
            width = len(row)
        if len(row) != width:
            raise InputError(f"{path}: line {line}: expected {width} values, got {len(row)}")
        if skip:
            skip -= 1
            start += 1
            continue
        buffer.append([_csv_number(cell, path, line, j, header) for j, cell in enumerate(row)])
        if len(buffer) == chunk_rows:
            yield header, np.asarray(buffer, dtype=np.float32)
            start += len(buffer)
            buffer = []
    if buffer:
        yield header, np.asarray(buffer, dtype=np.float32)


def _csv_number(cell: str, path, line: int, j: int, header: list[str] | None) -> float:
    """The number in CSV cell `cell` (line `line`, column index `j`), or one line naming it."""
    try:
        v = float(cell)
    except ValueError:
        name = f" ({header[j]})" if header else ""
        raise InputError(f"{path}: line {line}, column {j + 1}{name}: "
                         f"expected a number, got {cell.strip()!r}") from None
    if not math.isfinite(v) or abs(v) > FLOAT32_MAX:
        name = f" ({header[j]})" if header else ""
        raise InputError(f"{path}: line {line}, column {j + 1}{name}: value is {cell.strip()} "
                         "(NaN, inf and values beyond float32 are not allowed)")
    return v


class NpyRows:
    """A .npy file read by row ranges with plain reads (`rows[a:b]` reads those rows), so
    reading a file chunk by chunk keeps only a chunk in memory; a memory map would count every
    page read as resident, growing with the file.

    C order: a row range is one contiguous read. Fortran order (what `np.save` writes for a
    transposed array or a pandas `DataFrame.to_numpy()`): each column holds all N rows in a
    run, so a row range is one read per column, straight into the chunk's buffer."""

    def __init__(self, path: Path, shape: tuple, dtype: np.dtype, offset: int, fortran: bool = False):
        self.path, self.shape, self.dtype, self.offset = path, tuple(shape), np.dtype(dtype), offset
        self.fortran = fortran
        self.ndim = len(self.shape)
        self.row_bytes = int(np.prod(self.shape[1:])) * self.dtype.itemsize

    def __getitem__(self, rows: slice) -> np.ndarray:
        start, stop, _ = rows.indices(self.shape[0])
        count = max(0, stop - start)
        if self.fortran:
            return self._columns(start, count)
        with open(self.path, "rb") as f:
            f.seek(self.offset + start * self.row_bytes)
            data = f.read(count * self.row_bytes)
        if len(data) != count * self.row_bytes:
            raise InputError(f"{self.path}: truncated .npy file: it ends at row "
                             f"{start + len(data) // max(1, self.row_bytes)} of {self.shape[0]}")
        return np.frombuffer(data, dtype=self.dtype).reshape(count, *self.shape[1:])

    def _columns(self, start: int, count: int) -> np.ndarray:
        """Rows start..start+count of a Fortran-order file, as a C-order array: the columns
        are read 32 at a time into a scratch block and transposed into place (numpy transposes
        a (32, count) block into a column slice about 5x faster than the whole chunk at once)."""
        columns, itemsize = self.row_bytes // self.dtype.itemsize, self.dtype.itemsize
        if columns == 0:  # rows of no values (only a hand-made header says Fortran for these)
            return np.empty((count, *self.shape[1:]), dtype=self.dtype)
        size, stride = count * itemsize, self.shape[0] * itemsize
        out = np.empty((count, columns), dtype=self.dtype)
        scratch = np.empty((min(32, columns), count), dtype=self.dtype)
        raw = memoryview(scratch.reshape(-1).view(np.uint8))
        with open(self.path, "rb", buffering=0) as f:
            for first in range(0, columns, len(scratch)):
                last = min(columns, first + len(scratch))
                for c in range(first, last):
                    f.seek(self.offset + c * stride + start * itemsize)
                    if f.readinto(raw[(c - first) * size:(c - first + 1) * size]) != size:
                        raise InputError(f"{self.path}: truncated .npy file: column {c + 1} of {columns} ends "
                                         f"before row {start + count} of {self.shape[0]}")
                out[:, first:last] = scratch[:last - first].T
        inner = self.shape[1:]
        if len(inner) == 1:
            return out
        # Fortran order runs the first data axis fastest: the columns are (..., d2, d1) in C order.
        return np.ascontiguousarray(out.reshape(count, *inner[::-1]).transpose(0, *range(len(inner), 0, -1)))


def _npy_layout(path: Path) -> NpyRows | None:
    """The file as NpyRows when its header is a plain one (versions 1 and 2, C or Fortran
    order, no objects); None to let numpy read anything else (and report what is wrong with it)."""
    fmt = np.lib.format
    try:
        with open(path, "rb") as f:
            version = fmt.read_magic(f)
            if version not in ((1, 0), (2, 0)):
                return None
            shape, fortran, dtype = (fmt.read_array_header_1_0 if version == (1, 0)
                                     else fmt.read_array_header_2_0)(f, max_header_size=10000)
            offset = f.tell()
    except Exception:  # numpy's own reader below says what is wrong, in its words
        return None
    if dtype.hasobject or dtype.kind not in "fiub" or len(shape) < 2:
        return None
    rows = NpyRows(path, shape, dtype, offset, fortran=fortran)
    held = (path.stat().st_size - offset) // rows.row_bytes if rows.row_bytes else shape[0]
    if held < shape[0]:
        raise InputError(f"{path}: truncated .npy file: its header says {shape[0]} rows, it holds {held}")
    return rows


def _open_npy(path: Path):
    rows = _npy_layout(path) if path.is_file() else None
    if rows is not None:
        return rows
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        detail = str(exc).splitlines()[0] if str(exc) else "unreadable"
        if "object at 0x" in detail or "malformed node" in detail:
            detail = "malformed header"
        raise InputError(f"{path}: not a plain numeric .npy file ({detail[:160]})") from None
    except (SyntaxError, tokenize.TokenError, RecursionError, MemoryError):  # numpy parses the header as Python
        raise InputError(f"{path}: not a plain numeric .npy file (malformed header)") from None
    except EOFError:
        raise InputError(f"{path}: empty or truncated .npy file (no header)") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({os_reason(exc)})") from None
    if array.dtype.kind not in "fiub":
        raise InputError(f"{path}: expected numeric values, got dtype {array.dtype}")
    if array.ndim < 2:
        raise InputError(f"{path}: expected an array of rows (N, ...), got shape {array.shape}")
    return array


def _npy_chunks(path: Path, chunk_rows: int, width: int | None):
    array = _open_npy(path)
    flat_width = int(np.prod(array.shape[1:]))
    if width is not None and flat_width != width:
        raise InputError(f"{path}: expected rows of {width} values, got array of shape {array.shape}")
    for start in range(0, array.shape[0], chunk_rows):
        with np.errstate(over="ignore", invalid="ignore"):
            chunk = np.asarray(array[start:start + chunk_rows], dtype=np.float32).reshape(-1, flat_width)
        check_finite(chunk, str(path), first_row=start)
        yield None, chunk


def _npy_rows(path: Path, shape: list[int], chunk_rows: int, narrow: bool = False) -> Iterator[np.ndarray]:
    array = _open_npy(path)
    if array.shape[0] == 0:
        raise InputError(f"{path}: file is empty (no data rows)")
    check_layout(array.shape, array.dtype, shape, str(path))  # before reading any row
    for start in range(0, array.shape[0], chunk_rows):
        block = array[start:start + chunk_rows]  # NpyRows reads a fresh array; a memory map's is copied out
        chunk = as_rows(block if isinstance(array, NpyRows) else np.array(block), shape, str(path), narrow)
        if chunk.dtype != np.uint8:
            check_finite(chunk, str(path), first_row=start)
        yield chunk


def _parquet_chunks(path: Path, chunk_rows: int, width: int | None):
    pfile = _open_parquet(path)
    schema = pfile.schema_arrow
    names = list(schema.names)
    if width is not None and len(schema) != width:
        raise InputError(f"{path}: expected {width} columns, got {len(schema)}")
    for j, fld in enumerate(schema):
        check_numeric_type(fld.type, str(path), j + 1, fld.name)
    for start, batch in _parquet_batches(pfile, path, chunk_rows):
        yield names, numeric_columns([batch.column(j) for j in range(batch.num_columns)], names,
                                     list(range(1, len(names) + 1)), str(path), start)


def _open_parquet(path: Path):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingDependency(f"{path}: reading Parquet needs pyarrow: pip install 'gen[parquet]'") from None
    try:
        # pre_buffer (pyarrow's default) reads ahead whole row groups and keeps them: 530 MB of
        # peak memory for a 1M x 64 file against 195 MB without, at the same speed.
        return pq.ParquetFile(arrow_path(path), pre_buffer=False)
    except OSError as exc:
        if not exc.errno:  # pyarrow's own I/O errors (a damaged footer) carry none
            raise InputError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
        raise InputError(f"{path}: cannot read ({os_reason(exc)})") from None
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise InputError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None


def _parquet_batches(pfile, path: Path, chunk_rows: int, columns: list[str] | None = None):
    """(rows before the batch, record batch) of a Parquet file; a damaged page is one line."""
    start = 0
    batches = None
    while True:
        try:  # pyarrow raises its own types (OSError, ArrowInvalid) for a damaged page
            batches = batches if batches is not None else pfile.iter_batches(batch_size=chunk_rows, columns=columns)
            batch = next(batches)
        except StopIteration:
            return
        except Exception as exc:
            raise InputError(f"{path}: damaged Parquet data after row {start} "
                             f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
        yield start, batch
        start += batch.num_rows


def check_numeric_type(arrow_type, where: str, position: int, name: str) -> None:
    """Refuse an Arrow column type that is not integer, floating point or boolean."""
    import pyarrow.types as pat

    if not (pat.is_integer(arrow_type) or pat.is_floating(arrow_type) or pat.is_boolean(arrow_type)):
        raise InputError(f"{where}: column {position} ({name}): expected numbers, got {arrow_type}")


_ARROW_FLOATS = {"halffloat": "float16", "float": "float32", "double": "float64"}


def _arrow_values(col) -> np.ndarray:
    """An Arrow column without nulls as numpy values: a fixed-width number column read from its
    data buffer (Array.to_numpy imports pandas, ~95 MB resident, in every process that reads
    Parquet); other types (booleans, chunked columns) through to_numpy."""
    name = str(col.type)
    dtype = _ARROW_FLOATS.get(name, name if name.startswith(("int", "uint")) else None)
    if dtype is None or not hasattr(col, "buffers") or not hasattr(col, "offset"):
        return col.to_numpy(zero_copy_only=False)
    dtype = np.dtype(dtype)
    return np.frombuffer(col.buffers()[1], dtype=dtype, count=len(col), offset=col.offset * dtype.itemsize)


def numeric_columns(columns: list, names: list[str], positions: list[int], where: str, start: int = 0,
                    label: str = "row") -> np.ndarray:
    """Arrow columns (numeric, checked by `check_numeric_type`) as a float32 (n, len) array:
    a missing value, NaN or inf is one line naming the row (counted from `start` + 1) and the
    column (its 1-based `positions` and `names` in the file)."""
    for col, name, position in zip(columns, names, positions):
        if col.null_count:
            r = int(np.flatnonzero(np.asarray(col.is_null()))[0])
            raise InputError(f"{where}: {label} {start + r + 1}, column {position} ({name}): missing value")
    n = len(columns[0]) if columns else 0
    chunk = np.empty((n, len(columns)), dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        for j, col in enumerate(columns):
            chunk[:, j] = _arrow_values(col)
    bad = ~np.isfinite(chunk)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise InputError(f"{where}: {label} {start + int(r) + 1}, column {positions[c]} ({names[c]}): value is "
                         f"{chunk[r, c]} in float32 (NaN, inf and values beyond float32 are not allowed)")
    return chunk


# -- IDX (MNIST) ----------------------------------------------------------------------------

def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (MNIST's format, optionally gzipped) into a numpy array."""
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise InputError(f"{path}: cannot read IDX file ({exc})") from None
    if len(data) < 4 or data[:2] != b"\x00\x00":
        raise InputError(f"{path}: not an IDX file (bad magic number)")
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        raise InputError(f"{path}: unknown IDX type code 0x{code:02x}")
    if len(data) < 4 + 4 * ndim:
        raise InputError(f"{path}: IDX header is truncated")
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    itemsize = np.dtype(IDX_DTYPES[code]).itemsize
    body_bytes = len(data) - 4 - 4 * ndim
    if body_bytes != int(np.prod(dims)) * itemsize:
        raise InputError(f"{path}: IDX header says {dims} but holds {body_bytes // itemsize} values")
    return np.frombuffer(data, dtype=IDX_DTYPES[code], offset=4 + 4 * ndim).reshape(dims)
