"""Writing results: atomically (temp file + rename), so a failure leaves nothing behind."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import struct
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .errors import GenError, InputError, MissingDependency, OutputError
from .readers import arrow_path
from .readers import os_reason as _reason

SCORE_FORMATS = (".csv", ".npy", ".parquet")
SCORE_DTYPE = np.dtype([("index", "<i8"), ("score", "<f8"), ("normal_quantile", "<f8"), ("flag", "?")])


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def is_running(pid: int) -> bool:
    """Whether process `pid` exists and runs (a process we may not signal exists too; a
    zombie, dead but not yet reaped, as a killed worker is where no init reaps orphans, does
    not run)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:  # Linux: "pid (name) STATE ..."
            return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except (OSError, IndexError):  # no /proc here: existing is all we know
        return True


# gen's temp names: `.NAME.PID.RANDOM.part` (tempfile's 8 random characters), and `.raw` for
# the rows of an NPY output; PID is the writer's process id.
TEMP_NAME = re.compile(r"^\..+\.(\d+)\.[a-z0-9_]{8}\.(part|raw)$")


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Remove the temp files and folders (of any output) that gen processes no longer running
    left in `folder`: what kill -9 or a dead worker left behind. Temp names carry the writer's
    process id, so a live writer's temps, this process's and a concurrent run's, are kept.
    (Process ids are this machine's: on storage shared between machines a writer elsewhere
    looks dead.) Returns what was removed."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = TEMP_NAME.match(entry.name)
        if match is None or is_running(int(match.group(1))):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
    return removed


SWEEP_EVERY_S = 60.0
_SWEPT: dict[tuple[int, str], float] = {}  # (process id, folder): when this process last swept it


def _sweep(folder: Path) -> None:
    """remove_stale_temps, at most once a minute per folder and process: a folder job writes
    thousands of outputs into one folder, and listing it for each would cost quadratic time."""
    key, now = (os.getpid(), os.path.realpath(folder)), time.monotonic()
    if now - _SWEPT.get(key, -SWEEP_EVERY_S) >= SWEEP_EVERY_S:
        _SWEPT[key] = now
        remove_stale_temps(folder)


def make_folder(folder: str | Path) -> Path:
    """Create `folder` and its parents (if missing); an OS refusal (a read-only parent, a file
    in the way) is one line naming the folder and the reason."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create the folder ({_reason(exc)})") from None
    return folder


_LIVE_TEMPS: list[Path] = []  # every temp this process made; renamed ones no longer exist


def remove_live_temps() -> None:
    """Remove this process's temp files and folders that still exist: what a signal left
    when it arrived between a temp's creation and the writer's cleanup (the console script
    calls this on SIGINT / SIGTERM). A renamed temp no longer exists, so outputs are safe."""
    for path in _LIVE_TEMPS:
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
                path.with_suffix(".raw").unlink(missing_ok=True)


def make_temp(target: Path, folder: bool = False) -> Path:
    """A new temp file (or folder) beside `target`, named after it and this process, with the
    umask's mode (mkstemp makes 0600); stale temps of killed runs in its folder are removed
    first. A folder that cannot be written is the user's to fix: one line, exit 2."""
    _sweep(target.parent)
    if len(_LIVE_TEMPS) > 1024:  # a long-lived process: forget the temps already renamed or removed
        _LIVE_TEMPS[:] = [p for p in _LIVE_TEMPS if p.exists()]
    prefix = f".{target.name}.{os.getpid()}."
    try:
        if folder:
            tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".part", dir=target.parent))
            _LIVE_TEMPS.append(tmp)
            os.chmod(tmp, 0o777 & ~_umask())
        else:
            fd, name = tempfile.mkstemp(prefix=prefix, suffix=".part", dir=target.parent)
            os.close(fd)
            tmp = Path(name)
            _LIVE_TEMPS.append(tmp)
            os.chmod(tmp, 0o666 & ~_umask())
    except OSError as exc:
        raise OutputError(f"{target}: cannot write in {target.parent} ({_reason(exc)})") from None
    return tmp


def check_output(out: str | Path, inputs: tuple = (), bundle: str | Path | None = None) -> None:
    """Refuse an output that is one of the inputs (it would be overwritten) or that lies
    inside the bundle folder (a bundle holds only what export wrote)."""
    check_outputs((out,), inputs, bundle)


