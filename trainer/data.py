"""Datasets the trainer reads: built-in (sklearn digits, 2-D Gaussian mixtures) and files
in public formats (MNIST IDX, CSV, NPY, Parquet).

Each loader returns a `Dataset`: raw float32 rows, optional integer labels, and what the
manifest needs to know about the data (shape, range, image layout, source).
"""

from __future__ import annotations

import csv
import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import TrainError

BUILTIN = ("digits", "ring8", "grid25")


@dataclass
class Dataset:
    x: np.ndarray                 # (N, *shape) raw values, float32
    y: np.ndarray | None          # (N,) integer labels, or None
    kind: str                     # "image", "points" or "tabular"
    source: str
    image_shape: list[int] | None = None
    raw_range: tuple[float, float] | None = None   # known range of raw values (images)

    @property
    def shape(self) -> list[int]:
        return list(self.x.shape[1:])


def load_dataset(spec: str, label_column: str | None = None, seed: int = 0) -> Dataset:
    """Load `spec`: a built-in name or a path to a file in a supported format."""
    if spec == "digits":
        return digits()
    if spec == "ring8":
        return ring8(seed=seed)
    if spec == "grid25":
        return grid25(seed=seed)
    path = Path(spec)
    if not path.exists():
        raise TrainError(f"{spec}: not a built-in dataset ({', '.join(BUILTIN)}) and no such file")
    name = path.name.lower()
    if "idx3-ubyte" in name:
        return mnist_idx(path)
    if name.endswith(".npy"):
        return npy_file(path)
    if name.endswith(".csv"):
        return csv_file(path, label_column)
    if name.endswith(".parquet"):
        return parquet_file(path, label_column)
    raise TrainError(f"{path}: unsupported data format; expected digits, ring8, grid25, "
                     "*-idx3-ubyte[.gz], .npy, .csv or .parquet")


