"""The runtime model: one object per bundle, with the verbs its capabilities allow."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import samplers
from .bundle import LoadedBundle, open_bundle
from .drift import check_drift
from .errors import InputError, NotSupported
from .execution import GraphRunner, binding_device, default_batch_size
from .manifest import WIDEN, Manifest
from .outputs import (MAX_PNG_SAMPLES, SAMPLE_FORMATS, ArrayWriter, ScoreWriter, anomaly_maps, atomic_path,
                      check_disk, check_output, png_bytes, sample_block_rows, save_samples)
from .pipeline import stages
from .providers import CUDA
from .readers import Selection, as_rows, check_array, check_finite, iter_rows, iter_selected
from . import staging as staging_
from .staging import Stager

DRIFT_SAMPLE = 10_000  # scores kept for the median that a drift warning shows
# The families whose score graph returns per-feature errors (they reconstruct rows and score
# them by it), named where a bundle without them is asked to explain or draw maps. The runtime
# cannot read the trainer's registry (torch); tests check this list against it.
RECONSTRUCTION_FAMILIES = ("ae", "ae-naive", "ae-tied", "conv-ae", "linear-ae", "pca", "vae")


@dataclass
class Explanation:
    """The k features with the largest errors of each row, largest first, all (n, k):
    `features` their names (GenModel.feature_names), `indices` their positions in the flat
    row, `errors` their per-feature errors (the score's units; see GenModel.errors)."""

    features: np.ndarray
    indices: np.ndarray
    errors: np.ndarray


class TopRows:
    """The `m` highest-scoring rows seen so far, with their errors and row numbers (ties go
    to the earlier row): what an anomaly map shows, kept in memory of m rows, not the file's."""

    def __init__(self, m: int):
        self.m = m
        self.index = np.zeros(0, dtype=np.int64)
        self.scores = np.zeros(0, dtype=np.float64)
        self.rows: np.ndarray | None = None
        self.errors: np.ndarray | None = None

    def add(self, first: int, scores: np.ndarray, rows: np.ndarray, errors: np.ndarray) -> None:
        """Offer rows numbered from `first` with their scores and errors."""
        if len(scores) > self.m:  # cut the chunk down first, so only m + m rows are ever merged
            cut = np.argpartition(-scores, self.m - 1)[:self.m]
            cut.sort()
            first_index = first + cut
            scores, rows, errors = scores[cut], rows[cut], errors[cut]
        else:
            first_index = first + np.arange(len(scores), dtype=np.int64)
        index = np.concatenate([self.index, first_index])
        all_scores = np.concatenate([self.scores, scores])
        keep = np.lexsort((index, -all_scores))[:self.m]
        self.index, self.scores = index[keep], all_scores[keep]
        self.rows = np.concatenate([rows] if self.rows is None else [self.rows, rows])[keep]
        self.errors = np.concatenate([errors] if self.errors is None else [self.errors, errors])[keep]


class GenModel:
    """A loaded bundle. Verbs: `sample`, `reconstruct`, `encode`, `score`, `flag`, where the
    family supports them; any other raises `NotSupported` naming the verbs it has. Bundles
    whose score graph returns per-feature errors also `explain` scores (`errors`, `explain`,
    `score_file(..., explain=K, maps=PNG)`).

    Inputs and outputs are in raw data units. The graphs apply the bundle's preprocessing
    themselves; the host only checks rows, casts them to the graph's float32 and reshapes
    flat rows to the data's shape. uint8 rows (pixels as MNIST files store them) stay uint8
    until a batch is fed: a bundle's `widen` graph widens them where the graphs run (on the
    GPU under IOBinding, so a quarter of the bytes cross to it), else the host does, per batch.

    On CUDA, `score` stages the rows (`staging.Stager`): pinned host buffers filled by a few
    threads and checked for NaN/inf as they are filled, while the GPU scores the previous piece.
    """

    def __init__(self, bundle: LoadedBundle, batch_size: int | None = None, io_binding: bool | None = None,
                 staging: bool | None = None):
        if batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
            raise InputError(f"batch_size must be an integer >= 1 (or None: chosen from the row size and device), "
                             f"got {batch_size!r}")
        self.bundle = bundle
        device = binding_device(bundle.provider, io_binding)
        self.runners = {role: GraphRunner(session, device) for role, session in bundle.sessions.items()}
        self.manifest: Manifest = bundle.manifest
        self.shape = list(self.manifest.data.shape)
        self.batch_size = int(batch_size) if batch_size is not None else \
            default_batch_size(self.manifest.data.size, bundle.provider)
        self.widen = self.runners.get(WIDEN[0])
        self._size, self._ndim = self.manifest.data.size, 1 + len(self.shape)
        on_cuda = bundle.provider == CUDA
        self.stager = Stager(self.shape, pinned=on_cuda) if (staging if staging is not None else on_cuda) else None

    def close(self) -> None:
        """Release the staging threads and host buffers (the sessions go with the object)."""
        if self.stager is not None:
            self.stager.close()

    # -- facts ---------------------------------------------------------------------------
    @property
    def family(self) -> str:
        return self.manifest.family

    @property
    def capabilities(self) -> list[str]:
        return list(self.manifest.capabilities)

    @property
    def provider(self) -> str:
        """The execution provider the sessions really run on (read back from onnxruntime)."""
        return self.bundle.provider

    def __repr__(self) -> str:
        return f"GenModel(family={self.family!r}, capabilities={self.capabilities}, provider={self.provider!r})"

    # -- plumbing ------------------------------------------------------------------------
    def require(self, verb: str) -> None:
        """Raise `NotSupported` unless the bundle's family offers `verb`."""
        if verb not in self.manifest.capabilities:
            raise NotSupported(f"model family {self.family!r} does not support {verb!r}; "
                               f"it supports: {', '.join(self.capabilities) or 'nothing'}")

    def run_batched(self, role: str, feeds: dict[str, np.ndarray], output: str) -> np.ndarray:
        """Run graph `role` on `feeds` (arrays sharing the batch axis) in batches of
        `batch_size` rows; return output `output`, concatenated."""
        return self.run_batched_outputs(role, feeds, [output])[output]

    def run_batched_outputs(self, role: str, feeds: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        """As `run_batched`, for several outputs of one run: {name: concatenated output}."""
        runner = self.runners[role]
        n = len(next(iter(feeds.values())))
        if n <= self.batch_size:  # one call: no slicing, no concatenation (what batch-1 latency pays)
            return runner.run(self._widened(runner, feeds), outputs=outputs)
        parts = [runner.run(self._widened(runner, {k: v[i:i + self.batch_size] for k, v in feeds.items()}),
                            outputs=outputs)
                 for i in range(0, n, self.batch_size)]
        return {name: np.concatenate([p[name] for p in parts], axis=0) for name in outputs}

    def _widened(self, runner: GraphRunner, feeds: dict) -> dict:
        """`feeds` with uint8 data rows `x` widened to float32: by the `widen` graph, its output
        left on the device, where the runner binds its inputs there; else on the host."""
        x = feeds.get("x")
        if not isinstance(x, np.ndarray) or x.dtype != np.uint8:
            return feeds
        if self.widen is not None and runner.device is not None:
            _, source, target = WIDEN
            x = self.widen.run({source: x}, outputs=[target], keep_on_device=True)[target]
        else:
            x = x.astype(np.float32)
        return {**feeds, "x": x}

    def port_shape(self, role: str, name: str) -> list[int]:
        """The per-row shape of input `name` of graph `role`, from the manifest."""
        return list(self.manifest.graphs[role].port(name).shape[1:])

    def _rows(self, x: np.ndarray, where: str) -> np.ndarray:
        # The common case (float32 rows, flat or shaped, all finite) checked in a few attribute
        # reads; anything else, and any failure, takes check_array's path and its messages.
        if type(x) is np.ndarray and x.dtype == np.float32 and x.ndim in (2, self._ndim) and len(x) \
                and (x.shape[1] == self._size if x.ndim == 2 else list(x.shape[1:]) == self.shape) \
                and np.isfinite(x).all():
            return x.reshape((len(x), *self.shape))
        return check_array(x, self.shape, where, narrow=True)

    # -- verbs ---------------------------------------------------------------------------
    def sample(self, n: int, seed: int = 0, **options) -> np.ndarray:
        """Draw `n` samples, shape (n, *data.shape), in raw units, with the sampler the bundle
        declares (`options` go to it: e.g. steps, burn_in, thin for Gibbs chains). Same seed,
        same samples."""
        return np.concatenate(list(self.sample_blocks(n, seed, **options)), axis=0)

    def sample_blocks(self, n: int, seed: int = 0, **options):
        """The samples of `sample(n, seed)`, block by block (`sample_block_rows` rows each), so
        that any n streams in bounded memory. Block 0 draws from default_rng(seed), block i > 0
        from default_rng([seed, i]): n up to one block gives exactly one draw of n."""
        self.require("sample")
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise InputError(f"n must be an integer >= 1, got {n!r}")
        if not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**63:
            raise InputError(f"seed must be an integer in 0 .. 2^63-1, got {seed!r}")
        block = sample_block_rows(int(np.prod(self.shape)))
        for i, start in enumerate(range(0, int(n), block)):
            rng = np.random.default_rng(int(seed) if i == 0 else [int(seed), i])
            yield samplers.draw(self, min(block, int(n) - start), rng, **options)

    def sample_file(self, n: int, out: str | Path, seed: int = 0, **options) -> Path:
        """Draw n samples into `out`: NPY (shape (n, *data.shape)) or CSV (flat rows), streamed
        block by block so memory does not grow with n, or a PNG grid / scatter of at most
        MAX_PNG_SAMPLES. What the disk cannot hold is refused before any sample is drawn."""
        self.require("sample")
        out = Path(out)
        kind = out.suffix.lower()
        if kind not in SAMPLE_FORMATS:
            raise InputError(f"{out}: unsupported output format {kind or '(none)'}; "
                             f"expected one of {', '.join(SAMPLE_FORMATS)}")
        if not out.parent.is_dir():
            raise InputError(f"{out}: output folder {out.parent} does not exist")
        check_output(out, (), self.bundle.folder)
        if kind == ".png":
            if isinstance(n, (int, np.integer)) and n > MAX_PNG_SAMPLES:
                raise InputError(f"{out}: a PNG holds at most {MAX_PNG_SAMPLES:,} samples, got --n {n:,}; "
                                 "write .npy or .csv for more")
            return save_samples(self.sample(n, seed, **options), self.manifest.data, out)
        width = int(np.prod(self.shape))
        blocks = self.sample_blocks(n, seed, **options)  # checks n and seed
        check_disk(out, int(n), width)
        writer = ArrayWriter(out, [f"x{i}" for i in range(width)],
                             row_shape=tuple(self.shape) if kind == ".npy" else None)
        try:
            for block in blocks:
                writer.write(block.reshape(len(block), width))
            writer.close()
        except BaseException:
            writer.abort()
            raise
        return out

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Latent codes of rows `x` (the posterior mean for a VAE)."""
        self.require("encode")
        return self.run_batched("encoder", {"x": self._rows(x, "encode input")}, "z")

    def reconstruct(self, x: np.ndarray) -> np.ndarray:
        """Decode(encode(x)), in raw units."""
        self.require("reconstruct")
        rows = self._rows(x, "reconstruct input")
        encoder, decoder = self.runners["encoder"], self.runners["decoder"]
        # Per batch, the codes stay on the device between the two graphs (under IOBinding).
        parts = []
        for i in range(0, len(rows), self.batch_size):
            z = encoder.run(self._widened(encoder, {"x": rows[i:i + self.batch_size]}), outputs=["z"],
                            keep_on_device=True)["z"]
            parts.append(decoder.run({"z": z}, outputs=["x"])["x"])
        return np.concatenate(parts, axis=0)

    def complete(self, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Fill in rows `x` where `mask` is 0 (1 marks an observed value; the mask is explicit,
        never inferred from the values), in raw units. Unobserved entries are ignored, so they
        may hold anything, NaN included; observed ones must be finite."""
        self.require("complete")
        observed = check_array(np.asarray(mask), self.shape, "complete mask")
        values = np.asarray(x, dtype=np.float64) if np.asarray(x).dtype.kind in "fiub" else np.asarray(x)
        if values.shape != np.asarray(mask).shape or not np.isin(observed, (0.0, 1.0)).all():
            raise InputError(f"complete mask: expected 0/1 values of the rows' shape {values.shape}, "
                             f"got shape {np.asarray(mask).shape}")
        if values.dtype.kind == "f":  # NaN (or anything) where unobserved is ignored: zero it first
            values = np.where(observed.reshape(values.shape) > 0, values, 0.0)
        rows = self._rows(values, "complete input")
        return self.run_batched("complete", {"x": rows, "mask": observed.reshape(rows.shape)}, "completed")

    def _staged_scores(self, rows: np.ndarray, where: str, check: bool) -> np.ndarray | None:
        """Scores of `rows` through the stager (see `staging`), checking them for NaN/inf on the
        way when `check` (the first bad one is named as check_array names it); None where the
        plain path serves instead: no stager, a small call, or the stager busy with another."""
        if self.stager is None or rows.nbytes < staging_.MIN_STAGED_BYTES or not self.stager.lock.acquire(blocking=False):
            return None
        try:
            spec = self.manifest.scoring
            runner = self.runners[spec.graph]
            parts = []
            for start, staged, finite in self.stager.pieces(rows, self.batch_size, check and rows.dtype != np.uint8):
                if not finite:
                    check_finite(rows[start:start + len(staged)], where, first_row=start)
                    raise InputError(f"{where}: rows {start + 1} to {start + len(staged)} hold NaN or inf")
                parts.append(runner.run(self._staged_feeds(runner, staged), outputs=[spec.output])[spec.output])
            return np.concatenate(parts, axis=0).astype(np.float64).reshape(-1)
        finally:
            self.stager.lock.release()

    def _staged_feeds(self, runner: GraphRunner, staged: np.ndarray) -> dict:
        """The feeds of a staged piece: under IOBinding, copied by DMA into a device buffer of
        its own and bound there (uint8 pieces widened by the `widen` graph on the device); else
        the pinned rows themselves, as `_widened` feeds any rows."""
        if runner.device is None or not staging_.DEVICE_INPUT or (staged.dtype == np.uint8 and self.widen is None):
            return self._widened(runner, {"x": staged})
        value = self.stager.device_value(staged.shape, staged.dtype, runner.device)
        value.update_inplace(staged)
        if staged.dtype == np.uint8:
            _, source, target = WIDEN
            value = self.widen.run({source: value}, outputs=[target], keep_on_device=True)[target]
        return {"x": value}

    def _score_rows(self, rows: np.ndarray) -> np.ndarray:
        """Scores of checked rows (float32, or uint8); through the stager where it serves."""
        staged = self._staged_scores(rows, "score input", check=False)
        if staged is not None:
            return staged
        spec = self.manifest.scoring
        runner = self.runners[spec.graph]
        if runner.device is None and len(rows) <= self.batch_size and rows.dtype == np.float32:
            # one plain call, straight to the session: what a 1-row request's latency is made of
            return runner.session.run([spec.output], {"x": rows})[0].astype(np.float64).reshape(-1)
        return self.run_batched(spec.graph, {"x": rows}, spec.output).astype(np.float64).reshape(-1)

    def _score_and_errors(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scores (n,) float64 and per-feature errors (n, *data.shape) from one run of the score graph."""
        spec = self.manifest.scoring
        out = self.run_batched_outputs(spec.graph, {"x": rows}, [spec.output, spec.errors])
        return out[spec.output].astype(np.float64).reshape(-1), out[spec.errors]

    def require_errors(self) -> None:
        """Raise `NotSupported` unless the bundle's score graph returns per-feature errors."""
        self.require("score")
        if self.manifest.scoring.errors is None:
            if self.bundle.written_format < 3 and self.family in RECONSTRUCTION_FAMILIES:
                raise NotSupported(f"this bundle is format {self.bundle.written_format}, from before bundles held "
                                   "per-feature errors, so it cannot explain scores or draw anomaly maps; re-export "
                                   f"its run folder with gen export (family {self.family!r} has them since format 3)")
            raise NotSupported(f"model family {self.family!r} gives one score per row and no per-feature errors, so "
                               "this bundle cannot explain scores or draw anomaly maps; the families that reconstruct "
                               f"rows do ({', '.join(RECONSTRUCTION_FAMILIES)})")

    @property
    def feature_names(self) -> list[str]:
        """Names of a row's features, in flat (C-order) order: the column names training read
        (a CSV or Parquet header) when it had them; else `c{c}_y{y}_x{x}` for images (channel,
        row from the top, column from the left, all from 0: `c0_y3_x5`) and `x{j}` for other
        rows (the j-th value, from 0)."""
        names = self.manifest.data.feature_names
        if names is not None and len(names) == self.manifest.data.size:
            return list(names)
        if self.manifest.data.kind == "image" and len(self.shape) == 3:
            c, h, w = self.shape
            return [f"c{k}_y{y}_x{x}" for k in range(c) for y in range(h) for x in range(w)]
        return [f"x{j}" for j in range(self.manifest.data.size)]

    def errors(self, x: np.ndarray) -> np.ndarray:
        """Per-feature errors of rows `x`, (n, *data.shape) float32: the terms the row's score
        is made of, in the score's units (model space, not raw units). For the autoencoders and
        PCA the row's reconstruction score pools them (their mean on tables; on images by
        default their smoothed energy, the family option `pool`); for a VAE their sum plus
        kl_weight times the row's KL is the score (see the family's docstring)."""
        self.require_errors()
        return self._score_and_errors(self._rows(x, "errors input"))[1]

    def _check_k(self, k: int) -> int:
        size = self.manifest.data.size
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 1 <= k <= size:
            raise InputError(f"explain: k must be an integer from 1 to the {size} features of a row, got {k!r}")
        return int(k)

    def _top_features(self, errors: np.ndarray, k: int, names: np.ndarray) -> Explanation:
        flat = errors.reshape(len(errors), -1)
        part = np.argpartition(-flat, k - 1, axis=1)[:, :k] if k < flat.shape[1] else \
            np.broadcast_to(np.arange(flat.shape[1]), flat.shape).copy()
        values = np.take_along_axis(flat, part, axis=1)
        order = np.argsort(-values, axis=1, kind="stable")
        indices = np.take_along_axis(part, order, axis=1)
        return Explanation(features=names[indices], indices=indices,
                           errors=np.take_along_axis(values, order, axis=1).astype(np.float64))

    def explain(self, x: np.ndarray, k: int = 3) -> Explanation:
        """The `k` features with the largest errors in each row of `x` (the ones that made
        its score), largest first: names, flat positions and errors."""
        self.require_errors()
        k = self._check_k(k)
        errors = self._score_and_errors(self._rows(x, "explain input"))[1]
        return self._top_features(errors, k, np.asarray(self.feature_names))

    def score(self, x: np.ndarray) -> np.ndarray:
        """Raw anomaly score per row; higher means more anomalous."""
        self.require("score")
        if self.stager is not None:  # the stager checks NaN/inf as it copies: no pass over the rows first
            rows = as_rows(x, self.shape, "score input", narrow=True)
            if len(rows):
                staged = self._staged_scores(rows, "score input", check=True)
                if staged is not None:
                    return staged
        return self._score_rows(self._rows(x, "score input"))

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        """log p(x) = -F(x) - log Z per row, for a bundle whose score is a free energy F and
        whose manifest holds log Z (exact or estimated at training; its error bar is in
        `manifest.scoring.log_partition.std`). Where the score is a variational free energy
        (a DBM's), this is a lower bound on log p(x); `log_partition.detail` says so."""
        self.require("score")
        spec = self.manifest.scoring.log_partition
        if spec is None:
            raise NotSupported(f"model family {self.family!r}: this bundle has no log partition function, "
                               "so it gives scores but not log-likelihoods")
        return -self.score(x) - spec.value

    @property
    def threshold(self) -> float:
        self.require("score")
        return float(self.manifest.scoring.threshold)

    def flag(self, x: np.ndarray) -> np.ndarray:
        """True where the score is above the calibrated threshold."""
        return self.score(x) > self.threshold

    def normal_quantile(self, scores: np.ndarray) -> np.ndarray:
        """Share of held-out normal rows whose score is at most `scores` (0..1)."""
        self.require("score")
        spec = self.manifest.scoring
        return np.interp(scores, spec.quantile_values, spec.quantile_levels)

    def score_file(self, path: str | Path, out: str | Path, chunk_rows: int = 4096,
                   on_chunk: Callable[[int], None] | None = None, explain: int = 0,
                   maps: str | Path | None = None, maps_rows: int = 16, stats: dict | None = None,
                   columns=None, keep_columns=None, warn_drift: bool = True, pipelined: bool = True) -> int:
        """Score every row of a CSV/NPY/Parquet file into `out` (CSV/NPY/Parquet), chunk by
        chunk so memory stays flat; the output appears only when all rows succeeded.

        explain: K > 0 adds columns top1_feature, top1_error, ..., topK_feature, topK_error,
        each row's K largest per-feature errors. maps: a PNG path (image bundles) showing the
        `maps_rows` highest-scoring rows, one line each: input, reconstruction (where the
        bundle reconstructs) and error heat map; written with `out`, or neither is. Both need
        a bundle with per-feature errors, and are checked before any row is read. `stats`, a
        dict, receives the counts `rows` and `flagged`, the median of the first DRIFT_SAMPLE
        scores (`median`) and the drift test's verdict (`drift`: [] or the file's test): a
        flagged share that the calibration does not explain is also warned about, one
        GenWarning (`gen.runtime.drift`), as `gen score` prints it (`warn_drift=False`: the
        caller warns once for many files, as folder jobs do).

        columns: the feature columns of a wider table, by name (a list, or text "a,b"; default
        every column). keep_columns: columns copied to the output before the scores (ids,
        timestamps), so a pipeline can join back; every column not kept is then a feature
        unless `columns` names them. Both need named columns (CSV with a header, or Parquet).

        pipelined (default): the next chunk is read and the previous one written on background
        threads while this one is scored (`gen.runtime.pipeline`: at most three chunks in
        memory, the same bytes out); False does each step in turn in this thread.
        """
        selection = Selection.of(columns, keep_columns)
        self.require("score")
        if explain or maps is not None:
            self.require_errors()
        k = self._check_k(explain) if explain else 0
        if maps is not None:
            maps = Path(maps)
            if self.manifest.data.kind != "image":
                raise InputError(f"{maps}: anomaly maps need image data; this bundle's rows are "
                                 f"{self.manifest.data.kind} of shape {self.shape} (explain names the largest columns)")
            if maps.suffix.lower() != ".png":
                raise InputError(f"{maps}: anomaly maps are written as .png, got {maps.suffix or '(none)'}")
            if not maps.parent.is_dir():
                raise InputError(f"{maps}: output folder {maps.parent} does not exist")
            if not isinstance(maps_rows, (int, np.integer)) or maps_rows < 1:
                raise InputError(f"maps_rows must be an integer >= 1, got {maps_rows!r}")
        check_output(out, (path,), self.bundle.folder)
        if maps is not None:
            check_output(maps, (path, out), self.bundle.folder)
        names = np.asarray(self.feature_names) if k else None
        log_z = self.manifest.scoring.log_partition
        writer = ScoreWriter(out, extra=("log_p",) if log_z is not None else (), top_k=k,
                             feature_width=max(map(len, names)) if k else 1,
                             keep=selection.keep if selection is not None else ())
        chunks = (((rows, {}) for rows in iter_rows(path, self.shape, chunk_rows, narrow=True)) if selection is None
                  else iter_selected(path, self.shape, selection, chunk_rows))
        top = TopRows(int(maps_rows)) if maps is not None else None
        flagged, in_head, head, done, output = 0, 0, [], 0, None
        try:
            reader, output = stages(chunks, pipelined)
            with reader:
                for chunk, kept in reader:
                    if k or top is not None:
                        scores, errors = self._score_and_errors(chunk)
                    else:
                        scores, errors = self._score_rows(chunk), None
                    extra = {"log_p": -scores - log_z.value} if log_z is not None else {}
                    if k:
                        best = self._top_features(errors, k, names)
                        extra.update(top_features=best.features, top_errors=best.errors)
                    if top is not None:
                        top.add(done, scores, chunk, errors)
                    flags = scores > self.threshold
                    flagged += int(flags.sum())
                    if in_head < DRIFT_SAMPLE:
                        head.append(scores[:DRIFT_SAMPLE - in_head])
                        in_head += len(head[-1])
                    output.submit(writer.write, scores, self.normal_quantile(scores), flags, kept=kept, **extra)
                    done += len(chunk)
                    if on_chunk is not None:
                        on_chunk(done)
            output.finish()
            if top is None:
                writer.close()
            else:
                recon = self.reconstruct(top.rows) if "reconstruct" in self.capabilities else None
                raw = self.manifest.data.raw_range or (float(top.rows.min()), float(top.rows.max()))
                picture = png_bytes(anomaly_maps(top.rows.astype(np.float32), top.errors, tuple(raw), recon))
                with atomic_path(maps) as tmp:  # both files appear, or neither
                    tmp.write_bytes(picture)
                    writer.close()
        except BaseException:
            try:
                if output is not None:
                    output.stop()
            finally:  # a second signal in stop() must not skip the abort
                writer.abort()
            raise
        median = float(np.median(np.concatenate(head))) if head else None
        drift = check_drift(self.manifest.scoring, [(str(path), writer.rows, flagged, median)], warn=warn_drift)
        if stats is not None:
            stats.update(rows=writer.rows, flagged=flagged, median=median, drift=drift)
        return writer.rows

    def encode_file(self, path: str | Path, out: str | Path, chunk_rows: int = 4096,
                    on_chunk: Callable[[int], None] | None = None, pipelined: bool = True) -> int:
        """Encode every row of a CSV/NPY/Parquet file into `out`: NPY (an (N, latent) float32
        array) or CSV (columns z0, z1, ...), chunk by chunk so memory stays flat; the output
        appears only when all rows succeeded. Returns the number of rows. `pipelined` as for
        `score_file`."""
        self.require("encode")
        check_output(out, (path,), self.bundle.folder)
        dim = int(np.prod(self.manifest.graphs["encoder"].port("z", outputs=True).shape[1:]))
        writer = ArrayWriter(out, [f"z{i}" for i in range(dim)])
        done, output = 0, None
        try:
            reader, output = stages(iter_rows(path, self.shape, chunk_rows, narrow=True), pipelined)
            with reader:
                for chunk in reader:
                    output.submit(writer.write, self.run_batched("encoder", {"x": chunk}, "z").reshape(len(chunk), dim))
                    done += len(chunk)
                    if on_chunk is not None:
                        on_chunk(done)
            output.finish()
            writer.close()
        except BaseException:
            try:
                if output is not None:
                    output.stop()
            finally:
                writer.abort()
            raise
        return writer.rows


def describe(model: GenModel) -> dict:
    """A summary of a loaded bundle for `gen info`: what it is, what it serves, where it runs."""
    m = model.manifest
    summary = {
        "bundle": str(model.bundle.folder), "family": m.family, "variant": m.variant,
        "format_version": m.format_version, "gen_version": m.gen_version, "created": m.created,
        "seed": m.seed, "capabilities": m.capabilities, "provider": model.provider,
        "io_binding": next(iter(model.runners.values())).device,
        "data": {"source": m.data.source, "kind": m.data.kind, "shape": m.data.shape,
                 "raw_range": m.data.raw_range, "normal_class": m.data.normal_class, "n_train": m.data.n_train},
        "sampler": m.sampler.kind if m.sampler else None,
        "latent": {"dim": m.latent.dim, "prior": m.latent.prior,
                   "codes": [asdict(c) for c in m.latent.codes] if m.latent.codes else None} if m.latent else None,
        "refine": None if m.refine is None else
        {"graph": m.refine.graph, "accuracy": m.refine.accuracy, "n_real": m.refine.n_real,
         "n_fake": m.refine.n_fake},
        "graphs": {role: {"file": g.file, "inputs": {t.name: t.shape for t in g.inputs},
                          "outputs": {t.name: t.shape for t in g.outputs}} for role, g in m.graphs.items()},
        "parity": {"max_abs_diff": m.parity.max_abs_diff, "tolerance": m.parity.tolerance,
                   "probe_rows": m.parity.probe_rows},
        "quantization": None if m.quantization is None else asdict(m.quantization),
        "metrics": {"epochs": m.metrics.epochs, "n_fit": m.metrics.n_fit, "train_seconds": m.metrics.train_seconds,
                    **m.metrics.evaluation, **({"stopping": m.metrics.stopping} if m.metrics.stopping else {})},
        "config": m.config,
    }
    if m.data.ratings is not None:
        r = m.data.ratings
        summary["ratings"] = {"orientation": r.orientation, "users": len(r.users), "items": len(r.items),
                              "id_type": r.id_type, "rating_range": r.rating_range, "global_mean": r.global_mean,
                              "n_ratings": r.n_ratings}
    if m.scoring:
        lp = m.scoring.log_partition
        summary["scoring"] = {"kind": m.scoring.kind, "threshold": m.scoring.threshold,
                              "contamination": m.scoring.contamination,
                              "calibration": m.scoring.calibration, "n_calibration": m.scoring.n_calibration,
                              "log_partition": None if lp is None else
                              {"value": lp.value, "std": lp.std, "method": lp.method, "detail": lp.detail}}
    return summary


def load(path: str | Path, device: str = "auto", batch_size: int | None = None, threads: int | None = None,
         io_binding: bool | None = None, public_key: str | Path | None = None, staging: bool | None = None) -> GenModel:
    """Verify and load the bundle at `path`; with `public_key`, only if signed by that key.

    device: `auto`, `cpu` or `cuda`. batch_size: rows per onnxruntime call (None: chosen from
    the row size and the provider, `execution.default_batch_size`). threads: cap on
    onnxruntime's intra-op threads. io_binding: None binds inputs/outputs with IOBinding on
    CUDA only; True always; False never. staging: None stages `score`'s rows through pinned
    buffers on CUDA only (`gen.runtime.staging`); True always (ordinary memory on CPU); False never.
    """
    if threads is not None and threads < 1:
        raise InputError(f"threads must be >= 1, got {threads}")
    return GenModel(open_bundle(path, device, threads, public_key), batch_size=batch_size, io_binding=io_binding,
                    staging=staging)