def check_outputs(outputs, inputs=(), bundle: str | Path | None = None,
                  hint: str = "write the output to another file") -> None:
    """check_output for many outputs at once (a folder job's outputs, ledger and error
    report against all its inputs), before anything is written. Paths are compared resolved
    (os.path.realpath: symbolic links and `..` seen through), and existing ones by identity
    (another name of the same file), so no output can replace an input by any name."""
    real_inputs: dict[str, Path] = {}
    for source in inputs:
        if source is not None and str(source) != "-":
            real_inputs.setdefault(os.path.realpath(source), Path(source))
    identities = None  # (device, inode) of each input, read only if an output exists
    real_bundle = os.path.realpath(bundle) if bundle is not None else None
    for out in outputs:
        if str(out) == "-":
            continue
        real = os.path.realpath(out)
        source = real_inputs.get(real)
        if source is None and real_inputs and os.path.exists(out):
            if identities is None:
                identities = {}
                for path in real_inputs.values():
                    with contextlib.suppress(OSError):
                        st = os.stat(path)
                        identities.setdefault((st.st_dev, st.st_ino), path)
            with contextlib.suppress(OSError):
                st = os.stat(out)
                source = identities.get((st.st_dev, st.st_ino))
        if source is not None:
            raise InputError(f"{out}: is also the input {source}; {hint}")
        if real_bundle is not None and (real == real_bundle or real.startswith(real_bundle.rstrip(os.sep) + os.sep)):
            raise InputError(f"{out}: is inside the bundle folder {bundle}; write outputs outside it")


