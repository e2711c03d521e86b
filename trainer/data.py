"""Datasets the trainer reads: built-in (sklearn digits, 2-D Gaussian mixtures) and files in
public formats (MNIST IDX, CSV, NPY, Parquet), read with the runtime's readers so training
and serving read a file the same way.

Each loader returns a `Dataset`: float32 rows in their natural shape ((N, C, H, W) images,
(N, D) tabular rows, (N, 2) points), optional integer labels, and what the manifest needs to
know (kind, source, value range, column names).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gen.runtime.errors import InputError
from gen.runtime.ratings import RatingsTable, read_ratings
from gen.runtime.readers import check_finite, read_idx, read_table

BUILTIN = ("digits", "ring8", "grid25", "lowrank")
RATINGS_NAMES = ("u.data", "ratings.dat", "ratings.csv")


@dataclass
class Dataset:
    x: np.ndarray                 # (N, *shape) raw values, float32
    y: np.ndarray | None          # (N,) integer labels, or None
    kind: str                     # "image", "points" or "tabular"
    source: str
    raw_range: tuple[float, float] | None = None   # known range of raw values (images)
    names: list[str] | None = None                 # feature column names, when the file has them
    moments: tuple | None = None  # (mean, std) per column of all fitting rows, when x holds a sample of them

    @property
    def shape(self) -> list[int]:
        return list(self.x.shape[1:])


@dataclass
class RatingsData:
    """(user, item, rating) triples: the data of completion families."""

    table: RatingsTable
    source: str
    kind: str = "ratings"
    y: None = None


# Rows handed over in memory (`gen.fit`), by the spec that names them for one run.
ARRAY_NAME = "array"
_IN_MEMORY: dict[str, Dataset] = {}
_NAMING = threading.Lock()


def from_arrays(x, y=None, names: list[str] | None = None, source: str = ARRAY_NAME) -> Dataset:
    """A Dataset from rows in memory: a numpy array ((N, D) rows, (N, H, W) or (N, C, H, W)
    images), a pandas DataFrame or a pyarrow Table (numeric columns; their names kept), with
    optional integer labels `y`. Checked as a file's rows are: numeric, finite in float32, at
    least one row; a one-line InputError names what is wrong. `source`: where the rows came
    from (the run's `data` and the bundle's data.source)."""
    if not isinstance(source, str) or not source.strip() or "\n" in source:
        raise InputError(f"source: expected a one-line name for where the rows came from, got {source!r}")
    if hasattr(x, "column_names") and hasattr(x, "to_pandas"):  # a pyarrow Table (its .columns are arrays)
        names = [str(c) for c in x.column_names] if names is None else names
        x = x.to_pandas()
    if hasattr(x, "columns") and hasattr(x, "to_numpy") and hasattr(x, "dtypes"):  # a pandas DataFrame
        import pandas as pd

        for column, dtype in zip(x.columns, x.dtypes):
            if not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)):
                raise InputError(f"rows: column {column!r} holds {dtype} values; expected numbers")
        names = [str(c) for c in x.columns] if names is None else names
        # float64 first (bools, nullable Int64 with its missing values as NaN, for check_finite)
        x = x.astype("float64").to_numpy(dtype=np.float64, na_value=np.nan)
    array = np.asarray(x)
    if array.dtype.kind not in "fiub":
        raise InputError(f"rows: expected numeric values, got dtype {array.dtype}")
    if array.ndim == 3:
        array = array[:, None]  # (N, H, W) images: one channel
    if array.ndim not in (2, 4) or len(array) == 0:
        raise InputError(f"rows: expected a non-empty (N, D) table or (N, [C,] H, W) images, got shape {array.shape}")
    with np.errstate(over="ignore", invalid="ignore"):
        rows = np.ascontiguousarray(array, dtype=np.float32)
    check_finite(rows.reshape(len(rows), -1), "rows")
    labels = None
    if y is not None:
        labels = np.asarray(y)
        if labels.shape != (len(rows),) or labels.dtype.kind not in "iubf" or \
                (labels.dtype.kind == "f" and not np.all(labels == np.round(labels))):
            raise InputError(f"y: expected {len(rows)} integer labels, got shape {labels.shape} and dtype {labels.dtype}")
        labels = labels.astype(np.int64)
    if names is not None and (rows.ndim != 2 or len(names) != rows.shape[1]):
        raise InputError(f"names: expected {rows.shape[1] if rows.ndim == 2 else 'no'} column names, got {len(names)}")
    if rows.ndim == 4:
        return Dataset(rows, labels, "image", source, (float(rows.min()), float(rows.max())))
    return Dataset(rows, labels, "tabular", source, names=list(names) if names is not None else None)


class in_memory:
    """`with in_memory(dataset) as spec:` names `dataset` by `spec` (a `--data` value) for
    the training inside the block: `name` (the dataset's source by default), or `name:2` ...
    while another block holds `name`."""

    def __init__(self, dataset: Dataset, name: str | None = None):
        self.dataset = dataset
        self.name = name or dataset.source
        self.spec = ""

    def __enter__(self) -> str:
        with _NAMING:
            n = 1  # "array" in config.yaml; "array:2" ... only while another run holds "array"
            while (spec := self.name if n == 1 else f"{self.name}:{n}") in _IN_MEMORY:
                n += 1
            self.spec = spec
            _IN_MEMORY[spec] = self.dataset
        return spec

    def __exit__(self, *exc) -> None:
        with _NAMING:
            _IN_MEMORY.pop(self.spec, None)


def load_dataset(spec: str, label_column: str | None = None, seed: int = 0) -> Dataset:
    """Load `spec`: a built-in name, a path to a file in a supported format, or rows handed
    over in memory (`in_memory`)."""
    if spec in _IN_MEMORY:
        return _IN_MEMORY[spec]
    kind = source_format(spec, label_column)
    if kind == "files":
        raise InputError(f"{spec}: a folder or glob of files is streamed, not loaded at once "
                         "(gen.trainer.train.training_rows)")
    if kind == "digits":
        return digits()
    if kind == "ring8":
        return ring8(seed=seed)
    if kind == "grid25":
        return grid25(seed=seed)
    if kind == "lowrank":
        return lowrank(seed=seed)
    path = Path(spec)
    if kind == "ratings":
        return RatingsData(read_ratings(path), str(path))
    if kind == "idx":
        return mnist_idx(path)
    if kind == "npy":
        return npy_file(path, label_column)
    return table_file(path, label_column)


def streamed_files(spec: str, stream: bool = False) -> list[Path] | None:
    """The files a run streams its rows from (trainer/stream.py): every CSV / NPY / Parquet
    file of a folder or glob (as `gen score` finds them), or the one file of `--stream`; None
    for rows read into memory."""
    from gen.runtime.batch import expand, is_many

    if spec in _IN_MEMORY or not (stream or is_many(spec)):
        return None
    if not is_many(spec):
        fmt = source_format(spec)
        if fmt not in ("npy", "table"):
            raise InputError(f"--stream: {spec} is {'a built-in dataset' if fmt in BUILTIN else f'a {fmt} file'}; "
                             "only CSV, NPY and Parquet rows are streamed")
        return [Path(spec)]
    return expand(spec)[1]


def source_format(spec: str, label_column: str | None = None) -> str:
    """What `spec` names, found without reading its rows: a built-in dataset (its name) or a
    file format (ratings, idx, npy or table). A missing file, a folder, a file that cannot be
    opened, a format gen does not read, and a label column where there are no named columns
    are refused in one line. It needs no torch: `gen train` checks --data with it first."""
    if spec in _IN_MEMORY:
        return "array"
    from gen.runtime.batch import expand, is_many

    if is_many(spec):  # a folder or glob of files, streamed (trainer/stream.py)
        expand(spec)
        return "files"
    if label_column is not None and not spec.lower().endswith((".csv", ".parquet")):
        raise InputError(f"--label-column {label_column!r}: only a CSV or Parquet file has named columns; "
                         f"{spec} does not")
    if spec in BUILTIN:
        return spec
    path = Path(spec)
    if not path.exists() and spec.split(":")[0] == ARRAY_NAME:
        raise InputError(f"{spec}: the rows this run was trained on were handed over in memory (gen.fit) and are "
                         "no longer held; export it through the Run that fit returned, in the same process")
    if not path.exists():
        raise InputError(f"{spec}: not a built-in dataset ({', '.join(BUILTIN)}) and no such file")
    if path.is_dir():
        raise InputError(f"{spec}: is a folder; expected a file or one of {', '.join(BUILTIN)}")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise InputError(f"{spec}: cannot be read ({exc.strerror or exc})") from None
    name = path.name.lower()
    if name in RATINGS_NAMES or name.endswith((".data", ".dat")) or (name.endswith(".csv") and _triples_header(path)):
        if label_column is not None:
            raise InputError(f"--label-column {label_column!r}: {spec} holds ratings, which have no labels")
        return "ratings"
    if "idx3-ubyte" in name:
        return "idx"
    if name.endswith(".npy"):
        return "npy"
    if name.endswith((".csv", ".parquet")):
        return "table"
    raise InputError(f"{path}: unsupported data format; expected digits, ring8, grid25, lowrank, "
                     "*-idx3-ubyte[.gz], .npy, .csv, .parquet or ratings (u.data, ratings.dat, ratings.csv, "
                     "a user,item,rating CSV)")


def data_kind(spec: str) -> str:
    """The kind of data `spec` holds (image, tabular, points or ratings), found by
    `source_format` without reading the rows (a .npy by its header only), so that `--model
    auto` can pick a family before the data is loaded. A spec that `source_format` refuses is
    reported as tabular here and refused by `load_dataset`, with its own message."""
    if spec in _IN_MEMORY:
        return _IN_MEMORY[spec].kind
    try:
        fmt = source_format(spec)
    except InputError:
        return "tabular"
    kinds = {"digits": "image", "ring8": "points", "grid25": "points", "lowrank": "ratings", "ratings": "ratings",
             "idx": "image", "table": "tabular"}
    if fmt == "files":  # by the first file, as the stream reads them
        from gen.runtime.batch import expand

        first = expand(spec)[1][0]
        spec, fmt = str(first), ("npy" if first.suffix.lower() == ".npy" else "table")
    if fmt == "npy":
        try:
            return "image" if np.load(spec, mmap_mode="r", allow_pickle=False).ndim == 4 else "tabular"
        except (ValueError, OSError):
            return "tabular"
    return kinds.get(fmt, "tabular")


def _triples_header(path: Path) -> bool:
    """Whether a CSV's header names user, item and rating columns (a ratings file)."""
    from gen.runtime.ratings import ITEM_COLUMNS, RATING_COLUMNS, USER_COLUMNS

    with open(path, encoding="utf-8-sig", errors="replace") as f:
        names = [c.strip().lower() for c in f.readline().split(",")]
    return all(any(n in names for n in options) for options in (USER_COLUMNS, ITEM_COLUMNS, RATING_COLUMNS))


def lowrank(n_users: int = 300, n_items: int = 200, rank: int = 3, observed: float = 0.25,
            seed: int = 0) -> RatingsData:
    """Synthetic ratings 1..5 of a rank-3 preference matrix (user and item factors plus
    biases, rounded), a quarter of the pairs observed: a completion problem with a known
    low-rank answer, small enough for tests and the demo."""
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((n_users, rank)) / np.sqrt(rank)
    v = rng.standard_normal((n_items, rank))
    truth = 3.0 + u @ v.T + 0.3 * rng.standard_normal((n_users, 1)) + 0.3 * rng.standard_normal((1, n_items))
    users, items = np.nonzero(rng.random((n_users, n_items)) < observed)
    ratings = np.clip(np.round(truth[users, items]), 1, 5)
    table = RatingsTable(np.asarray([str(i + 1) for i in users], dtype=object),
                         np.asarray([str(i + 1) for i in items], dtype=object), ratings.astype(np.float64),
                         np.arange(1, len(ratings) + 1), "int", "lowrank")
    return RatingsData(table, "lowrank")


def digits() -> Dataset:
    """sklearn's 8x8 digits (1,797 images, values 0..16), embedded in scikit-learn."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.data.astype(np.float32).reshape(-1, 1, 8, 8)
    return Dataset(x, bunch.target.astype(np.int64), "image", "digits", (0.0, 16.0))


def _mixture(centres: np.ndarray, std: float, n: int, seed: int, source: str) -> Dataset:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(centres), size=n)
    x = centres[labels] + std * rng.standard_normal((n, 2))
    return Dataset(x.astype(np.float32), labels.astype(np.int64), "points", source)


def ring8(n: int = 10_000, seed: int = 0) -> Dataset:
    """Eight Gaussians on a circle of radius 2, std 0.02 (the mode-collapse benchmark)."""
    from .protocols.modes import RING8_CENTRES, RING8_STD

    return _mixture(RING8_CENTRES, RING8_STD, n, seed, "ring8")


def grid25(n: int = 10_000, seed: int = 0) -> Dataset:
    """A 5x5 grid of Gaussians at -4..4 step 2, std 0.05."""
    from .protocols.modes import GRID25_CENTRES, GRID25_STD

    return _mixture(GRID25_CENTRES, GRID25_STD, n, seed, "grid25")


def mnist_idx(path: Path) -> Dataset:
    """MNIST-style images (N, H, W) uint8 -> (N, 1, H, W); labels are read from the
    `labels-idx1` file beside them when it exists."""
    images = read_idx(path)
    if images.ndim != 3 or images.shape[0] == 0:
        raise InputError(f"{path}: expected images of shape (N, H, W), got {images.shape}")
    n, h, w = images.shape
    label_path = path.with_name(path.name.replace("images-idx3", "labels-idx1").replace("idx3", "idx1"))
    y = None
    if label_path != path and label_path.exists():
        y = read_idx(label_path).astype(np.int64)
        if y.shape != (n,):
            raise InputError(f"{label_path}: expected {n} labels, got shape {y.shape}")
    return Dataset(images.reshape(n, 1, h, w).astype(np.float32), y, "image", str(path), (0.0, 255.0))


def npy_file(path: Path, label_column: str | None = None) -> Dataset:
    """(N, D) tabular rows or (N, C, H, W) images from a plain .npy (no pickle)."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InputError(f"{path}: not a plain numeric .npy file ({str(exc).splitlines()[0]})") from None
    if array.ndim not in (2, 4):
        raise InputError(f"{path}: expected a numeric (N, D) or (N, C, H, W) array, got shape {array.shape}")
    x = read_table(path).x.reshape(array.shape)  # the runtime's checks: dtype, finite in float32, non-empty
    if x.ndim == 4:
        return Dataset(x, None, "image", str(path), (float(x.min()), float(x.max())))
    return Dataset(x, None, "tabular", str(path))


def table_file(path: Path, label_column: str | None = None) -> Dataset:
    """A numeric CSV or Parquet file, one row per example; a CSV header (or Parquet's column
    names) names the columns, and `label_column` is taken out of the features as labels."""
    table = read_table(path)
    x, names, y = table.x, table.names, None
    if label_column is not None:
        if names is None or label_column not in names:
            raise InputError(f"{path}: label column {label_column!r} not found (columns: {names})")
        j = names.index(label_column)
        y = x[:, j]
        if not np.all(y == np.round(y)):
            raise InputError(f"{path}: label column {label_column!r} holds non-integer values")
        x, names, y = np.delete(x, j, axis=1), names[:j] + names[j + 1:], y.astype(np.int64)
    if x.shape[1] == 0:
        raise InputError(f"{path}: no feature columns")
    return Dataset(x, y, "tabular", str(path), names=names)
