"""The runtime model: one object per bundle, with the verbs its capabilities allow."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import samplers
from .bundle import LoadedBundle, open_bundle
from .errors import InputError, NotSupported
from .execution import GraphRunner, binding_device
from .manifest import Manifest
from .outputs import ScoreWriter
from .readers import check_array, iter_rows


class GenModel:
    """A loaded bundle. Verbs: `sample`, `reconstruct`, `encode`, `score`, `flag`, where the
    family supports them; any other raises `NotSupported` naming the verbs it has.

    Inputs and outputs are in raw data units. The graphs apply the bundle's preprocessing
    themselves; the host only checks rows, casts them to the graph's float32 and reshapes
    flat rows to the data's shape.
    """

    def __init__(self, bundle: LoadedBundle, batch_size: int = 1024, io_binding: bool | None = None):
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        self.bundle = bundle
        device = binding_device(bundle.provider, io_binding)
        self.runners = {role: GraphRunner(session, device) for role, session in bundle.sessions.items()}
        self.manifest: Manifest = bundle.manifest
        self.batch_size = batch_size
        self.shape = list(self.manifest.data.shape)

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
        runner = self.runners[role]
        n = len(next(iter(feeds.values())))
        parts = [runner.run({k: v[i:i + self.batch_size] for k, v in feeds.items()}, outputs=[output])[output]
                 for i in range(0, n, self.batch_size)]
        return np.concatenate(parts, axis=0)

    def port_shape(self, role: str, name: str) -> list[int]:
        """The per-row shape of input `name` of graph `role`, from the manifest."""
        return list(self.manifest.graphs[role].port(name).shape[1:])

    def _rows(self, x: np.ndarray, where: str) -> np.ndarray:
        return check_array(x, self.shape, where)

    # -- verbs ---------------------------------------------------------------------------
    def sample(self, n: int, seed: int = 0, **options) -> np.ndarray:
        """Draw `n` samples, shape (n, *data.shape), in raw units, with the sampler the bundle
        declares (`options` go to it: e.g. steps, burn_in, thin for Gibbs chains). Same seed,
        same samples."""
        self.require("sample")
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise InputError(f"n must be an integer >= 1, got {n!r}")
        return samplers.draw(self, int(n), np.random.default_rng(seed), **options)

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
            z = encoder.run({"x": rows[i:i + self.batch_size]}, outputs=["z"], keep_on_device=True)["z"]
            parts.append(decoder.run({"z": z}, outputs=["x"])["x"])
        return np.concatenate(parts, axis=0)

    def complete(self, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Fill in rows `x` where `mask` is 0 (1 marks an observed value; the mask is explicit,
        never inferred from the values), in raw units."""
        self.require("complete")
        rows = self._rows(x, "complete input")
        observed = check_array(np.asarray(mask), self.shape, "complete mask")
        if observed.shape != rows.shape or not np.isin(observed, (0.0, 1.0)).all():
            raise InputError(f"complete mask: expected 0/1 values of the rows' shape {rows.shape}, "
                             f"got shape {observed.shape}")
        return self.run_batched("complete", {"x": rows, "mask": observed}, "x")

    def _score_rows(self, rows: np.ndarray) -> np.ndarray:
        spec = self.manifest.scoring
        return self.run_batched(spec.graph, {"x": rows}, spec.output).astype(np.float64).reshape(-1)

    def score(self, x: np.ndarray) -> np.ndarray:
        """Raw anomaly score per row; higher means more anomalous."""
        self.require("score")
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
                   on_chunk: Callable[[int], None] | None = None) -> int:
        """Score every row of a CSV/NPY/Parquet file into `out` (CSV/NPY/Parquet), chunk by
        chunk so memory stays flat; the output appears only when all rows succeeded."""
        self.require("score")
        log_z = self.manifest.scoring.log_partition
        writer = ScoreWriter(out, extra=("log_p",) if log_z is not None else ())
        try:
            for chunk in iter_rows(path, self.shape, chunk_rows):
                scores = self._score_rows(chunk)
                extra = {"log_p": -scores - log_z.value} if log_z is not None else {}
                writer.write(scores, self.normal_quantile(scores), scores > self.threshold, **extra)
                if on_chunk is not None:
                    on_chunk(writer.rows)
        except BaseException:
            writer.abort()
            raise
        writer.close()
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
        "latent": {"dim": m.latent.dim, "prior": m.latent.prior} if m.latent else None,
        "graphs": {role: {"file": g.file, "inputs": {t.name: t.shape for t in g.inputs},
                          "outputs": {t.name: t.shape for t in g.outputs}} for role, g in m.graphs.items()},
        "parity": {"max_abs_diff": m.parity.max_abs_diff, "tolerance": m.parity.tolerance,
                   "probe_rows": m.parity.probe_rows},
        "metrics": {"epochs": m.metrics.epochs, "n_fit": m.metrics.n_fit, "train_seconds": m.metrics.train_seconds,
                    **m.metrics.evaluation},
    }
    if m.scoring:
        lp = m.scoring.log_partition
        summary["scoring"] = {"kind": m.scoring.kind, "threshold": m.scoring.threshold,
                              "contamination": m.scoring.contamination,
                              "calibration": m.scoring.calibration, "n_calibration": m.scoring.n_calibration,
                              "log_partition": None if lp is None else
                              {"value": lp.value, "std": lp.std, "method": lp.method, "detail": lp.detail}}
    return summary


def load(path: str | Path, device: str = "auto", batch_size: int = 1024, threads: int | None = None,
         io_binding: bool | None = None) -> GenModel:
    """Verify and load the bundle at `path`.

    device: `auto`, `cpu` or `cuda`. batch_size: rows per onnxruntime call. threads: cap on
    onnxruntime's intra-op threads. io_binding: None binds inputs/outputs with IOBinding on
    CUDA only; True always; False never.
    """
    if threads is not None and threads < 1:
        raise InputError(f"threads must be >= 1, got {threads}")
    return GenModel(open_bundle(path, device, threads), batch_size=batch_size, io_binding=io_binding)
