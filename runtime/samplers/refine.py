"""Discriminator-guided sampling for GAN bundles (`gen sample --refine drs|mh`): the bundle's
own sampler proposes, its calibrated discriminator or critic (manifest `refine`) decides.

The calibrated logit l(x) = scale * D(x) + offset estimates log p_data(x) / p_model(x)
(Platt scaling fitted at training on held-out real rows against generated ones).

- `drs`, discriminator rejection sampling (Azadi et al. 2019, Algorithm 1): proposals come in
  rounds; D*_M starts at the largest calibrated logit seen at training and is raised to any
  larger one; each proposal is kept with probability sigmoid(F(x) - gamma), where
  F(x) = l(x) - D*_M - log(1 - exp(l(x) - D*_M - eps)) and gamma is the `quantile` of F over
  the round (the paper's dynamic gamma, its 95th percentile by default). Rounds continue
  until n proposals are kept.
- `mh`, Metropolis-Hastings GAN (Turner et al. 2019): n independent chains whose proposals
  are fresh generator samples; a chain at x moves to x' with probability
  min(1, exp(l(x') - l(x))) (the ratio (1/D(x) - 1) / (1/D(x') - 1) of the paper); each chain
  starts at a generated sample and returns its state after `steps` proposals.

Both draw every proposal and every uniform from the seeded Generator, in an order that does
not depend on the batch size, so a seed gives the same samples on every run. Both return
exactly n samples.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import InputError, NotSupported

METHODS = ("drs", "mh")
DRS_EPS = 1e-6
DRS_QUANTILE = 0.95
MH_STEPS = 50
MAX_ROUNDS = 10_000


def calibrated_logit(model, x: np.ndarray) -> np.ndarray:
    r = model.manifest.refine
    value = model.run_batched(r.graph, {"x": x}, r.output).astype(np.float64).reshape(len(x))
    return r.scale * value + r.offset


def round_size(n: int) -> int:
    """Proposals per DRS round: 2n, at least 512 and at most 16,384 (a function of n only)."""
    return int(min(max(2 * n, 512), 16_384))


def drs(model, n: int, rng: np.random.Generator, propose: Callable[[int], np.ndarray],
        quantile: float = DRS_QUANTILE) -> np.ndarray:
    if not 0.0 <= quantile < 1.0:
        raise InputError(f"drs quantile must be in [0, 1), got {quantile!r}")
    d_max = float(model.manifest.refine.max_logit)
    kept, total = [], 0
    for _ in range(MAX_ROUNDS):
        x = propose(round_size(n))
        logit = calibrated_logit(model, x)
        d_max = max(d_max, float(logit.max()))
        gap = logit - d_max  # <= 0
        f = gap - np.log1p(-np.exp(gap - DRS_EPS))
        gamma = float(np.quantile(f, quantile))
        accept = rng.random(len(x)) < 1.0 / (1.0 + np.exp(-(f - gamma)))
        kept.append(x[accept])
        total += int(accept.sum())
        if total >= n:
            return np.concatenate(kept, axis=0)[:n]
    raise InputError(f"drs kept only {total} of {n} samples after {MAX_ROUNDS} rounds")  # pragma: no cover


def mh(model, n: int, rng: np.random.Generator, propose: Callable[[int], np.ndarray],
       steps: int = MH_STEPS) -> np.ndarray:
    if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps < 1:
        raise InputError(f"mh steps must be an integer >= 1, got {steps!r}")
    state = propose(n)
    logit = calibrated_logit(model, state)
    for _ in range(int(steps)):
        candidate = propose(n)
        candidate_logit = calibrated_logit(model, candidate)
        accept = np.log(rng.random(n)) < np.minimum(0.0, candidate_logit - logit)
        state[accept] = candidate[accept]
        logit[accept] = candidate_logit[accept]
    return state


def sample(model, n: int, rng: np.random.Generator, method: str, propose: Callable[[int], np.ndarray],
           steps: int | None = None, quantile: float | None = None) -> np.ndarray:
    """n samples refined by `method` (drs or mh) from the proposals `propose(m)` gives."""
    if method not in METHODS:
        raise InputError(f"refine must be one of {', '.join(METHODS)}, got {method!r}")
    if model.manifest.refine is None:
        raise NotSupported(f"this {model.manifest.family} bundle has no calibrated discriminator; "
                           "--refine serves GAN bundles exported by gen 0.3 or later")
    if method == "drs":
        if steps is not None:
            raise InputError("steps is an option of --refine mh, not drs")
        return drs(model, n, rng, propose, DRS_QUANTILE if quantile is None else quantile)
    if quantile is not None:
        raise InputError("quantile is an option of --refine drs, not mh")
    return mh(model, n, rng, propose, MH_STEPS if steps is None else steps)