def on_terminal(stream) -> bool:
    """Whether `stream` (sys.stderr, sys.stdout) is a terminal, asked of the stream itself:
    a progress display belongs only there. (rich also says yes when FORCE_COLOR or
    TTY_COMPATIBLE is set, as CI systems do, and then draws its bar into the log, redrawn with
    carriage returns and cut to 80 columns.)"""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a stream without isatty, or a closed one
        return False


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only on success."""
    target = Path(target)
    if not target.parent.is_dir():
        raise InputError(f"{target}: output folder {target.parent} does not exist")
    tmp_path = make_temp(target)
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
    out = check_replaceable(out, marker, what, error, replace)
    make_folder(out.parent)
    staging = make_temp(out, folder=True)  # the umask's mode: a shipped bundle must be readable
    try:
        yield staging
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def check_replaceable(out: str | Path, marker: str, what: str, error: type[GenError] = InputError,
                      replace: bool = True) -> Path:
    """Refuse an `out` that `staged_folder` may not replace (see there); `out` as a Path."""
    out = Path(out)
    if out.is_symlink():
        raise error(f"{out}: is a symbolic link; choose another --out (gen replaces only folders it wrote)")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not (out / marker).is_file():
            raise error(f"{out}: exists and is not a gen {what}; choose another --out")
        if not replace:
            raise error(f"{out}: {what} exists ({what}s are immutable; pass --force to replace it)")
    return out


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


def image_grid(images: np.ndarray, value_range: tuple[float, float], pad: int = 1, zoom: int = 1,
               cols: int | None = None, pad_value: float = 0.0) -> np.ndarray:
    """Tile (N, C, H, W) images (C is 1 or 3) into one uint8 grid: `cols` tiles a line
    (default: nearly square), `pad` pixels of `pad_value` (0..1) between them."""
    lo, hi = value_range
    scaled = np.clip((images - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    n, c, h, w = scaled.shape
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    grid = np.full((c, rows * (h + pad) + pad, cols * (w + pad) + pad), pad_value, dtype=np.float64)
    for i in range(n):
        r, q = divmod(i, cols)
        grid[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = scaled[i]
    grid = (grid * 255).round().astype(np.uint8)
    grid = grid.repeat(zoom, axis=1).repeat(zoom, axis=2)
    return grid[0] if c == 1 else np.transpose(grid, (1, 2, 0))


def heat_colors(values: np.ndarray) -> np.ndarray:
    """Colour values in [0, 1] black -> red -> yellow -> white ("hot"): uint8 RGB on a new
    last axis. Red rises over the first third, green over the second, blue over the last."""
    ramps = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)[..., None] * 3 - np.arange(3)
    return (np.clip(ramps, 0.0, 1.0) * 255).round().astype(np.uint8)


def anomaly_maps(inputs: np.ndarray, errors: np.ndarray, value_range: tuple[float, float],
                 reconstructions: np.ndarray | None = None) -> np.ndarray:
    """One line per row of (N, C, H, W) images: the input, its reconstruction (when given) and
    the heat map of its per-feature errors (summed over channels), as one uint8 RGB picture.

    Inputs and reconstructions are raw units shown over `value_range`; the heat maps share one
    colour scale, from the smallest to the largest error shown, so lines compare.
    """
    def rgb(images: np.ndarray) -> np.ndarray:  # tiles in [0, 1], three channels
        lo, hi = value_range
        scaled = np.clip((images - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
        return scaled if scaled.shape[1] == 3 else np.repeat(scaled.mean(axis=1, keepdims=True), 3, axis=1)

    heat = errors.sum(axis=1, dtype=np.float64)
    lo, hi = float(heat.min()), float(heat.max())
    heat = np.moveaxis(heat_colors((heat - lo) / max(hi - lo, 1e-12)), -1, 1) / 255.0
    tiles = [rgb(inputs)] + ([rgb(reconstructions)] if reconstructions is not None else []) + [heat]
    n, _, h, w = inputs.shape
    lines = np.stack(tiles, axis=1).reshape(n * len(tiles), 3, h, w)
    return image_grid(lines, (0.0, 1.0), zoom=max(1, 64 // max(h, w)), cols=len(tiles), pad_value=0.5)


def scatter_image(points: np.ndarray, size: int = 256, extent: float | None = None) -> np.ndarray:
    """Rasterise 2-D points into a white (size, size) image with black dots."""
    extent = extent or float(np.abs(points).max()) * 1.1 or 1.0
    image = np.full((size, size), 255, dtype=np.uint8)
    px = ((points[:, 0] + extent) / (2 * extent) * (size - 1)).round().astype(int)
    py = ((extent - points[:, 1]) / (2 * extent) * (size - 1)).round().astype(int)
    keep = (px >= 0) & (px < size) & (py >= 0) & (py < size)
    image[py[keep], px[keep]] = 0
    return image


def _csv_text(cell: str) -> str:
    """A CSV cell holding `cell` (quoted when it holds a comma, a quote or a line break)."""
    return f'"{cell.replace(chr(34), chr(34) * 2)}"' if any(ch in cell for ch in ',"\r\n') else cell


def _text_cells(values) -> list[str]:
    """CSV cells of a kept column: text as read from a CSV, or an Arrow array's values
    (missing values as empty cells)."""
    if isinstance(values, list) and all(isinstance(v, str) for v in values):
        return [_csv_text(v) for v in values]
    items = values.to_pylist() if hasattr(values, "to_pylist") else list(values)
    return ["" if v is None else _csv_text(str(v)) for v in items]


def _arrow_column(values):
    """A kept column for a Parquet output: Arrow arrays as they are, text as strings."""
    if hasattr(values, "to_pylist"):
        return values
    import pyarrow as pa

    return pa.array(values, type=pa.string())


class StreamWriter:
    """Streams rows to a CSV, NPY or Parquet file (those of `formats`) through a temporary
    file beside the target: `close()` renames it into place and `abort()` removes it, so a
    failed run leaves nothing half-written. NPY rows go to a raw body file first; `close()`
    writes the header (which holds the row count) and the body behind it.

    Subclasses format rows (`write`) and say what the NPY array holds (`npy_layout`).
    """

    formats: tuple[str, ...] = SCORE_FORMATS

    def __init__(self, target: str | Path):
        self.target = Path(target)
        self.stdout = str(target) == "-"
        self.rows = 0
        self._parquet = None
        self._sink = None  # the Parquet temp file as pyarrow writes it (arrow_path)
        if self.stdout:  # CSV on standard output, written as it comes (nothing to rename)
            import sys

            self.kind, self.tmp, self._file = ".csv", None, sys.stdout
            return
        self.kind = self.target.suffix.lower()
        if self.kind not in self.formats:
            raise InputError(f"{self.target}: unsupported output format {self.kind or '(none)'}; "
                             f"expected one of {', '.join(self.formats)}")
        if not self.target.parent.is_dir():
            raise InputError(f"{self.target}: output folder {self.target.parent} does not exist")
        if self.kind == ".parquet":
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise MissingDependency("writing Parquet needs pyarrow: pip install 'gen[parquet]'") from None
        self.tmp = make_temp(self.target)
        self._file = None
        with self.writing():
            if self.kind == ".csv":
                self._file = open(self.tmp, "w", newline="")
            elif self.kind == ".npy":
                self._file = open(self.tmp.with_suffix(".raw"), "wb")

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """An OSError writing the output file (a full disk, a quota, a folder removed meanwhile)
        as one line naming it; standard output's own errors (a closed pipe) pass unchanged."""
        try:
            yield
        except OSError as exc:
            if self.stdout:
                raise
            self.abort()
            raise OutputError(f"{self.target}: cannot write ({_reason(exc)})") from None

    def npy_layout(self) -> tuple[np.dtype, tuple[int, ...]]:
        """The NPY array's dtype and shape once `self.rows` rows are written."""
        raise NotImplementedError

    def _parquet_write(self, columns: dict) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        batch = pa.table(columns)
        if self._parquet is None:
            self._sink = arrow_path(self.tmp, "wb")
            self._parquet = pq.ParquetWriter(self._sink, batch.schema)
        self._parquet.write_table(batch)

    def close(self) -> Path:
        if self.stdout:
            self._file.flush()
            return self.target
        with self.writing():
            self._finish()
        return self.target

    def _finish(self) -> None:
        if self.kind == ".npy":
            self._file.close()
            raw = self.tmp.with_suffix(".raw")
            dtype, shape = self.npy_layout()
            with open(self.tmp, "wb") as out, open(raw, "rb") as src:
                header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
                np.lib.format.write_array_header_1_0(out, header)
                for block in iter(lambda: src.read(1 << 20), b""):
                    out.write(block)
            raw.unlink()
        elif self._file is not None:
            self._file.close()
        if self._parquet is not None:
            self._parquet.close()
            if not isinstance(self._sink, str):
                self._sink.close()
        os.replace(self.tmp, self.target)

    def abort(self) -> None:
        if self.stdout:  # what went out is out; the exit code and the error line say it failed
            with contextlib.suppress(Exception):
                self._file.flush()
            return
        if self._file is not None and not self._file.closed:
            self._file.close()
        if self._parquet is not None:
            with contextlib.suppress(Exception):
                self._parquet.close()
        if self._sink is not None and not isinstance(self._sink, str):
            with contextlib.suppress(Exception):
                self._sink.close()
        self.tmp.with_suffix(".raw").unlink(missing_ok=True)
        self.tmp.unlink(missing_ok=True)


