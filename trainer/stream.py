"""Training rows streamed from files in bounded memory: a folder (Hive partitions included) or
a glob of CSV / NPY / Parquet files, the inputs `gen score` takes, or one file with --stream.

One pass over the files (`scan`) checks them (the same readers and one-line errors as scoring),
counts their rows and computes what the run needs before training: the preprocessing
statistics of the fitting rows (mean and standard deviation per column, combined chunk by
chunk in float64; the value range) and three bounded samples: held-out test rows, held-out
calibration rows, and a sample of the fitting rows for what a family computes from rows
outside the epochs (a memory bank of codes, a code Gaussian, an RBM's base rates, AIS).

Which rows are held out is decided by a seeded hash of each row's position in the file list
(file order, then row order), never by the chunking: the same seed gives the same test and
calibration rows on every run and in every process. A fifth of the rows (hash under
TEST_SHARE) are test rows; of the others, the in-memory rule's number (`calibration_size`) with
the smallest hash are calibration rows, and the rest are the fitting rows. A sample keeps the
rows of smallest hash (a uniform sample without replacement), at most MAX_SAMPLE_ROWS and
SAMPLE_BYTES.

Each epoch (`StreamedRows.epoch`) visits the files in a seeded order, reads them chunk by
chunk on a background thread, and mixes the fitting rows in a shuffle buffer of SHUFFLE_BYTES
(tf.data's and Ray Data's local shuffle): every fitting row once per epoch, in one process.
With several processes each reads its share of the files (dealt out in the epoch's order to the
process with the fewest rows so far; where that cannot balance them, as with fewer files than
processes, each reads them all and keeps every N-th fitting row) and all take the same number
of whole batches, so rows past the smallest share wait for another epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from gen.runtime.errors import InputError
from gen.runtime.pipeline import Prefetch
from gen.runtime.readers import iter_table

CHUNK_ROWS = 4096  # rows read at a time, at most ...
CHUNK_BYTES = 4 << 20  # ... and at most this many bytes of float32 (1,337 MNIST rows)
SHUFFLE_BYTES = 16 << 20  # the shuffle buffer: 16 MiB of float32 rows (5,350 MNIST rows)
SAMPLE_BYTES = 8 << 20  # each of the three samples at most this many bytes (2,675 MNIST rows) ...
MAX_SAMPLE_ROWS = 10_000  # ... and this many rows
TEST_SHARE = 0.2  # the share of rows held out for testing, as the in-memory protocol split
BALANCE = 0.9  # files dealt to processes must give each this share of the mean, else rows are dealt
TEST, CALIBRATION, FIT = 0, 1, 2
M_MMAP_THRESHOLD, MMAP_BYTES = -3, 1 << 20  # glibc's mallopt parameter, and its value here
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, element-wise on uint64 (wrapping arithmetic)."""
    z = z + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def map_large_arrays() -> None:
    """Have glibc's malloc map every block of MMAP_BYTES or more and unmap it when freed. By
    default it raises that threshold to the largest block freed so far (up to 32 MiB), after
    which the chunks a stream reads, once freed, stay in the heap as free space that is never
    returned: 100-150 MB more resident memory on a 100,000-row MNIST stream. No-op elsewhere."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(ctypes.c_int(M_MMAP_THRESHOLD), ctypes.c_int(MMAP_BYTES))
    except (OSError, AttributeError):  # not glibc (macOS, musl): their own policies
        pass


def row_hash(positions: np.ndarray, seed: int) -> np.ndarray:
    """Uniform values in [0, 1) for row positions, a function of (seed, position) alone."""
    with np.errstate(over="ignore"):
        key = _splitmix(np.asarray([seed], dtype=np.uint64))[0]
        h = _splitmix(np.asarray(positions, dtype=np.uint64) ^ key)
    return (h >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


@dataclass
class _Sample:
    """The `k` rows of smallest hash offered so far, with their labels and positions. Once it
    has k rows, only rows under the k-th smallest hash are taken (about k ln(N / k) in all), and
    it is cut back to k whenever it holds a quarter more."""

    k: int
    parts: list = field(default_factory=list)  # (hash, position, rows, labels)
    held: int = 0
    cut: float = math.inf  # the k-th smallest hash kept at the last cut

    def add(self, h: np.ndarray, pos: np.ndarray, rows: np.ndarray, labels: np.ndarray | None) -> None:
        """Offer rows (arrays the caller no longer uses: they are kept, not copied)."""
        if self.cut < math.inf:
            below = h < self.cut
            h, pos, rows, labels = h[below], pos[below], rows[below], None if labels is None else labels[below]
        if not len(h) or not self.k:
            return
        self.parts.append((h, pos, rows, labels))
        self.held += len(h)
        if self.held > self.k + self.k // 4:
            self._prune()

    def _prune(self) -> None:
        h = np.concatenate([p[0] for p in self.parts])
        keep = np.sort(np.argsort(h, kind="stable")[:self.k])
        pos = np.concatenate([p[1] for p in self.parts])[keep]
        rows = np.concatenate([p[2] for p in self.parts])[keep]
        labels = None if self.parts[0][3] is None else np.concatenate([p[3] for p in self.parts])[keep]
        self.parts, self.held = [(h[keep], pos, rows, labels)], len(keep)
        if len(keep) == self.k:
            self.cut = float(h[keep].max())

    def result(self, width: int, n: int | None = None):
        """(rows, labels, positions, keys) of the `n` (default k) rows of smallest key, in file order."""
        if not self.parts:
            return np.zeros((0, width), np.float32), None, np.zeros(0, np.int64), np.zeros(0)
        self._prune()
        h, pos, rows, labels = self.parts[0]
        order = np.sort(np.argsort(h, kind="stable")[:self.k if n is None else n])
        order = order[np.argsort(pos[order], kind="stable")]
        return rows[order], None if labels is None else labels[order], pos[order], h[order]


@dataclass
class StreamedRows:
    """What `scan` found: the files, their layout, the fitting rows' statistics and the
    held-out samples; `epoch` streams the fitting rows."""

    files: list[Path]
    source: str
    kind: str  # "tabular" or "image"
    shape: list[int]
    names: list[str] | None
    label_index: int | None
    normal_class: int | None
    seed: int
    calibration_cut: float  # rows of zone hash in [TEST_SHARE, this] are held out for calibration
    offsets: list[int]  # position of each file's first row
    chunk_fit: list[list[int]]  # fitting rows per chunk, per file
    n_rows: int
    n_fit: int
    mean: np.ndarray
    std: np.ndarray
    lo: float
    hi: float
    fit_sample: tuple[np.ndarray, np.ndarray | None]
    calibration: tuple[np.ndarray, np.ndarray | None]
    test: tuple[np.ndarray, np.ndarray | None]

    @property
    def width(self) -> int:
        return int(np.prod(self.shape))

    def dataset(self):
        """The held rows as a Dataset (the fitting sample, then the calibration rows, then the
        test rows), with (fit, calibration, test) indices into it; its moments and value range
        are those of all fitting rows. The stream lets go of the samples (the Dataset holds them)."""
        from .data import Dataset

        parts = (self.fit_sample, self.calibration, self.test)
        self.fit_sample = self.calibration = self.test = None
        x = np.concatenate([p[0] for p in parts]).reshape(-1, *self.shape)
        y = None if self.label_index is None else np.concatenate([p[1] for p in parts if p[1] is not None])
        ends = np.cumsum([len(p[0]) for p in parts])
        idx = (np.arange(0, ends[0]), np.arange(ends[0], ends[1]), np.arange(ends[1], ends[2]))
        return Dataset(x, y, self.kind, self.source, (self.lo, self.hi), self.names, (self.mean, self.std)), idx

    def zone(self, positions: np.ndarray) -> np.ndarray:
        """TEST, CALIBRATION or FIT for each row position."""
        h = row_hash(positions, self.seed)
        return np.where(h < TEST_SHARE, TEST, np.where(h <= self.calibration_cut, CALIBRATION, FIT))

    def _chunks(self, i: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        """(positions, features, labels) of file i, chunk by chunk."""
        return _read(self.files[i], self.offsets[i], self.width, self.label_index)

    def _fit_rows(self, positions, x, labels) -> np.ndarray:
        keep = self.zone(positions) == FIT
        if self.normal_class is not None:
            keep &= labels == self.normal_class
        return x[keep]

    def shares(self, order: np.ndarray, world: int) -> tuple[list[list[int]], list[int], bool]:
        """(each process's files, each process's fitting rows, dealt by rows) of an epoch whose
        file order is `order`. The files go, in that order, each to the process with the fewest
        rows so far; where that leaves a process under BALANCE of the mean share (few files, or
        files of unequal sizes), every process reads every file and keeps every world-th
        fitting row instead."""
        counts = [sum(c) for c in self.chunk_fit]
        if world > 1:
            files: list[list[int]] = [[] for _ in range(world)]
            rows = [0] * world
            for f in order:
                r = rows.index(min(rows))
                files[r].append(int(f))
                rows[r] += counts[f]
            if min(rows) >= BALANCE * self.n_fit / world:
                return files, rows, False
            return [[int(f) for f in order]] * world, [(self.n_fit - r + world - 1) // world
                                                       for r in range(world)], True
        return [[int(f) for f in order]], [self.n_fit], False

    def steps(self, order: np.ndarray, world: int, batch_rows: int) -> int:
        """Steps of an epoch in file order `order`, the same in every process: alone, every
        fitting row once (the last batch may be short); with others, whole batches of the
        smallest share only, so that every process takes the same steps on batches of the same
        size (a short batch could make a family take another optimiser step in one process)."""
        rows = self.shares(order, world)[1]
        if world == 1:
            return math.ceil(rows[0] / batch_rows)
        return min(rows) // batch_rows

    def epoch(self, rng: np.random.Generator, batch_rows: int, rank: int = 0, world: int = 1
              ) -> Iterator[np.ndarray]:
        """The fitting rows of one epoch in batches of `batch_rows` raw float32 rows (alone, the
        last may be short), shuffled: the file order from `rng` (the same draw in every process),
        then a shuffle buffer seeded by that draw and the process's rank."""
        order = rng.permutation(len(self.files))
        buffer_seed = int(rng.integers(2 ** 63))
        steps = self.steps(order, world, batch_rows)
        if steps == 0:
            raise InputError(f"{self.source}: {self.n_fit} fitting rows are too few for {world} processes of "
                             f"{batch_rows} rows a step; use fewer processes or a smaller --batch-size")
        mixer = np.random.default_rng([buffer_seed, rank])
        shares, _, dealt = self.shares(order, world)
        files = shares[rank]
        # at least two batches, so that a full buffer always lets a whole batch out
        capacity = max(2 * batch_rows, SHUFFLE_BYTES // (4 * self.width))

        def rows() -> Iterator[np.ndarray]:
            ordinal = 0  # fitting rows seen so far this epoch
            for f in files:
                for positions, x, labels in self._chunks(f):
                    fit = self._fit_rows(positions, x, labels)
                    if dealt:
                        fit, ordinal = fit[(rank - ordinal) % world::world], ordinal + len(fit)
                    yield fit

        def batches() -> Iterator[np.ndarray]:
            """Rows through a buffer of `capacity` rows: once full, a random half leaves in whole
            batches (fancy-indexed copies) and the rest is moved to the front."""
            buf, held = np.empty((capacity + chunk_rows(self.width), self.width), np.float32), 0
            with Prefetch(rows(), depth=1, name="gen-train-reader") as reader:
                for part in reader:
                    i = 0
                    while i < len(part):
                        take = min(len(part) - i, len(buf) - held)
                        buf[held:held + take] = part[i:i + take]
                        held, i = held + take, i + take
                        if held >= capacity:
                            order = mixer.permutation(held)
                            out = (held - capacity // 2) // batch_rows * batch_rows
                            for j in range(0, out, batch_rows):
                                yield buf[order[j:j + batch_rows]]
                            buf[:held - out] = buf[order[out:]]
                            held -= out
            order = mixer.permutation(held)
            for j in range(0, held, batch_rows):
                yield buf[order[j:j + batch_rows]]

        for step, batch in enumerate(batches()):
            if step == steps:
                return
            yield batch.reshape(-1, *self.shape)


def chunk_rows(width: int) -> int:
    """Rows read at a time from files of `width` columns (CHUNK_ROWS, CHUNK_BYTES)."""
    return max(1, min(CHUNK_ROWS, CHUNK_BYTES // (4 * width)))


def _read(path: Path, offset: int, width: int, label_index: int | None
          ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """(positions, features, labels) chunks of one file."""
    start = offset
    columns = width + (label_index is not None)
    for _, chunk in iter_table(path, chunk_rows(columns), width=columns):
        positions = np.arange(start, start + len(chunk), dtype=np.int64)
        start += len(chunk)
        if label_index is None:
            yield positions, chunk, None
            continue
        labels = chunk[:, label_index]
        if not np.all(labels == np.round(labels)):
            row = int(np.flatnonzero(labels != np.round(labels))[0]) + int(positions[0]) - offset
            raise InputError(f"{path}: row {row + 1}: the label column holds a non-integer value")
        yield positions, np.delete(chunk, label_index, axis=1), labels.astype(np.int64)


def layout(files: list[Path], label_column: str | None) -> tuple[str, list[int], list[str] | None, int | None]:
    """(kind, row shape, feature names, label column index) from the first file; every other
    file must have the same columns (checked as it is read)."""
    first = files[0]
    if first.suffix.lower() == ".npy":
        from gen.runtime.readers import _open_npy

        shape = list(_open_npy(first).shape[1:])
        if label_column is not None:
            raise InputError(f"--label-column {label_column!r}: only CSV or Parquet files have named columns; "
                             f"{first} does not")
        if len(shape) == 3:
            return "image", shape, None, None
        return "tabular", [int(np.prod(shape))], None, None
    names, chunk = next(iter_table(first, 1))
    label_index = None
    if label_column is not None:
        if names is None or label_column not in names:
            raise InputError(f"{first}: label column {label_column!r} not found (columns: {names})")
        label_index = names.index(label_column)
        names = names[:label_index] + names[label_index + 1:]
    width = chunk.shape[1] - (label_index is not None)
    if width == 0:
        raise InputError(f"{first}: no feature columns")
    return "tabular", [width], names, label_index


def scan(files: list[Path], source: str, seed: int, label_column: str | None = None,
         normal_class: int | None = None, calibration_fraction: float = 0.0) -> StreamedRows:
    """One pass over `files`: check, count, the fitting rows' statistics and the held-out
    samples (see the module's docstring). Of the training rows (those not held out for testing;
    of the normal class, with one), as many as the in-memory split holds out for calibration
    (`calibration_size`: `calibration_fraction` of them, at least min(200, 25%)), at most a
    sample's size, are held out: those of smallest zone hash. 0: a family that holds none out."""
    from .protocols.one_class import calibration_size

    if normal_class is not None and label_column is None:
        raise InputError(f"--normal-class {normal_class} needs labelled data; name the label column of {source} "
                         "with --label-column")
    map_large_arrays()
    kind, shape, names, label_index = layout(files, label_column)
    width = int(np.prod(shape))
    k = max(1, min(MAX_SAMPLE_ROWS, SAMPLE_BYTES // (4 * width)))
    rows = StreamedRows(files, source, kind, shape, names, label_index, normal_class, seed, -1.0, [], [], 0, 0,
                        np.zeros(0), np.zeros(0), math.inf, -math.inf, None, None, None)  # type: ignore[arg-type]
    test, train, held = _Sample(k), _Sample(k), _Sample(k if calibration_fraction else 0)
    n, mean, m2 = 0, np.zeros(width), np.zeros(width)
    starts = []  # each chunk's first position
    seen_labels: set[int] = set()
    for path in files:
        if path.suffix.lower() == ".npy" and kind == "image":
            from gen.runtime.readers import _open_npy

            got = list(_open_npy(path).shape[1:])
            if got != shape:
                raise InputError(f"{path}: images of shape {got}; {files[0]} holds {shape} (one shape per run)")
        rows.offsets.append(rows.n_rows)
        counts = []
        for positions, x, labels in _read(path, rows.n_rows, width, label_index):
            starts.append(rows.n_rows)
            rows.n_rows += len(x)
            u = row_hash(positions, seed)
            h = row_hash(positions, seed ^ 0x5A5A5A5A)  # the samples' own order, apart from the zones'
            if labels is not None:
                seen_labels.update(np.unique(labels).tolist())
            is_test = u < TEST_SHARE
            pick = ~is_test if normal_class is None else ~is_test & (labels == normal_class)
            test.add(h[is_test], positions[is_test], x[is_test], None if labels is None else labels[is_test])
            part, where, lab = x[pick], positions[pick], None if labels is None else labels[pick]
            held.add(u[pick], where, part, lab)  # the calibration rows, once their number is known
            train.add(h[pick], where, part, lab)
            counts.append(len(part))
            if len(part):
                n, mean, m2 = _combine((n, mean, m2), part)
                rows.lo, rows.hi = min(rows.lo, float(part.min())), max(rows.hi, float(part.max()))
        rows.chunk_fit.append(counts)
    if normal_class is not None and normal_class not in seen_labels:
        raise InputError(f"--normal-class {normal_class}: no such label in {source} (labels: {sorted(seen_labels)})")
    n_cal = min(calibration_size(n, calibration_fraction), k) if calibration_fraction and n else 0
    if n - n_cal < 2:
        raise InputError(f"{source}: {rows.n_rows} rows, of which {n} are for training; too few to fit"
                         + (" and calibrate" if calibration_fraction else "") + " (a fifth of the rows is held out "
                         "for testing)")
    cal = held.result(width, n_cal)
    if n_cal:  # the calibration rows leave the fitting rows: their moments, their chunks' counts, the sample
        rows.calibration_cut = float(cal[3].max())
        n, mean, m2 = _remove((n, mean, m2), cal[0])
        chunk = np.searchsorted(np.asarray(starts), cal[2], side="right") - 1
        flat = [c for counts in rows.chunk_fit for c in counts]
        for c in chunk:
            flat[c] -= 1
        sizes = np.cumsum([0] + [len(c) for c in rows.chunk_fit])
        rows.chunk_fit = [flat[a:b] for a, b in zip(sizes[:-1], sizes[1:])]
    fit = train.result(width)
    keep = ~np.isin(fit[2], cal[2])
    rows.n_fit, rows.mean, rows.std = n, mean, np.sqrt(np.maximum(m2, 0.0) / n)
    rows.fit_sample = (fit[0][keep], None if fit[1] is None else fit[1][keep])
    rows.calibration = cal[:2]
    rows.test = test.result(width)[:2]
    return rows


def _moments_of(rows: np.ndarray) -> tuple:
    """(n, mean, M2) of `rows`, in float64."""
    b = rows.astype(np.float64)
    mean = b.mean(axis=0)
    return len(b), mean, ((b - mean) ** 2).sum(axis=0)


def _combine(moments: tuple, rows: np.ndarray) -> tuple:
    """(n, mean, M2) of the rows seen so far and `rows` (Chan, Golub and LeVeque's pairwise
    update, in float64)."""
    n, mean, m2 = moments
    nb, b_mean, b_m2 = _moments_of(rows)
    total = n + nb
    delta = b_mean - mean
    return total, mean + delta * (nb / total), m2 + b_m2 + delta ** 2 * (n * nb / total)


def _remove(moments: tuple, rows: np.ndarray) -> tuple:
    """(n, mean, M2) without `rows` (among those it was combined from): the update run backwards."""
    n, mean, m2 = moments
    nb, b_mean, b_m2 = _moments_of(rows)
    rest = n - nb
    rest_mean = (n * mean - nb * b_mean) / rest
    delta = b_mean - rest_mean
    return rest, rest_mean, m2 - b_m2 - delta ** 2 * (rest * nb / n)