def digits() -> Dataset:
    """sklearn's 8x8 digits (1,797 images, values 0..16), embedded in scikit-learn."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.data.astype(np.float32)
    return Dataset(x, bunch.target.astype(np.int64), "image", "digits", [1, 8, 8], (0.0, 16.0))


def _mixture(centres: np.ndarray, std: float, n: int, seed: int, source: str) -> Dataset:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(centres), size=n)
    x = centres[labels] + std * rng.standard_normal((n, 2))
    return Dataset(x.astype(np.float32), labels.astype(np.int64), "points", source)


def ring8(n: int = 10_000, seed: int = 0) -> Dataset:
    """Eight Gaussians on a circle of radius 2, std 0.02 (the mode-collapse benchmark)."""
    angles = 2 * np.pi * np.arange(8) / 8
    return _mixture(2.0 * np.stack([np.cos(angles), np.sin(angles)], 1), 0.02, n, seed, "ring8")


def grid25(n: int = 10_000, seed: int = 0) -> Dataset:
    """A 5x5 grid of Gaussians at -4..4 step 2, std 0.05."""
    g = np.arange(-4, 5, 2, dtype=np.float64)
    return _mixture(np.stack(np.meshgrid(g, g), -1).reshape(-1, 2), 0.05, n, seed, "grid25")


def _open(path: Path):
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (MNIST's format) into a numpy array."""
    try:
        with _open(path) as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise TrainError(f"{path}: cannot read IDX file ({exc})") from None
    if len(data) < 4 or data[:2] != b"\x00\x00":
        raise TrainError(f"{path}: not an IDX file (bad magic number)")
    code, ndim = data[2], data[3]
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if code not in dtypes:
        raise TrainError(f"{path}: unknown IDX type code 0x{code:02x}")
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    body = np.frombuffer(data, dtype=dtypes[code], offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise TrainError(f"{path}: IDX header says {dims} but holds {body.size} values")
    return body.reshape(dims)


def mnist_idx(path: Path) -> Dataset:
    """MNIST-style images (N, 28, 28) uint8; labels are read from the `labels-idx1` file beside."""
    images = read_idx(path)
    if images.ndim != 3:
        raise TrainError(f"{path}: expected images of shape (N, H, W), got {images.shape}")
    n, h, w = images.shape
    label_name = path.name.replace("images-idx3", "labels-idx1").replace("idx3", "idx1")
    label_path = path.with_name(label_name)
    y = None
    if label_path != path and label_path.exists():
        y = read_idx(label_path).astype(np.int64)
        if y.shape != (n,):
            raise TrainError(f"{label_path}: expected {n} labels, got shape {y.shape}")
    return Dataset(images.reshape(n, h * w).astype(np.float32), y, "image", str(path), [1, h, w], (0.0, 255.0))


def _check_finite(x: np.ndarray, path: Path) -> None:
    bad = np.argwhere(~np.isfinite(x.reshape(len(x), -1)))
    if len(bad):
        r, c = bad[0]
        raise TrainError(f"{path}: row {r}, column {c + 1}: value is not finite")


def npy_file(path: Path) -> Dataset:
    """(N, D) tabular rows or (N, C, H, W) images from a plain .npy (no pickle)."""
    try:
        x = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise TrainError(f"{path}: not a plain numeric .npy file ({exc})") from None
    if x.dtype.kind not in "fiub" or x.ndim not in (2, 4) or len(x) == 0:
        raise TrainError(f"{path}: expected a numeric (N, D) or (N, C, H, W) array, got {x.dtype} {x.shape}")
    x = x.astype(np.float32)
    _check_finite(x, path)
    if x.ndim == 4:
        n, c, h, w = x.shape
        return Dataset(x.reshape(n, -1), None, "image", str(path), [c, h, w],
                       (float(x.min()), float(x.max())))
    return Dataset(x, None, "tabular", str(path))


def _split_labels(names: list[str] | None, x: np.ndarray, label_column: str | None, path: Path):
    if label_column is None:
        return x, None
    if names is None or label_column not in names:
        raise TrainError(f"{path}: label column {label_column!r} not found (columns: {names})")
    j = names.index(label_column)
    y = x[:, j]
    if not np.all(y == np.round(y)):
        raise TrainError(f"{path}: label column {label_column!r} holds non-integer values")
    return np.delete(x, j, axis=1), y.astype(np.int64)


def csv_file(path: Path, label_column: str | None = None) -> Dataset:
    """Numeric CSV, one row per example; an optional header row names the columns."""
    rows, names = [], None
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        for row in reader:
            if not row:
                continue
            if names is None and not rows and reader.line_num == 1 and not _numeric(row[0]):
                names = [c.strip() for c in row]
                continue
            try:
                rows.append([float(c) for c in row])
            except ValueError:
                j = next(i for i, c in enumerate(row) if not _numeric(c))
                raise TrainError(f"{path}: line {reader.line_num}, column {j + 1}: "
                                 f"expected a number, got {row[j]!r}") from None
            if len(rows[-1]) != len(rows[0]):
                raise TrainError(f"{path}: line {reader.line_num}: expected {len(rows[0])} values, "
                                 f"got {len(rows[-1])}")
    if not rows:
        raise TrainError(f"{path}: file is empty (no data rows)")
    x = np.asarray(rows, dtype=np.float32)
    _check_finite(x, path)
    x, y = _split_labels(names, x, label_column, path)
    return Dataset(x, y, "tabular", str(path))


def _numeric(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def parquet_file(path: Path, label_column: str | None = None) -> Dataset:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise TrainError(f"{path}: reading Parquet needs pyarrow: pip install pyarrow") from None
    table = pq.read_table(path)
    names = list(table.column_names)
    try:
        x = np.stack([table.column(n).to_numpy().astype(np.float32) for n in names], axis=1)
    except (TypeError, ValueError) as exc:
        raise TrainError(f"{path}: expected numeric columns ({exc})") from None
    if len(x) == 0:
        raise TrainError(f"{path}: file is empty (no data rows)")
    _check_finite(x, path)
    x, y = _split_labels(names, x, label_column, path)
    return Dataset(x, y, "tabular", str(path))
