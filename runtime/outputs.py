"""Writing results: atomically (temp file + rename), so a failure leaves nothing behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .errors import GenError, InputError, MissingDependency

SCORE_FORMATS = (".csv", ".npy", ".parquet")
SCORE_DTYPE = np.dtype([("index", "<i8"), ("score", "<f8"), ("normal_quantile", "<f8"), ("flag", "?")])


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only on success."""
    target = Path(target)
    if not target.parent.is_dir():
        raise InputError(f"{target}: output folder {target.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the umask's mode
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def staged_folder(out: str | Path, marker: str, what: str, error: type[GenError] = InputError,
                  replace: bool = True) -> Iterator[Path]:
    """Yield an empty staging folder beside `out`; on success it replaces `out` in one rename.

    A failure leaves `out` as it was. An existing `out` is replaced only when it is empty or
    holds `marker` (one of gen's own folders), never an arbitrary folder of the user's; a
    refusal raises `error` (a run folder is the user's input, a bundle folder a BundleError).
    """
    out = Path(out)
    if out.is_symlink():
        raise error(f"{out}: is a symbolic link; choose another --out (gen replaces only folders it wrote)")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not (out / marker).is_file():
            raise error(f"{out}: exists and is not a gen {what}; choose another --out")
        if not replace:
            raise error(f"{out}: {what} exists ({what}s are immutable; pass --force to replace it)")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent))
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700; a shipped bundle must be readable
    except OSError as exc:
        raise InputError(f"{out}: cannot write here ({exc.strerror})") from None
    try:
        yield staging
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def save_npy(array: np.ndarray, target: str | Path) -> Path:
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array, allow_pickle=False)
    return Path(target)


def save_csv(array: np.ndarray, target: str | Path, header: list[str] | None = None) -> Path:
    with atomic_path(target) as tmp:
        np.savetxt(tmp, np.asarray(array).reshape(len(array), -1), delimiter=",", fmt="%.7g",
                   header=",".join(header) if header else "", comments="")
    return Path(target)