class ScoreWriter(StreamWriter):
    """Streams score rows (index, score, normal_quantile, flag, then any `extra` float
    columns such as log_p, then `top_k` pairs top1_feature, top1_error, ... naming the
    features with the largest errors) to CSV, NPY or Parquet, atomically (StreamWriter).

    Feature names are text: quoted where needed in CSV, strings in Parquet, and a fixed-width
    unicode field of `feature_width` characters in NPY's structured array.
    """

    def __init__(self, target: str | Path, extra: tuple[str, ...] = (), top_k: int = 0, feature_width: int = 1,
                 keep: tuple[str, ...] = ()):
        self.keep = tuple(keep)
        if self.keep and Path(str(target)).suffix.lower() == ".npy":
            raise InputError(f"{target}: --keep-columns writes .csv or .parquet outputs (an NPY output holds "
                             "numbers only)")
        clash = set(self.keep) & {*SCORE_DTYPE.names, *extra,
                                  *(f"top{i + 1}_{part}" for i in range(top_k) for part in ("feature", "error"))}
        if clash:
            raise InputError(f"--keep-columns: {sorted(clash)[0]!r} is also an output column; rename it in the input")
        super().__init__(target)
        self.extra = tuple(extra)
        self.top_k = int(top_k)
        top = [(f"top{i + 1}_{part}", f"<U{max(1, feature_width)}" if part == "feature" else "<f8")
               for i in range(self.top_k) for part in ("feature", "error")]
        self.dtype = np.dtype(SCORE_DTYPE.descr + [(name, "<f8") for name in self.extra] + top)
        if self.kind == ".csv":
            with self.writing():
                self._file.write(",".join([*map(_csv_text, self.keep), *self.dtype.names]) + "\n")

    def npy_layout(self) -> tuple[np.dtype, tuple[int, ...]]:
        return self.dtype, (self.rows,)

    def write(self, scores: np.ndarray, quantiles: np.ndarray, flags: np.ndarray,
              top_features: np.ndarray | None = None, top_errors: np.ndarray | None = None,
              kept: dict | None = None, **extra: np.ndarray) -> None:
        """Append rows; `top_features` (n, top_k) names and `top_errors` (n, top_k) values go
        with a writer made with `top_k`, `kept` ({name: text list or Arrow array}, written
        first) with one made with `keep`."""
        n = len(scores)
        kept = kept or {}
        if set(kept) != set(self.keep) or any(len(kept[name]) != n for name in self.keep):
            raise ValueError(f"kept columns {list(self.keep)} of {n} values each expected")
        index = np.arange(self.rows, self.rows + n, dtype=np.int64)
        columns = [extra[name] for name in self.extra]
        if self.top_k:
            if top_features is None or top_errors is None or np.shape(top_features) != (n, self.top_k) \
                    or np.shape(top_errors) != (n, self.top_k):
                raise ValueError(f"top_features and top_errors of shape ({n}, {self.top_k}) expected")
        if self.kind == ".csv":
            lines = []
            texts = [_text_cells(kept[name]) for name in self.keep]
            for r, (i, s, q, b) in enumerate(zip(index, scores, quantiles, flags)):
                cells = [*(t[r] for t in texts), f"{i}", f"{s:.9g}", f"{q:.6g}", f"{int(b)}",
                         *(f"{c[r]:.9g}" for c in columns)]
                for j in range(self.top_k):
                    cells += [_csv_text(str(top_features[r, j])), f"{top_errors[r, j]:.9g}"]
                lines.append(",".join(cells) + "\n")
            with self.writing():
                self._file.writelines(lines)
        elif self.kind == ".npy":
            table = np.empty(n, dtype=self.dtype)
            table["index"], table["score"], table["normal_quantile"], table["flag"] = index, scores, quantiles, flags
            for name, column in zip(self.extra, columns):
                table[name] = column
            for j in range(self.top_k):
                table[f"top{j + 1}_feature"], table[f"top{j + 1}_error"] = top_features[:, j], top_errors[:, j]
            with self.writing():
                self._file.write(table.tobytes())
        else:
            top = {}
            for j in range(self.top_k):
                top[f"top{j + 1}_feature"] = [str(f) for f in top_features[:, j]]
                top[f"top{j + 1}_error"] = np.asarray(top_errors[:, j], dtype=np.float64)
            with self.writing():
                self._parquet_write({**{name: _arrow_column(kept[name]) for name in self.keep},
                                     "index": index, "score": scores, "normal_quantile": quantiles, "flag": flags,
                                     **dict(zip(self.extra, columns)), **top})
        self.rows += n


