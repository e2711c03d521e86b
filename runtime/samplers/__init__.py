"""Sampling procedures, one module per sampler kind the manifest can declare.

- `ancestral`: draw z from the latent prior, run one generator or decoder.
- `gibbs`: run chains of a Gibbs step graph (state + noise -> next state).
- `mixture`: draw each sample's component from the weights, run that component's generator.

Each module has `sample(model, spec, n, rng, **options) -> np.ndarray` (raw units, shape
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
from . import ancestral, gibbs, mixture

SAMPLERS = {"ancestral": ancestral, "gibbs": gibbs, "mixture": mixture}


def draw(model, n: int, rng: np.random.Generator, **options) -> np.ndarray:
    """Draw `n` samples with the sampler the bundle declares."""
    spec = model.manifest.sampler
    return SAMPLERS[spec.kind].sample(model, spec, n, rng, **options)


def refuse_options(kind: str, options: dict, accepted: tuple[str, ...] = ()) -> None:
    """One message for a sampler option the bundle's sampler does not take."""
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        takes = f"it takes: {', '.join(accepted)}" if accepted else "it takes no options"
        raise InputError(f"the {kind!r} sampler does not take {', '.join(unknown)}; {takes}")
