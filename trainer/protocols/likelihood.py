"""RBM likelihood: DESIGN.md's exact protocol ("Quality protocols").

For a Bernoulli RBM with weights W (n_visible, n_hidden), visible bias b and hidden bias
c, the energy is E(v, h) = -b.v - c.h - v.W.h. When one layer is small (DESIGN.md: <= 20
hidden units) log Z is computed exactly by enumerating every state of the smaller layer
and summing the other layer out in closed form; the test log-likelihood of a row is then
-F(v) - log Z with F the free energy. (Annealed importance sampling for larger models is
validated against this value.)
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

DEFAULT_CHUNK = 4096
MAX_UNITS = 24


def _check_params(W: np.ndarray, b: np.ndarray, c: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    W = np.asarray(W, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64)
    if W.ndim != 2:
        raise ValueError(f"W must be 2-D (n_visible, n_hidden), got shape {W.shape}")
    if b.shape != (W.shape[0],):
        raise ValueError(f"b must have shape ({W.shape[0]},), got {b.shape}")
    if c.shape != (W.shape[1],):
        raise ValueError(f"c must have shape ({W.shape[1]},), got {c.shape}")
    return W, b, c


def _softplus(x: np.ndarray) -> np.ndarray:
    # log(1 + e^x) without overflow for large x.
    return np.logaddexp(0.0, x)


def free_energy(v: np.ndarray, W: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """F(v) = -v.b - sum_j softplus(c_j + (vW)_j) = -log sum_h exp(-E(v, h)), one value per
    row of v (n, n_visible); a 1-D v is taken as one row."""
    W, b, c = _check_params(W, b, c)
    v = np.atleast_2d(np.asarray(v, dtype=np.float64))
    if v.ndim != 2 or v.shape[1] != W.shape[0]:
        raise ValueError(f"v must have shape (n, {W.shape[0]}), got {v.shape}")
    return -(v @ b) - _softplus(v @ W + c).sum(axis=1)


def _states(start: int, stop: int, k: int) -> np.ndarray:
    # Rows are the binary expansions of start..stop-1, bit j = unit j.
    idx = np.arange(start, stop, dtype=np.int64)
    return ((idx[:, None] >> np.arange(k, dtype=np.int64)) & 1).astype(np.float64)


def exact_log_partition(W: np.ndarray, b: np.ndarray, c: np.ndarray,
                        chunk: int = DEFAULT_CHUNK, max_units: int = MAX_UNITS) -> float:
    """log Z = log sum_{v,h} exp(-E(v, h)), exactly, in float64.

    Enumerates the 2^k states of the smaller layer, `chunk` states at a time, and sums the
    other layer out analytically (each chunk contributes a log-sum-exp, accumulated with
    logaddexp so nothing overflows). Refuses a smaller layer of more than `max_units`.
    """
    W, b, c = _check_params(W, b, c)
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    n_visible, n_hidden = W.shape
    k = min(n_visible, n_hidden)
    if k > max_units:
        raise ValueError(
            f"exact log Z needs a layer of at most max_units={max_units} units, got "
            f"n_visible={n_visible}, n_hidden={n_hidden}")
    # The joint sum is symmetric in the two layers (E uses W and W.T alike), so the
    # smaller layer is always the one enumerated: (own bias, other bias, W oriented
    # own x other).
    if n_hidden <= n_visible:
        own_bias, other_bias, w = c, b, W.T
    else:
        own_bias, other_bias, w = b, c, W
    total = -np.inf
    for start in range(0, 1 << k, chunk):
        s = _states(start, min(start + chunk, 1 << k), k)
        # -F of each enumerated state, with the other layer summed out.
        neg_f = s @ own_bias + _softplus(s @ w + other_bias).sum(axis=1)
        total = np.logaddexp(total, logsumexp(neg_f))
    return float(total)


def log_likelihood(v: np.ndarray, W: np.ndarray, b: np.ndarray, c: np.ndarray,
                   log_z: float) -> np.ndarray:
    """log p(v) = -F(v) - log Z per row of v, with log Z from `exact_log_partition` (or an
    estimate of it)."""
    if not np.isfinite(log_z):
        raise ValueError(f"log_z must be finite, got {log_z}")
    return -free_energy(v, W, b, c) - float(log_z)
