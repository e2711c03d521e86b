"""Sampling procedures, one module per sampler kind the manifest can declare.

- `ancestral`: draw z from the latent prior, run one generator or decoder.
- `gibbs`: run chains of a Gibbs step graph (state + noise -> next state).
- `mixture`: draw each sample's component from the weights, run that component's generator.
- `refine` (not a sampler kind: a layer over ancestral and mixture samplers of GAN bundles):
  discriminator rejection sampling or Metropolis-Hastings with the calibrated discriminator.

Each module has `SPEC` (its manifest dataclass) and `sample(model, spec, n, rng, **options) -> np.ndarray` (raw units, shape
(n, *data.shape)). `model` is a `gen.runtime.GenModel`, or anything offering the same few
members: `manifest.latent`, `batch_size`, `runners[role].run(feeds, outputs, keep_on_device)`
with `runners[role].device`, `port_shape(role, name)` and `run_batched(role, feeds, output)`.
Training's preview.png runs these same samplers on the torch networks, so the preview shows
what `gen sample` returns for the seed.
Randomness is drawn here, from the seeded numpy Generator `rng`, never inside a graph.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from . import ancestral, gibbs, mixture, refine as refining

# The one list of sampler kinds: each module's SPEC is its manifest dataclass, whose `kind`
# default names it; a new kind is a module here (and its dataclass in gen.runtime.manifest).
MODULES = (ancestral, gibbs, mixture)
SAMPLERS = {module.SPEC.__dataclass_fields__["kind"].default: module for module in MODULES}
SPECS = {kind: module.SPEC for kind, module in SAMPLERS.items()}


def draw(model, n: int, rng: np.random.Generator, refine: str | None = None, refine_steps: int | None = None,
         drs_quantile: float | None = None, **options) -> np.ndarray:
    """Draw `n` samples with the sampler the bundle declares; with `refine` (drs or mh), its
    samples are proposals that the bundle's calibrated discriminator accepts or rejects
    (`refine_steps`: proposals per Metropolis-Hastings chain; `drs_quantile`: DRS's gamma)."""
    spec = model.manifest.sampler
    options = {k: v for k, v in options.items() if not (k == "codes" and not v)}
    if refine is None:
        if refine_steps is not None or drs_quantile is not None:
            raise InputError("refine_steps and drs_quantile go with refine (drs or mh)")
        return SAMPLERS[spec.kind].sample(model, spec, n, rng, **options)
    if spec.kind == "gibbs":
        raise InputError("refine works on GAN bundles (ancestral or mixture samplers), not Gibbs chains")

    def propose(m: int) -> np.ndarray:
        return SAMPLERS[spec.kind].sample(model, spec, m, rng, **options)

    return refining.sample(model, n, rng, refine, propose, steps=refine_steps, quantile=drs_quantile)


def refuse_options(kind: str, options: dict, accepted: tuple[str, ...] = ()) -> None:
    """One message for a sampler option the bundle's sampler does not take."""
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        takes = f"it takes: {', '.join(accepted)}" if accepted else "it takes no options"
        raise InputError(f"the {kind!r} sampler does not take {', '.join(unknown)}; {takes}")