class ArrayWriter(StreamWriter):
    """Streams float32 rows of `len(columns)` values (e.g. latent codes) to NPY, an
    (N, len(columns)) array, or CSV with `columns` as its header, atomically (StreamWriter)."""

    formats = (".npy", ".csv")

    def __init__(self, target: str | Path, columns: list[str], row_shape: tuple[int, ...] | None = None):
        super().__init__(target)
        self.columns = list(columns)
        self.row_shape = tuple(row_shape) if row_shape is not None else (len(self.columns),)
        if int(np.prod(self.row_shape)) != len(self.columns):
            raise ValueError(f"row_shape {self.row_shape} does not hold {len(self.columns)} columns")
        if self.kind == ".csv":
            with self.writing():
                self._file.write(",".join(_csv_text(c) for c in self.columns) + "\n")

    def npy_layout(self) -> tuple[np.dtype, tuple[int, ...]]:
        return np.dtype("<f4"), (self.rows, *self.row_shape)

    def write(self, rows: np.ndarray) -> None:
        """Append (n, len(columns)) rows."""
        rows = np.ascontiguousarray(rows, dtype="<f4").reshape(len(rows), len(self.columns))
        with self.writing():
            if self.kind == ".csv":
                # 9 significant digits give every float32 back exactly.
                np.savetxt(self._file, rows, delimiter=",", fmt="%.9g")
            else:
                self._file.write(rows.tobytes())
        self.rows += len(rows)


SAMPLE_FORMATS = (".png", ".npy", ".csv")
MAX_PNG_SAMPLES = 4096  # a PNG grid or scatter holds at most this many samples
SAMPLE_BLOCK_BYTES = 16 << 20  # `gen sample` draws and writes about this much at a time


def sample_block_rows(row_values: int) -> int:
    """Rows per block of a streamed draw: about SAMPLE_BLOCK_BYTES of float32, 64..65536 rows.
    Fixed by the bundle's row size, so the samples for a seed never depend on memory."""
    return int(np.clip(SAMPLE_BLOCK_BYTES // (4 * max(1, row_values)), 64, 65536))


def check_disk(target: Path, n: int, row_values: int) -> None:
    """Refuse up front an output the disk cannot hold (NPY: its exact size; CSV: a lower
    bound of two characters per value)."""
    need = n * row_values * (4 if target.suffix.lower() == ".npy" else 2)
    try:
        free = shutil.disk_usage(target.parent).free
    except OSError:
        return
    if need > free:
        raise InputError(f"{target}: {n:,} samples need at least {need / 2**30:.2f} GiB; "
                         f"{target.parent} has {free / 2**30:.2f} GiB free")


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
