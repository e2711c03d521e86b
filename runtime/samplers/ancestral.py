"""Ancestral sampling: z from the latent prior, then one generator or decoder graph."""

from __future__ import annotations

import numpy as np

from ..errors import BundleError
from ..manifest import AncestralSampler, LatentSpec


def draw_latent(spec: LatentSpec, n: int, rng: np.random.Generator) -> np.ndarray:
    """Draw (n, dim) float32 codes from the bundle's latent prior. Training's preview.png
    draws through this same function, so it shows what `gen sample` returns for a seed."""
    eps = rng.standard_normal((n, spec.dim))
    if spec.prior == "normal":
        return eps.astype(np.float32)
    if spec.prior == "gaussian":
        mean = np.asarray(spec.mean, dtype=np.float64)
        cov = np.asarray(spec.cov, dtype=np.float64)
        if mean.shape != (spec.dim,) or cov.shape != (spec.dim, spec.dim):
            raise BundleError(f"latent gaussian has mean {mean.shape} / cov {cov.shape}, expected dim {spec.dim}")
        # Jitter keeps the Cholesky factor defined for a rank-deficient code covariance.
        jitter = 1e-6 * max(float(np.trace(cov)) / spec.dim, 1e-12)
        chol = np.linalg.cholesky(cov + jitter * np.eye(spec.dim))
        return (mean + eps @ chol.T).astype(np.float32)
    raise BundleError(f"unknown latent prior {spec.prior!r}")


def sample(model, spec: AncestralSampler, n: int, rng: np.random.Generator, **options) -> np.ndarray:
    """n samples: codes from the prior through `spec.graph`, read from `spec.output`."""
    from . import refuse_options

    refuse_options(spec.kind, options)
    z = draw_latent(model.manifest.latent, n, rng)
    return model.run_batched(spec.graph, {spec.input: z}, spec.output)