def png_bytes(image: np.ndarray) -> bytes:
    """Encode an (H, W) or (H, W, 3) uint8 image as PNG (zlib only, no imaging library)."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    height, width = image.shape[:2]
    color = 2 if image.ndim == 3 else 0
    raw = b"".join(b"\x00" + image[r].tobytes() for r in range(height))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def save_png(image: np.ndarray, target: str | Path) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_bytes(png_bytes(image))
    return Path(target)


def image_grid(images: np.ndarray, value_range: tuple[float, float], pad: int = 1, zoom: int = 1) -> np.ndarray:
    """Tile (N, C, H, W) images (C is 1 or 3) into one uint8 grid, nearly square."""
    lo, hi = value_range
    scaled = np.clip((images - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    n, c, h, w = scaled.shape
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    grid = np.zeros((c, rows * (h + pad) + pad, cols * (w + pad) + pad), dtype=np.float64)
    for i in range(n):
        r, q = divmod(i, cols)
        grid[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = scaled[i]
    grid = (grid * 255).round().astype(np.uint8)
    grid = grid.repeat(zoom, axis=1).repeat(zoom, axis=2)
    return grid[0] if c == 1 else np.transpose(grid, (1, 2, 0))


def scatter_image(points: np.ndarray, size: int = 256, extent: float | None = None) -> np.ndarray:
    """Rasterise 2-D points into a white (size, size) image with black dots."""
    extent = extent or float(np.abs(points).max()) * 1.1 or 1.0
    image = np.full((size, size), 255, dtype=np.uint8)
    px = ((points[:, 0] + extent) / (2 * extent) * (size - 1)).round().astype(int)
    py = ((extent - points[:, 1]) / (2 * extent) * (size - 1)).round().astype(int)
    keep = (px >= 0) & (px < size) & (py >= 0) & (py < size)
    image[py[keep], px[keep]] = 0
    return image


class ScoreWriter:
    """Streams score rows (index, score, normal_quantile, flag, then any `extra` float
    columns such as log_p) to CSV, NPY or Parquet.

    Rows go to a temporary file beside the target; `close()` renames it into place and
    `abort()` removes it, so a failed run leaves nothing half-written.
    """

    def __init__(self, target: str | Path, extra: tuple[str, ...] = ()):
        self.target = Path(target)
        self.extra = tuple(extra)
        self.dtype = np.dtype(SCORE_DTYPE.descr + [(name, "<f8") for name in self.extra])
        self.kind = self.target.suffix.lower()
        if self.kind not in SCORE_FORMATS:
            raise InputError(f"{self.target}: unsupported output format {self.kind or '(none)'}; "
                             f"expected one of {', '.join(SCORE_FORMATS)}")
        if not self.target.parent.is_dir():
            raise InputError(f"{self.target}: output folder {self.target.parent} does not exist")
        if self.kind == ".parquet":
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise MissingDependency("writing Parquet needs pyarrow: pip install 'gen[parquet]'") from None
        fd, tmp = tempfile.mkstemp(prefix=f".{self.target.name}.", suffix=".part", dir=self.target.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        os.chmod(self.tmp, 0o666 & ~_umask())
        self.rows = 0
        self._file = None
        self._parquet = None
        if self.kind == ".csv":
            self._file = open(self.tmp, "w", newline="")
            self._file.write(",".join(["index", "score", "normal_quantile", "flag", *self.extra]) + "\n")
        elif self.kind == ".npy":
            self._file = open(self.tmp.with_suffix(".raw"), "wb")

    def write(self, scores: np.ndarray, quantiles: np.ndarray, flags: np.ndarray, **extra: np.ndarray) -> None:
        index = np.arange(self.rows, self.rows + len(scores), dtype=np.int64)
        columns = [extra[name] for name in self.extra]
        if self.kind == ".csv":
            lines = [",".join([f"{i}", f"{s:.9g}", f"{q:.6g}", f"{int(b)}", *(f"{e:.9g}" for e in more)]) + "\n"
                     for i, s, q, b, *more in zip(index, scores, quantiles, flags, *columns)]
            self._file.writelines(lines)
        elif self.kind == ".npy":
            table = np.empty(len(scores), dtype=self.dtype)
            table["index"], table["score"], table["normal_quantile"], table["flag"] = index, scores, quantiles, flags
            for name, column in zip(self.extra, columns):
                table[name] = column
            self._file.write(table.tobytes())
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq
            batch = pa.table({"index": index, "score": scores, "normal_quantile": quantiles, "flag": flags,
                              **dict(zip(self.extra, columns))})
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.tmp, batch.schema)
            self._parquet.write_table(batch)
        self.rows += len(scores)

    def close(self) -> Path:
        if self.kind == ".csv":
            self._file.close()
        elif self.kind == ".npy":
            self._file.close()
            raw = self.tmp.with_suffix(".raw")
            with open(self.tmp, "wb") as out, open(raw, "rb") as src:
                header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                          "shape": (self.rows,)}
                np.lib.format.write_array_header_1_0(out, header)
                for block in iter(lambda: src.read(1 << 20), b""):
                    out.write(block)
            raw.unlink()
        else:
            self._parquet.close()
        os.replace(self.tmp, self.target)
        return self.target

    def abort(self) -> None:
        if self._file is not None and not self._file.closed:
            self._file.close()
        if self._parquet is not None:
            with contextlib.suppress(Exception):
                self._parquet.close()
        self.tmp.with_suffix(".raw").unlink(missing_ok=True)
        self.tmp.unlink(missing_ok=True)


SAMPLE_FORMATS = (".png", ".npy", ".csv")


def sample_image(samples: np.ndarray, data) -> np.ndarray:
    """The picture of samples (raw units) that `gen sample --out x.png` and a run folder's
    preview.png both show: a grid for image data, a scatter for 2-D points.

    `data` is the bundle's DataSpec: its kind, shape and raw_range decide how it looks.
    """
    if data.kind == "image":
        images = samples.reshape(len(samples), *data.shape)
        lo, hi = data.raw_range or (float(samples.min()), float(samples.max()))
        zoom = max(1, 64 // max(data.shape[1:]))
        return image_grid(images, (lo, hi), zoom=zoom)
    if data.size == 2:
        return scatter_image(samples.reshape(-1, 2))
    raise InputError(f"a PNG needs image or 2-D data; this bundle's rows have shape "
                     f"{data.shape}: write .npy or .csv instead")


def save_samples(samples: np.ndarray, data, target: str | Path) -> Path:
    """Write samples (raw units) as a PNG grid (images), a PNG scatter (2-D points), NPY (the
    samples' own shape, (n, *data.shape)) or CSV (one flat row per sample)."""
    target = Path(target)
    kind = target.suffix.lower()
    if kind == ".npy":
        return save_npy(samples, target)
    if kind == ".csv":
        return save_csv(samples.reshape(len(samples), -1), target,
                        header=[f"x{i}" for i in range(int(np.prod(samples.shape[1:])))])
    if kind != ".png":
        raise InputError(f"{target}: unsupported output format {kind or '(none)'}; "
                         f"expected one of {', '.join(SAMPLE_FORMATS)}")
    try:
        image = sample_image(samples, data)
    except InputError as exc:
        raise InputError(f"{target}: {exc}") from None
    return save_png(image, target)
