"""Gibbs sampling (RBMs, DBMs): chains of a `gibbs_step` graph, state + noise -> next state.

The noise (uniforms for the Bernoulli draws, or normals) is drawn here for every chain at
every step, so chains repeat exactly for a seed whatever the batch size. Under IOBinding (on
CUDA) each chain group's state stays on the device between steps; only kept samples are
copied back to the host.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InputError
from ..manifest import GibbsSampler

SPEC = GibbsSampler  # the manifest's spec of this sampler kind

OPTIONS = ("steps", "burn_in", "thin", "chains", "init")


def _draw(distribution: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if distribution == "uniform":
        return rng.random(shape, dtype=np.float32)
    return rng.standard_normal(shape, dtype=np.float32)


def schedule(n: int, steps: int, burn_in: int | None, thin: int, chains: int | None) -> tuple[int, int, int]:
    """(burn_in, samples kept per chain, chains) for n samples: each chain keeps its state at
    steps burn_in + thin, burn_in + 2 thin, ... <= steps."""
    for name, value, low in (("steps", steps, 1), ("thin", thin, 1), ("n", n, 1)):
        if not isinstance(value, int) or value < low:
            raise InputError(f"{name} must be an integer >= {low}, got {value!r}")
    burn_in = steps - thin if burn_in is None else burn_in
    if not isinstance(burn_in, int) or not 0 <= burn_in <= steps - thin:
        raise InputError(f"burn_in must be an integer in [0, steps - thin] = [0, {steps - thin}], got {burn_in!r}")
    per_chain = (steps - burn_in) // thin
    needed = math.ceil(n / per_chain)
    if chains is None:
        chains = needed
    elif not isinstance(chains, int) or chains < needed:
        raise InputError(f"chains must be an integer >= {needed} to keep {n} samples at {per_chain} per chain, "
                         f"got {chains!r}")
    return burn_in, per_chain, chains


def sample(model, spec: GibbsSampler, n: int, rng: np.random.Generator, steps: int | None = None,
           burn_in: int | None = None, thin: int | None = None, chains: int | None = None,
           init: str | np.ndarray | None = None, **options) -> np.ndarray:
    """n samples from chains of `spec.graph`, in the order (kept step, chain).

    steps: Gibbs steps per chain; burn_in: steps before the first kept sample; thin: steps
    between kept samples; chains: parallel chains (default: as few as keep n samples); init:
    `bernoulli` (fair coin flips), `normal`, or an array of initial states (chains, *state) for
    the chain's first state (the visible layer; other layers then start from coin flips).
    """
    from . import refuse_options

    refuse_options(spec.kind, options, OPTIONS)
    steps = spec.steps if steps is None else steps
    thin = spec.thin if thin is None else thin
    burn_in = spec.burn_in if burn_in is None else burn_in
    burn_in, per_chain, chains = schedule(n, steps, burn_in, thin, chains)
    runner = model.runners[spec.graph]
    shapes = {name: tuple(model.port_shape(spec.graph, name)) for name in spec.chain}
    noise_shapes = {noise.name: (noise.distribution, tuple(model.port_shape(spec.graph, noise.name)))
                    for noise in spec.noise}
    init = spec.init if init is None else init
    first = next(iter(spec.chain))
    states = {}
    for name, shape in shapes.items():
        if isinstance(init, str):
            if init == "bernoulli":
                states[name] = (rng.random((chains, *shape)) < 0.5).astype(np.float32)
            elif init == "normal":
                states[name] = rng.standard_normal((chains, *shape), dtype=np.float32)
            else:
                raise InputError(f"init must be 'bernoulli', 'normal' or an array of states, got {init!r}")
        elif name == first:
            state = np.asarray(init, dtype=np.float32)
            if state.shape != (chains, *shape):
                raise InputError(f"init array has shape {state.shape}, expected {(chains, *shape)}")
            if not np.isfinite(state).all():
                raise InputError("init array holds NaN or inf")
            states[name] = state
        else:  # the other layers of a deep machine start from fair coin flips
            states[name] = (rng.random((chains, *shape)) < 0.5).astype(np.float32)
    groups = [slice(i, min(i + model.batch_size, chains)) for i in range(0, chains, model.batch_size)]
    group_states = [{name: value[g] for name, value in states.items()} for g in groups]
    keep = spec.mean or spec.chain[first]
    bound = runner.device is not None
    kept = []
    for step in range(1, steps + 1):
        noise = {name: _draw(dist, (chains, *shape), rng) for name, (dist, shape) in noise_shapes.items()}
        keeping = step > burn_in and (step - burn_in) % thin == 0
        outputs = list(dict.fromkeys([*spec.chain.values(), *([keep] if keeping else [])]))
        row = []
        for i, g in enumerate(groups):
            feeds = {**group_states[i], **{name: value[g] for name, value in noise.items()}}
            result = runner.run(feeds, outputs=outputs, keep_on_device=bound)
            group_states[i] = {name: result[out] for name, out in spec.chain.items()}
            if keeping:
                value = result[keep]
                row.append(value if isinstance(value, np.ndarray) else value.numpy())
        if keeping:
            kept.append(np.concatenate(row, axis=0))
    return np.concatenate(kept, axis=0)[:n]
