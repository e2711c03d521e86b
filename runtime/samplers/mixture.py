"""Mixture sampling (AdaGAN): each sample's component drawn from the weights, each
component's generator run on its own sub-batch."""

from __future__ import annotations

import numpy as np

from ..manifest import MixtureSampler
from .ancestral import draw_latent

SPEC = MixtureSampler  # the manifest's spec of this sampler kind


def sample(model, spec: MixtureSampler, n: int, rng: np.random.Generator, **options) -> np.ndarray:
    """n samples in draw order: components first (one draw per sample), then the codes, so a
    seed fixes both whatever the batch size."""
    from . import refuse_options

    refuse_options(spec.kind, options)
    weights = np.asarray(spec.weights, dtype=np.float64)
    component = rng.choice(len(weights), size=n, p=weights / weights.sum())
    z = draw_latent(model.manifest.latent, n, rng)
    out = None
    for k, role in enumerate(spec.graphs):
        rows = np.flatnonzero(component == k)
        if len(rows) == 0:
            continue
        part = model.run_batched(role, {spec.input: z[rows]}, spec.output)
        if out is None:
            out = np.empty((n, *part.shape[1:]), dtype=part.dtype)
        out[rows] = part
    return out
