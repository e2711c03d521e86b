"""RBM likelihood: DESIGN.md's exact protocol ("Quality protocols").

For a Bernoulli RBM with weights W (n_visible, n_hidden), visible bias b and hidden bias
c, the energy is E(v, h) = -b.v - c.h - v.W.h. When one layer is small (DESIGN.md: <= 20
hidden units) log Z is computed exactly by enumerating every state of the smaller layer
and summing the other layer out in closed form; the test log-likelihood of a row is then
-F(v) - log Z with F the free energy. Larger models get annealed importance sampling
(`ais_log_partition`, Salakhutdinov & Murray 2008), validated against the exact value.

Also here: the Gaussian-Bernoulli RBM (`grbm_exact_log_partition`, `grbm_free_energy`) and
the two-hidden-layer deep Boltzmann machine (`dbm_exact_log_partition`, `dbm_mean_field`,
`dbm_variational_bound`, `dbm_ais_log_partition`; Salakhutdinov & Hinton 2009).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def _special():
    """scipy.special, imported on first use: 16 MB resident that every training process would
    carry (the registry imports this module with the Boltzmann families) for log Z alone."""
    import scipy.special

    return scipy.special

DEFAULT_CHUNK = 4096
MAX_UNITS = 24
PROGRESS_STEPS = 100  # AIS reports its progress every this many steps (a call per step would cost)


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
        total = np.logaddexp(total, _special().logsumexp(neg_f))
    return float(total)


def log_likelihood(v: np.ndarray, W: np.ndarray, b: np.ndarray, c: np.ndarray,
                   log_z: float) -> np.ndarray:
    """log p(v) = -F(v) - log Z per row of v, with log Z from `exact_log_partition` (or an
    estimate of it)."""
    if not np.isfinite(log_z):
        raise ValueError(f"log_z must be finite, got {log_z}")
    return -free_energy(v, W, b, c) - float(log_z)


# --- annealed importance sampling -------------------------------------------------------

BASE_CLIP = 1e-3
# Salakhutdinov & Murray (2008): 500 betas spaced uniformly in [0, 0.5], 4000 in [0.5, 0.9]
# and 10000 in [0.9, 1]; `ais_betas` scales these three counts to any n_betas.
PAPER_SEGMENTS = ((0.5, 500), (0.9, 4000), (1.0, 10000))


def ais_betas(n_betas: int) -> np.ndarray:
    """The inverse temperatures 0 = beta_0 < ... < beta_{n_betas-1} = 1 of the AIS schedule of
    Salakhutdinov & Murray (2008): the n_betas - 1 steps are split between [0, 0.5], [0.5,
    0.9] and [0.9, 1] in the paper's proportions 500 : 4000 : 10000, uniform within each
    segment (n_betas = 14500 gives steps of 1e-3, 1e-4 and ~1e-5). Fewer than 4 betas are
    spaced uniformly on [0, 1]."""
    if isinstance(n_betas, bool) or not isinstance(n_betas, (int, np.integer)) or n_betas < 2:
        raise ValueError(f"n_betas must be an integer of at least 2, got {n_betas!r}")
    n_betas = int(n_betas)
    if n_betas < 4:
        return np.linspace(0.0, 1.0, n_betas)
    steps = n_betas - 1
    total = sum(count for _, count in PAPER_SEGMENTS)
    n1 = max(1, round(steps * PAPER_SEGMENTS[0][1] / total))
    n2 = max(1, round(steps * PAPER_SEGMENTS[1][1] / total))
    counts = (n1, n2, steps - n1 - n2)
    parts, start = [np.zeros(1)], 0.0
    for (stop, _), count in zip(PAPER_SEGMENTS, counts):
        parts.append(np.linspace(start, stop, count + 1)[1:])
        start = stop
    return np.concatenate(parts)


def _check_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    return dt


def _check_chains(n_chains: int) -> int:
    if isinstance(n_chains, bool) or not isinstance(n_chains, (int, np.integer)) or n_chains < 2:
        raise ValueError(f"n_chains must be an integer of at least 2, got {n_chains!r}")
    return int(n_chains)


def _base_biases(base_marginals, n_visible: int, name: str = "base_marginals") -> np.ndarray:
    # Biases of a factorial base model: logit of the clipped marginals.
    m = np.asarray(base_marginals, dtype=np.float64)
    if m.shape != (n_visible,):
        raise ValueError(f"{name} must have shape ({n_visible},), got {m.shape}")
    if not np.all(np.isfinite(m)) or np.any(m < 0.0) or np.any(m > 1.0):
        raise ValueError(f"{name} must be probabilities in [0, 1]")
    return _special().logit(np.clip(m, BASE_CLIP, 1.0 - BASE_CLIP))


def _hidden_base(marginals, n_units: int, name: str) -> np.ndarray:
    # A hidden layer's base biases: 0 (fair coins) without marginals, else their clipped logits.
    return np.zeros(n_units) if marginals is None else _base_biases(marginals, n_units, name)


def _ais_estimate(log_z_base: float, log_w: np.ndarray) -> tuple[float, float]:
    # log Z = log Z_A + log mean(w); standard error of log mean(w) by the delta method,
    # std(w) / (sqrt(n) mean(w)), from the weights scaled by their mean (each <= n).
    n = log_w.size
    log_mean = float(_special().logsumexp(log_w) - np.log(n))
    ratio = np.exp(log_w - log_mean)
    return float(log_z_base + log_mean), float(np.std(ratio, ddof=1) / np.sqrt(n))


def _sample_sigmoid_neg(neg_z: np.ndarray, u: np.ndarray, out: np.ndarray) -> None:
    # out = [u < sigmoid(z)] from neg_z = -z (overwritten): u (1 + e^{-z}) < 1.
    np.exp(neg_z, out=neg_z)
    neg_z += 1.0
    neg_z *= u
    np.less(neg_z, 1.0, out=out, casting="unsafe")


def _ais_log_weights(W1: np.ndarray, W2: np.ndarray | None, b_delta: np.ndarray,
                     b_base: np.ndarray, c1: np.ndarray, c1_base: np.ndarray, c2: np.ndarray | None,
                     c2_base: np.ndarray | None, betas: np.ndarray, n_chains: int,
                     rng: np.random.Generator, dtype: np.dtype,
                     progress: Callable[[int], None] | None = None) -> np.ndarray:
    """AIS log weights of `n_chains` chains over (v, h2) with h1 summed out, where
        log p_k*(v, h2) = b_base.v + beta_k b_delta.v + ((1 - beta_k) c2_base + beta_k c2).h2
                          + sum_j softplus((1 - beta_k) c1_base_j + beta_k (c1 + v W1 + h2 W2^T)_j)
    (+ constants): the base model (beta = 0) is factorial with biases b_base, c1_base,
    c2_base, the target (beta = 1) the model. An RBM is the case W2 = None (no h2). Matrix
    products run in `dtype`; the log weights and everything that enters them are float64.
    `progress(k)` hears of the AIS steps done (k of len(betas) - 1), every PROGRESS_STEPS
    steps and at the end."""
    n_visible, n_hidden = W1.shape
    top = W2 is not None
    w1 = np.ascontiguousarray(W1, dtype=dtype)
    w2 = np.ascontiguousarray(W2, dtype=dtype) if top else None
    c2_delta = c2 - c2_base if top else None
    # Exact samples of the base model: v ~ Bernoulli(sigmoid(b_base)), h2 ~ sigmoid(c2_base).
    v = (rng.random((n_chains, n_visible)) < 1.0 / (1.0 + np.exp(-b_base))).astype(dtype)
    h2 = (rng.random((n_chains, W2.shape[1])) < 1.0 / (1.0 + np.exp(-c2_base))).astype(dtype) if top else None
    h1 = np.empty((n_chains, n_hidden), dtype=dtype)
    y = np.empty((n_chains, n_hidden))          # c1 + v W1 (+ h2 W2^T) - c1_base, float64
    z = np.empty_like(y)                        # c1_base + beta y: h1's logit at beta
    az = np.empty_like(y)
    e_cur = np.empty_like(y)
    e_prev = np.empty_like(y)
    u_h = np.empty((n_chains, n_hidden), dtype=dtype)
    u_v = np.empty((n_chains, n_visible), dtype=dtype)
    u_t = np.empty_like(h2) if top else None
    log_w = np.zeros(n_chains)
    last = len(betas) - 1
    c1_offset = c1 - c1_base

    def softplus_parts(beta: float, out_exp: np.ndarray) -> np.ndarray:
        # sum_j softplus(z_j) = sum_j max(z_j, 0) + sum_j log1p(e^{-|z_j|}), with
        # z = c1_base + beta y and sum_j max(z_j, 0) = (sum z + sum |z|) / 2; leaves
        # 1 + e^{-|z|} in out_exp, returns the max part per chain.
        np.multiply(y, beta, out=z)
        np.add(z, c1_base, out=z)
        np.abs(z, out=az)
        positive = 0.5 * (z.sum(axis=1) + az.sum(axis=1))
        np.negative(az, out=out_exp)
        np.exp(out_exp, out=out_exp)
        out_exp += 1.0
        return positive

    # exp may overflow to inf (and 0 * inf give nan) for units that are all but surely
    # off; the comparisons then give 0, as they should.
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(1, last + 1):
            beta, beta_prev = float(betas[k]), float(betas[k - 1])
            d_beta = beta - beta_prev
            act = v @ w1
            if top:
                act += h2 @ w2.T
            np.add(act, c1_offset, out=y)
            linear = v @ b_delta
            if top:
                linear = linear + h2 @ c2_delta
            positive_prev = softplus_parts(beta_prev, e_prev)
            positive = softplus_parts(beta, e_cur)  # z, az and e_cur are those of beta now
            np.divide(e_cur, e_prev, out=e_prev)
            np.log(e_prev, out=e_prev)
            log_w += d_beta * linear + (positive - positive_prev) + e_prev.sum(axis=1)
            if progress is not None and (k % PROGRESS_STEPS == 0 or k == last):
                progress(k)
            if k == last:
                break
            # Transition T_k. h1 ~ sigmoid(z): with g = [u (1 + e^{-|z|}) < 1], of
            # probability sigmoid(|z|), h1 = g where z >= 0 and not g elsewhere.
            rng.random(dtype=dtype, out=u_h)
            np.multiply(e_cur, u_h, out=e_cur)
            np.equal(e_cur < 1.0, z >= 0.0, out=h1, casting="unsafe")
            # v ~ sigmoid(b_base + beta (b_delta + h1 W1^T)).
            neg_z = h1 @ w1.T
            neg_z *= -beta
            neg_z -= (b_base + beta * b_delta).astype(dtype)
            rng.random(dtype=dtype, out=u_v)
            _sample_sigmoid_neg(neg_z, u_v, v)
            if top:
                # h2 ~ sigmoid(c2_base + beta (c2_delta + h1 W2)).
                neg_z = h1 @ w2
                neg_z *= -beta
                neg_z -= (c2_base + beta * c2_delta).astype(dtype)
                rng.random(dtype=dtype, out=u_t)
                _sample_sigmoid_neg(neg_z, u_t, h2)
    return log_w


def ais_log_partition(W: np.ndarray, b: np.ndarray, c: np.ndarray, base_marginals: np.ndarray,
                      n_betas: int = 14500, n_chains: int = 100, seed: int = 0,
                      dtype=np.float64, progress: Callable[[int], None] | None = None,
                      hidden_marginals: np.ndarray | None = None) -> tuple[float, float]:
    """Annealed importance sampling estimate of log Z of a Bernoulli RBM, and its standard
    error (Salakhutdinov & Murray 2008, "On the quantitative analysis of deep belief
    networks"; Neal 2001, "Annealed importance sampling").

    Base-rate model A: visible biases b_A = logit(clip(base_marginals, 1e-3, 1 - 1e-3)) (the
    training pixel marginals, smoothed), no weights, hidden biases c_A = 0 (fair coins) or,
    with `hidden_marginals` (the mean of p(h | v) over the training rows, say), their clipped
    logits, so log Z_A = sum_i softplus(b_A_i) + sum_j softplus(c_A_j). With h summed out,
    the intermediate distributions for the betas of `ais_betas(n_betas)` are
        p_k*(v) = exp((1 - beta_k) b_A.v + beta_k b.v)
                  prod_j (1 + exp((1 - beta_k) c_A_j + beta_k (c_j + (vW)_j))).
    Each of `n_chains` chains starts from an exact sample of A and accumulates
    log w += log p_k*(v) - log p_{k-1}*(v), then moves with the Gibbs transition that leaves
    p_k invariant: h ~ Bernoulli(sigmoid((1 - beta_k) c_A + beta_k (c + vW))),
    v ~ Bernoulli(sigmoid((1 - beta_k) b_A + beta_k (b + W h))). A base whose hidden layer is
    as active as the model's on the data starts the chains in the model's regime; fair coins
    (a hidden layer half on) can start them across a phase transition from it.

    Returns (log Z_A + log mean(w), std(w) / (sqrt(n_chains) mean(w))), the second being the
    delta-method standard error of the log of the mean weight (computed in log space).
    Chains are vectorised; `dtype` (float64 or float32) is that of the matrix products, the
    log weights are always accumulated in float64. Random numbers:
    numpy.random.default_rng(seed). `progress`, if given, is called with the number of AIS
    steps done (of n_betas - 1), every PROGRESS_STEPS steps and at the end.
    """
    W, b, c = _check_params(W, b, c)
    dt = _check_dtype(dtype)
    n_chains = _check_chains(n_chains)
    betas = ais_betas(n_betas)
    b_base = _base_biases(base_marginals, W.shape[0])
    c_base = _hidden_base(hidden_marginals, W.shape[1], "hidden_marginals")
    log_z_base = float(_softplus(b_base).sum() + _softplus(c_base).sum())
    log_w = _ais_log_weights(W, None, b - b_base, b_base, c, c_base, None, None, betas, n_chains,
                             np.random.default_rng(seed), dt, progress)
    return _ais_estimate(log_z_base, log_w)


# --- Gaussian-Bernoulli RBM -------------------------------------------------------------

def _check_sigma(sigma: np.ndarray, n_visible: int) -> np.ndarray:
    sigma = np.asarray(sigma, dtype=np.float64)
    if sigma.shape != (n_visible,):
        raise ValueError(f"sigma must have shape ({n_visible},), got {sigma.shape}")
    if not np.all(np.isfinite(sigma)) or np.any(sigma <= 0.0):
        raise ValueError("sigma must be finite and positive")
    return sigma


def grbm_free_energy(v: np.ndarray, W: np.ndarray, b: np.ndarray, c: np.ndarray,
                     sigma: np.ndarray) -> np.ndarray:
    """Free energy of a Gaussian-Bernoulli RBM with
    E(v, h) = sum_i (v_i - b_i)^2 / (2 sigma_i^2) - c.h - (v / sigma).W.h:
    F(v) = sum_i (v_i - b_i)^2 / (2 sigma_i^2) - sum_j softplus(c_j + ((v / sigma) W)_j)
         = -log sum_h exp(-E(v, h)), one value per row of v (a 1-D v is one row)."""
    W, b, c = _check_params(W, b, c)
    sigma = _check_sigma(sigma, W.shape[0])
    v = np.atleast_2d(np.asarray(v, dtype=np.float64))
    if v.ndim != 2 or v.shape[1] != W.shape[0]:
        raise ValueError(f"v must have shape (n, {W.shape[0]}), got {v.shape}")
    return (0.5 * ((v - b) / sigma) ** 2).sum(axis=1) - _softplus((v / sigma) @ W + c).sum(axis=1)


def grbm_exact_log_partition(W: np.ndarray, b: np.ndarray, c: np.ndarray, sigma: np.ndarray,
                             chunk: int = DEFAULT_CHUNK, max_units: int = MAX_UNITS) -> float:
    """log Z of a Gaussian-Bernoulli RBM (energy as in `grbm_free_energy`), exactly.

    The visible units integrate out in closed form (a Gaussian of mean b + sigma (W h)):
        log Z = log sum_h exp(c.h) prod_i sqrt(2 pi) sigma_i
                    exp(((b_i + sigma_i (W h)_i)^2 - b_i^2) / (2 sigma_i^2)),
    where the exponent is evaluated as b_i (W h)_i / sigma_i + (W h)_i^2 / 2. The 2^n_hidden
    hidden states are enumerated `chunk` at a time (log-sum-exp accumulated with logaddexp);
    more than `max_units` hidden units are refused.
    """
    W, b, c = _check_params(W, b, c)
    sigma = _check_sigma(sigma, W.shape[0])
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    n_hidden = W.shape[1]
    if n_hidden > max_units:
        raise ValueError(f"exact GRBM log Z needs n_hidden <= max_units={max_units}, "
                         f"got n_hidden={n_hidden}")
    const = float(np.sum(0.5 * np.log(2.0 * np.pi) + np.log(sigma)))
    total = -np.inf
    for start in range(0, 1 << n_hidden, chunk):
        h = _states(start, min(start + chunk, 1 << n_hidden), n_hidden)
        a = h @ W.T                                      # (W h)_i per state
        terms = h @ c + (a * (b / sigma) + 0.5 * a * a).sum(axis=1)
        total = np.logaddexp(total, _special().logsumexp(terms))
    return float(total + const)


# --- deep Boltzmann machine (two hidden layers) -----------------------------------------

def _check_dbm(W1, W2, b, c1, c2):
    W1 = np.asarray(W1, dtype=np.float64)
    W2 = np.asarray(W2, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    c1 = np.asarray(c1, dtype=np.float64)
    c2 = np.asarray(c2, dtype=np.float64)
    if W1.ndim != 2:
        raise ValueError(f"W1 must be 2-D (n_visible, n_hidden1), got shape {W1.shape}")
    if W2.ndim != 2 or W2.shape[0] != W1.shape[1]:
        raise ValueError(f"W2 must be 2-D ({W1.shape[1]}, n_hidden2), got shape {W2.shape}")
    if b.shape != (W1.shape[0],):
        raise ValueError(f"b must have shape ({W1.shape[0]},), got {b.shape}")
    if c1.shape != (W1.shape[1],):
        raise ValueError(f"c1 must have shape ({W1.shape[1]},), got {c1.shape}")
    if c2.shape != (W2.shape[1],):
        raise ValueError(f"c2 must have shape ({W2.shape[1]},), got {c2.shape}")
    return W1, W2, b, c1, c2


def _check_rows(v: np.ndarray, n_visible: int) -> np.ndarray:
    v = np.atleast_2d(np.asarray(v, dtype=np.float64))
    if v.ndim != 2 or v.shape[1] != n_visible:
        raise ValueError(f"v must have shape (n, {n_visible}), got {v.shape}")
    return v


def dbm_exact_log_partition(W1: np.ndarray, W2: np.ndarray, b: np.ndarray, c1: np.ndarray,
                            c2: np.ndarray, max_units: int = MAX_UNITS,
                            chunk: int = DEFAULT_CHUNK) -> float:
    """log Z of a two-hidden-layer DBM with
    E(v, h1, h2) = -b.v - c1.h1 - c2.h2 - v.W1.h1 - h1.W2.h2, exactly, for tiny models.

    h1 is summed out analytically and the 2^(n_visible + n_hidden2) states (v, h2) are
    enumerated: log Z = log sum_{v,h2} exp(b.v + c2.h2 + sum_j softplus(c1 + v W1 + W2 h2)_j).
    When h1 is the smaller side, the equivalent dual sum is used instead (v and h2 are
    independent given h1): log Z = log sum_{h1} exp(c1.h1 + sum_i softplus(b + W1 h1)_i
    + sum_k softplus(c2 + h1 W2)_k). More than `max_units` enumerated units are refused.
    """
    W1, W2, b, c1, c2 = _check_dbm(W1, W2, b, c1, c2)
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    n_visible, n_h1 = W1.shape
    n_h2 = W2.shape[1]
    k = min(n_h1, n_visible + n_h2)
    if k > max_units:
        raise ValueError(
            f"exact DBM log Z enumerates at most max_units={max_units} units, got "
            f"n_visible={n_visible}, n_hidden1={n_h1}, n_hidden2={n_h2}")
    total = -np.inf
    for start in range(0, 1 << k, chunk):
        s = _states(start, min(start + chunk, 1 << k), k)
        if k == n_h1:
            neg_f = (s @ c1 + _softplus(s @ W1.T + b).sum(axis=1)
                     + _softplus(s @ W2 + c2).sum(axis=1))
        else:
            v, h2 = s[:, :n_visible], s[:, n_visible:]
            neg_f = v @ b + h2 @ c2 + _softplus(v @ W1 + h2 @ W2.T + c1).sum(axis=1)
        total = np.logaddexp(total, _special().logsumexp(neg_f))
    return float(total)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + e^{-x}) without overflow warnings."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def dbm_mean_field(v: np.ndarray, W1: np.ndarray, W2: np.ndarray, b: np.ndarray,
                   c1: np.ndarray, c2: np.ndarray, steps: int = 30
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Mean-field posterior q(h1, h2 | v) = prod Bernoulli(mu1) Bernoulli(mu2) of a DBM
    (Salakhutdinov & Hinton 2009, "Deep Boltzmann machines").

    Bottom-up initialisation with doubled input, mu1 = sigmoid(2 v W1 + c1),
    mu2 = sigmoid(mu1 W2 + c2), then `steps` fixed-point sweeps
    mu1 = sigmoid(v W1 + mu2 W2^T + c1), mu2 = sigmoid(mu1 W2 + c2); each half-sweep maximises
    the variational bound over one layer, so the bound never decreases. Returns (mu1, mu2),
    one row per row of v (a 1-D v is one row); steps=0 gives the initialisation.
    """
    W1, W2, b, c1, c2 = _check_dbm(W1, W2, b, c1, c2)
    v = _check_rows(v, W1.shape[0])
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    bottom_up = v @ W1 + c1
    mu1 = sigmoid(2.0 * (v @ W1) + c1)
    mu2 = sigmoid(mu1 @ W2 + c2)
    for _ in range(steps):
        mu1 = sigmoid(bottom_up + mu2 @ W2.T)
        mu2 = sigmoid(mu1 @ W2 + c2)
    return mu1, mu2


def dbm_variational_bound(v: np.ndarray, W1: np.ndarray, W2: np.ndarray, b: np.ndarray,
                          c1: np.ndarray, c2: np.ndarray, mu1: np.ndarray,
                          mu2: np.ndarray) -> np.ndarray:
    """Mean-field lower bound on the unnormalised log p*(v) = log sum_{h1,h2} exp(-E), per row:
        log p*(v) >= -E(v, mu1, mu2) + H(mu1) + H(mu2)
                   = b.v + c1.mu1 + c2.mu2 + v W1 mu1 + mu1 W2 mu2 + H(mu1) + H(mu2),
    with H(mu) = -sum [mu log mu + (1 - mu) log(1 - mu)] the Bernoulli entropies (0 log 0 = 0,
    so mu of exactly 0 or 1 is fine). Hence log p(v) >= bound - log Z (Salakhutdinov &
    Hinton 2009)."""
    W1, W2, b, c1, c2 = _check_dbm(W1, W2, b, c1, c2)
    v = _check_rows(v, W1.shape[0])
    n = v.shape[0]
    mu1 = np.atleast_2d(np.asarray(mu1, dtype=np.float64))
    mu2 = np.atleast_2d(np.asarray(mu2, dtype=np.float64))
    if mu1.shape != (n, W1.shape[1]):
        raise ValueError(f"mu1 must have shape ({n}, {W1.shape[1]}), got {mu1.shape}")
    if mu2.shape != (n, W2.shape[1]):
        raise ValueError(f"mu2 must have shape ({n}, {W2.shape[1]}), got {mu2.shape}")
    for name, mu in (("mu1", mu1), ("mu2", mu2)):
        if not np.all(np.isfinite(mu)) or np.any(mu < 0.0) or np.any(mu > 1.0):
            raise ValueError(f"{name} must hold probabilities in [0, 1]")
    neg_energy = (v @ b + mu1 @ c1 + mu2 @ c2 + ((v @ W1) * mu1).sum(axis=1)
                  + ((mu1 @ W2) * mu2).sum(axis=1))
    entr = _special().entr
    entropy = (entr(mu1) + entr(1.0 - mu1)).sum(axis=1) + (entr(mu2) + entr(1.0 - mu2)).sum(axis=1)
    return neg_energy + entropy


def dbm_ais_log_partition(W1: np.ndarray, W2: np.ndarray, b: np.ndarray, c1: np.ndarray,
                          c2: np.ndarray, base_marginals: np.ndarray, n_betas: int = 14500,
                          n_chains: int = 100, seed: int = 0,
                          dtype=np.float64, progress: Callable[[int], None] | None = None,
                          hidden_marginals: tuple[np.ndarray, np.ndarray] | None = None
                          ) -> tuple[float, float]:
    """Annealed importance sampling estimate of log Z of a two-hidden-layer DBM, and its
    standard error (Salakhutdinov & Hinton 2009, "Deep Boltzmann machines"; the schedule and
    estimator of `ais_log_partition`).

    h1 is summed out analytically; the chains run over (v, h2) with
        p_k*(v, h2) = exp((1 - beta_k) (b_A.v + c2_A.h2) + beta_k (b.v + c2.h2))
                      prod_j (1 + exp((1 - beta_k) c1_A_j + beta_k (c1_j + (v W1)_j + (W2 h2)_j))).
    Base model (beta = 0), factorial: visible biases b_A = logit(clip(base_marginals, 1e-3,
    1 - 1e-3)); hidden biases c1_A = c2_A = 0 (fair coins) or, with `hidden_marginals` =
    (m1, m2) (the mean-field means mu1, mu2 averaged over the training rows, say), their
    clipped logits; log Z_A = sum softplus(b_A) + sum softplus(c1_A) + sum softplus(c2_A).
    Chains start from exact base samples (v from b_A, h2 from c2_A). Transition at beta:
    h1 ~ sigmoid((1 - beta) c1_A + beta (c1 + v W1 + h2 W2^T)), then
    v ~ sigmoid((1 - beta) b_A + beta (b + h1 W1^T)) and
    h2 ~ sigmoid((1 - beta) c2_A + beta (c2 + h1 W2)).
    The hidden marginals matter for a DBM: a trained one's h1-h2 weights carry a collective
    mode (most of W2's mass in one direction), and chains started from half-on hidden layers
    meet a phase transition on the way to beta = 1 that scatters their log weights over
    hundreds of nats; started at the data's activity they do not (measured on MNIST-5k:
    the spread of the log weights was 55 nats with fair coins, 0.7 with the marginals).
    Returns (log Z estimate, delta-method standard error of log mean(w)). `progress` as for
    `ais_log_partition`.
    """
    W1, W2, b, c1, c2 = _check_dbm(W1, W2, b, c1, c2)
    dt = _check_dtype(dtype)
    n_chains = _check_chains(n_chains)
    betas = ais_betas(n_betas)
    b_base = _base_biases(base_marginals, W1.shape[0])
    if hidden_marginals is None:
        hidden_marginals = (None, None)
    elif not isinstance(hidden_marginals, (tuple, list)) or len(hidden_marginals) != 2:
        raise ValueError("hidden_marginals must be a pair (m1, m2), one per hidden layer")
    c1_base = _hidden_base(hidden_marginals[0], W1.shape[1], "hidden_marginals[0]")
    c2_base = _hidden_base(hidden_marginals[1], W2.shape[1], "hidden_marginals[1]")
    log_z_base = float(_softplus(b_base).sum() + _softplus(c1_base).sum() + _softplus(c2_base).sum())
    log_w = _ais_log_weights(W1, W2, b - b_base, b_base, c1, c1_base, c2, c2_base, betas, n_chains,
                             np.random.default_rng(seed), dt, progress)
    return _ais_estimate(log_z_base, log_w)


# -- when an AIS estimate may be recorded -----------------------------------------------------

AIS_TOLERANCE = 1.0  # nats: doubling the schedule must move log Z by less than this
AIS_DOUBLINGS = 2  # schedules tried: n, 2n, 4n betas (7n in all) before giving up


class NotConverged(Exception):
    """AIS estimates that kept moving as the schedule doubled: `runs` is [(n_betas, log Z, std)]."""

    def __init__(self, runs: list[tuple[int, float, float]], tolerance: float):
        self.runs, self.tolerance = runs, tolerance
        moves = ", ".join(f"{n:,} betas {v:.2f} +/- {s:.2f}" for n, v, s in runs)
        super().__init__(f"AIS did not converge: doubling the schedule did not settle log Z within {tolerance:g} "
                         f"nat ({moves})")


def converged_ais(estimate: Callable[[int, int], tuple[float, float]], n_betas: int,
                  tolerance: float = AIS_TOLERANCE, doublings: int = AIS_DOUBLINGS
                  ) -> tuple[float, float, list[tuple[int, float, float]]]:
    """log Z by AIS only where the schedule is long enough: `estimate(n_betas, seed)` -> (log
    Z, std) is run with `n_betas`, then twice as many (another seed), and so on up to
    `doublings` times, until two schedules in a row agree within `tolerance` nats, counting
    two standard errors of their difference against them (|a - b| + 2 sqrt(sa^2 + sb^2) <
    tolerance: two noisy short schedules can land close by chance). AIS is biased low when the
    schedule is too short, so a value that still moves when the schedule doubles is not a
    measurement. Returns (the longer schedule's log Z, its std, every run); raises
    NotConverged with every run when no pair agrees."""
    runs = [(n_betas, *estimate(n_betas, 0))]
    for i in range(doublings):
        n = runs[-1][0] * 2
        runs.append((n, *estimate(n, i + 1)))
        (_, a, sa), (_, b, sb) = runs[-2], runs[-1]
        if abs(b - a) + 2.0 * float(np.hypot(sa, sb)) < tolerance:
            return b, sb, runs
    raise NotConverged(runs, tolerance)


def convergence_detail(runs: list[tuple[int, float, float]]) -> str:
    """The manifest's words for a converged estimate: the schedules and the last move."""
    (n0, v0, _), (n1, v1, _) = runs[-2], runs[-1]
    return (f"{n1:,} betas; converged: {n0:,} -> {n1:,} betas moved log Z by {v1 - v0:+.2f} nats "
            f"(with two standard errors < {AIS_TOLERANCE:g})" + (f" after {len(runs) - 2} longer schedule(s)" if len(runs) > 2 else ""))
