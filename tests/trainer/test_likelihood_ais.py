"""Tests of the AIS, Gaussian-Bernoulli RBM and deep Boltzmann machine parts of
`gen.trainer.protocols.likelihood`, each against an exact value: enumeration, brute force
over every joint state, or numerical integration."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import integrate
from scipy.special import logit, logsumexp

from gen.trainer.protocols.likelihood import (
    ais_betas, ais_log_partition, dbm_ais_log_partition, dbm_exact_log_partition,
    dbm_mean_field, dbm_variational_bound, exact_log_partition, grbm_exact_log_partition,
    grbm_free_energy)


def _all_states(k: int) -> np.ndarray:
    return np.array(list(itertools.product([0.0, 1.0], repeat=k))).reshape(-1, k)


def _rbm(n_visible: int, n_hidden: int, scale: float = 0.5, seed: int = 0):
    rng = np.random.default_rng(seed)
    return (rng.normal(0.0, scale, (n_visible, n_hidden)), rng.normal(0.0, scale, n_visible),
            rng.normal(0.0, scale, n_hidden))


def _marginals(n_visible: int, seed: int = 10) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.05, 0.95, n_visible)


# --- schedule ---------------------------------------------------------------------------

def test_ais_betas_is_the_paper_schedule():
    betas = ais_betas(14500)
    assert betas.shape == (14500,) and betas[0] == 0.0 and betas[-1] == 1.0
    assert np.all(np.diff(betas) > 0)
    assert betas[500] == pytest.approx(0.5) and betas[4500] == pytest.approx(0.9)
    np.testing.assert_allclose(np.diff(betas[:501]), 1e-3)
    np.testing.assert_allclose(np.diff(betas[500:4501]), 1e-4)
    np.testing.assert_allclose(np.diff(betas[4500:]), 0.1 / 9999)
    for n in (2, 3, 4, 5, 29, 1000):
        b = ais_betas(n)
        assert b.shape == (n,) and b[0] == 0.0 and b[-1] == 1.0 and np.all(np.diff(b) > 0)


# --- AIS for a Bernoulli RBM ------------------------------------------------------------

def test_ais_matches_exact_on_small_rbm():
    W, b, c = _rbm(20, 10)
    exact = exact_log_partition(W, b, c)
    estimate, stderr = ais_log_partition(W, b, c, _marginals(20), n_betas=3000, n_chains=100)
    assert abs(estimate - exact) < 0.1
    assert 0.0 < stderr < 0.1


def test_ais_float32_matches_exact():
    W, b, c = _rbm(20, 10, seed=1)
    exact = exact_log_partition(W, b, c)
    estimate, stderr = ais_log_partition(W, b, c, _marginals(20), n_betas=3000, n_chains=100,
                                         dtype=np.float32)
    assert abs(estimate - exact) < 0.1 and stderr < 0.1


def test_ais_seeds_agree_within_standard_errors_and_seed_is_reproducible():
    W, b, c = _rbm(20, 10, seed=2)
    runs = [ais_log_partition(W, b, c, _marginals(20), n_betas=2000, seed=s) for s in range(3)]
    for (e1, s1), (e2, s2) in itertools.combinations(runs, 2):
        assert e1 != e2
        assert abs(e1 - e2) < 4.0 * math.hypot(s1, s2) + 1e-3
    assert ais_log_partition(W, b, c, _marginals(20), n_betas=2000, seed=1) == runs[1]


def test_ais_of_the_base_rate_model_is_exact():
    m = _marginals(15)
    b = logit(m)
    W, c = np.zeros((15, 6)), np.zeros(6)
    log_z_base = float(np.logaddexp(0.0, b).sum() + 6 * math.log(2.0))
    estimate, stderr = ais_log_partition(W, b, c, m, n_betas=50, n_chains=20)
    assert estimate == pytest.approx(log_z_base, abs=1e-12)
    assert stderr == 0.0
    assert exact_log_partition(W, b, c) == pytest.approx(log_z_base, abs=1e-12)


def test_ais_clips_degenerate_marginals():
    # Pixels that are always 0 or 1 in the data: the base model must stay proper.
    W, b, c = _rbm(12, 6, seed=3)
    m = _marginals(12)
    m[:3], m[3:5] = 0.0, 1.0
    estimate, stderr = ais_log_partition(W, b, c, m, n_betas=3000)
    assert np.isfinite(estimate) and abs(estimate - exact_log_partition(W, b, c)) < 0.15


def test_ais_refuses_bad_arguments():
    W, b, c = _rbm(5, 3)
    m = _marginals(5)
    with pytest.raises(ValueError, match="base_marginals"):
        ais_log_partition(W, b, c, m[:4])
    with pytest.raises(ValueError, match="base_marginals"):
        ais_log_partition(W, b, c, m + 1.0)
    with pytest.raises(ValueError, match="n_betas"):
        ais_log_partition(W, b, c, m, n_betas=1)
    with pytest.raises(ValueError, match="n_chains"):
        ais_log_partition(W, b, c, m, n_chains=1)
    with pytest.raises(ValueError, match="dtype"):
        ais_log_partition(W, b, c, m, dtype=np.int32)
    with pytest.raises(ValueError, match="c must"):
        ais_log_partition(W, b, c[:2], m)


# --- Gaussian-Bernoulli RBM -------------------------------------------------------------

def _grbm(n_visible: int, n_hidden: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return (rng.normal(0.0, 0.6, (n_visible, n_hidden)), rng.normal(0.0, 1.0, n_visible),
            rng.normal(0.0, 1.0, n_hidden), rng.uniform(0.6, 1.5, n_visible))


def _grbm_neg_energy(v, h, W, b, c, sigma):
    # -E(v, h) for rows v (n, n_visible) and one hidden state h.
    return -(((v - b) / sigma) ** 2).sum(axis=-1) / 2 + c @ h + (v / sigma) @ W @ h


def test_grbm_log_partition_one_visible_matches_quad():
    W, b, c, sigma = _grbm(1, 2)
    z = 0.0
    for h in _all_states(2):
        def density(x, h=h):
            return math.exp(_grbm_neg_energy(np.array([[x]]), h, W, b, c, sigma)[0])
        value, _ = integrate.quad(density, -np.inf, np.inf, epsabs=1e-13, epsrel=1e-12)
        z += value
    assert grbm_exact_log_partition(W, b, c, sigma) == pytest.approx(math.log(z), abs=1e-9)


def test_grbm_log_partition_two_visible_matches_grid():
    W, b, c, sigma = _grbm(2, 2, seed=1)
    grid = np.linspace(-15.0, 15.0, 1201)
    xx, yy = np.meshgrid(grid, grid, indexing="ij")
    points = np.stack([xx.ravel(), yy.ravel()], axis=1)
    terms = []
    for h in _all_states(2):
        density = np.exp(_grbm_neg_energy(points, h, W, b, c, sigma)).reshape(xx.shape)
        terms.append(integrate.trapezoid(integrate.trapezoid(density, grid, axis=1), grid))
    expected = math.log(sum(terms))
    assert grbm_exact_log_partition(W, b, c, sigma) == pytest.approx(expected, abs=1e-8)
    assert grbm_exact_log_partition(W, b, c, sigma, chunk=1) == pytest.approx(expected, abs=1e-8)


def test_grbm_free_energy_is_minus_log_sum_over_hidden():
    W, b, c, sigma = _grbm(3, 4, seed=2)
    v = np.random.default_rng(5).normal(0.0, 2.0, (7, 3))
    neg = np.stack([_grbm_neg_energy(v, h, W, b, c, sigma) for h in _all_states(4)], axis=1)
    np.testing.assert_allclose(grbm_free_energy(v, W, b, c, sigma), -logsumexp(neg, axis=1),
                               atol=1e-12)
    assert grbm_free_energy(v[0], W, b, c, sigma).shape == (1,)


def test_grbm_refuses_bad_arguments():
    W, b, c, sigma = _grbm(2, 3)
    with pytest.raises(ValueError, match="sigma"):
        grbm_exact_log_partition(W, b, c, -sigma)
    with pytest.raises(ValueError, match="sigma"):
        grbm_free_energy(np.zeros((1, 2)), W, b, c, sigma[:1])
    with pytest.raises(ValueError, match="max_units=2"):
        grbm_exact_log_partition(W, b, c, sigma, max_units=2)


# --- deep Boltzmann machine -------------------------------------------------------------

def _dbm(n_visible: int, n_h1: int, n_h2: int, scale: float = 0.5, seed: int = 0):
    rng = np.random.default_rng(seed)
    return (rng.normal(0.0, scale, (n_visible, n_h1)), rng.normal(0.0, scale, (n_h1, n_h2)),
            rng.normal(0.0, scale, n_visible), rng.normal(0.0, scale, n_h1),
            rng.normal(0.0, scale, n_h2))


def _dbm_log_p_star(W1, W2, b, c1, c2) -> np.ndarray:
    # log sum_{h1,h2} exp(-E(v, h1, h2)) for every v, by brute force.
    v = _all_states(W1.shape[0])
    hs = [(h1, h2) for h1 in _all_states(W1.shape[1]) for h2 in _all_states(W2.shape[1])]
    neg = np.stack([v @ b + c1 @ h1 + c2 @ h2 + v @ W1 @ h1 + h1 @ W2 @ h2 for h1, h2 in hs],
                   axis=1)
    return logsumexp(neg, axis=1)


@pytest.mark.parametrize("shape", [(4, 3, 2), (5, 2, 3), (3, 4, 1)])
def test_dbm_exact_log_partition_matches_brute_force(shape):
    W1, W2, b, c1, c2 = _dbm(*shape, scale=1.0)
    expected = float(logsumexp(_dbm_log_p_star(W1, W2, b, c1, c2)))
    assert dbm_exact_log_partition(W1, W2, b, c1, c2) == pytest.approx(expected, abs=1e-10)
    assert dbm_exact_log_partition(W1, W2, b, c1, c2, chunk=3) == pytest.approx(expected,
                                                                                abs=1e-10)


def test_dbm_exact_refuses_too_many_units():
    W1, W2, b, c1, c2 = _dbm(20, 30, 10)
    with pytest.raises(ValueError, match="max_units=24"):
        dbm_exact_log_partition(W1, W2, b, c1, c2)
    with pytest.raises(ValueError, match="W2"):
        dbm_exact_log_partition(W1, W2.T, b, c1, c2)


def test_dbm_ais_matches_exact():
    W1, W2, b, c1, c2 = _dbm(12, 8, 4)
    exact = dbm_exact_log_partition(W1, W2, b, c1, c2)
    estimate, stderr = dbm_ais_log_partition(W1, W2, b, c1, c2, _marginals(12), n_betas=4000)
    assert abs(estimate - exact) < 0.1 and 0.0 < stderr < 0.1
    estimate32, _ = dbm_ais_log_partition(W1, W2, b, c1, c2, _marginals(12), n_betas=4000,
                                          seed=1, dtype=np.float32)
    assert abs(estimate32 - exact) < 0.1


def test_dbm_ais_of_the_base_model_is_exact():
    m = _marginals(6)
    W1, W2 = np.zeros((6, 3)), np.zeros((3, 2))
    log_z_base = float(np.logaddexp(0.0, logit(m)).sum() + 5 * math.log(2.0))
    estimate, stderr = dbm_ais_log_partition(W1, W2, logit(m), np.zeros(3), np.zeros(2), m,
                                             n_betas=30, n_chains=10)
    assert estimate == pytest.approx(log_z_base, abs=1e-12) and stderr == 0.0


def test_ais_from_a_base_with_the_hidden_marginals_matches_exact():
    # The base model may put the hidden layers at given activity levels instead of fair coins
    # (the families pass the data's): log Z is the same quantity, found as accurately.
    W, b, c = _rbm(20, 10)
    hidden = np.random.default_rng(3).uniform(0.02, 0.6, 10)
    exact = exact_log_partition(W, b, c)
    for dtype in (np.float64, np.float32):
        estimate, stderr = ais_log_partition(W, b, c, _marginals(20), n_betas=3000, n_chains=100,
                                             dtype=dtype, hidden_marginals=hidden)
        assert abs(estimate - exact) < 0.1 and 0.0 < stderr < 0.1
    W1, W2, b, c1, c2 = _dbm(12, 8, 4)
    exact = dbm_exact_log_partition(W1, W2, b, c1, c2)
    pair = (np.full(8, 0.2), np.array([0.9, 0.1, 0.5, 0.7]))
    estimate, stderr = dbm_ais_log_partition(W1, W2, b, c1, c2, _marginals(12), n_betas=4000,
                                             hidden_marginals=pair)
    assert abs(estimate - exact) < 0.1 and 0.0 < stderr < 0.1


def test_ais_of_a_base_model_with_hidden_marginals_is_exact():
    # Model = base model: every chain's weight is 1, so the estimate is log Z_A exactly, and
    # log Z_A counts the hidden layers' biases (not n_hidden log 2).
    m, m1, m2 = _marginals(6), np.array([0.1, 0.5, 0.8]), np.array([0.3, 0.95])
    log_z = float(sum(np.logaddexp(0.0, logit(q)).sum() for q in (m, m1, m2)))
    estimate, stderr = dbm_ais_log_partition(np.zeros((6, 3)), np.zeros((3, 2)), logit(m), logit(m1), logit(m2),
                                             m, n_betas=30, n_chains=10, hidden_marginals=(m1, m2))
    assert estimate == pytest.approx(log_z, abs=1e-12) and stderr == 0.0
    log_z = float(sum(np.logaddexp(0.0, logit(q)).sum() for q in (m, m1)))
    estimate, stderr = ais_log_partition(np.zeros((6, 3)), logit(m), logit(m1), m, n_betas=30, n_chains=10,
                                         hidden_marginals=m1)
    assert estimate == pytest.approx(log_z, abs=1e-12) and stderr == 0.0


def test_ais_refuses_hidden_marginals_of_the_wrong_shape_or_range():
    W, b, c = _rbm(6, 3)
    with pytest.raises(ValueError, match=r"hidden_marginals must have shape \(3,\)"):
        ais_log_partition(W, b, c, _marginals(6), hidden_marginals=np.full(4, 0.5))
    with pytest.raises(ValueError, match="hidden_marginals must be probabilities"):
        ais_log_partition(W, b, c, _marginals(6), hidden_marginals=np.full(3, 1.5))
    W1, W2, b, c1, c2 = _dbm(6, 3, 2)
    with pytest.raises(ValueError, match="a pair"):
        dbm_ais_log_partition(W1, W2, b, c1, c2, _marginals(6), hidden_marginals=np.full(3, 0.5))
    with pytest.raises(ValueError, match=r"hidden_marginals\[1\] must have shape \(2,\)"):
        dbm_ais_log_partition(W1, W2, b, c1, c2, _marginals(6), hidden_marginals=(np.full(3, 0.5), np.full(3, 0.5)))


def test_dbm_variational_bound_is_a_lower_bound_and_mean_field_improves_it():
    W1, W2, b, c1, c2 = _dbm(4, 3, 2, scale=1.0, seed=4)
    v = _all_states(4)
    log_p_star = _dbm_log_p_star(W1, W2, b, c1, c2)
    init = dbm_variational_bound(v, W1, W2, b, c1, c2,
                                 *dbm_mean_field(v, W1, W2, b, c1, c2, steps=0))
    mu1, mu2 = dbm_mean_field(v, W1, W2, b, c1, c2)
    assert mu1.shape == (16, 3) and mu2.shape == (16, 2)
    bound = dbm_variational_bound(v, W1, W2, b, c1, c2, mu1, mu2)
    assert bound.shape == (16,)
    assert np.all(bound <= log_p_star + 1e-12) and np.all(init <= log_p_star + 1e-12)
    assert np.all(bound >= init - 1e-12) and np.any(bound > init + 1e-6)
    # The fixed point: another sweep changes nothing.
    sig = lambda x: 1.0 / (1.0 + np.exp(-x))  # noqa: E731
    np.testing.assert_allclose(mu1, sig(v @ W1 + mu2 @ W2.T + c1), atol=1e-8)
    np.testing.assert_allclose(mu2, sig(mu1 @ W2 + c2), atol=1e-8)
    # Any distribution q gives a lower bound, corners (mu of 0 or 1) included.
    rng = np.random.default_rng(0)
    for q1, q2 in [(rng.uniform(size=(16, 3)), rng.uniform(size=(16, 2))),
                   (np.ones((16, 3)), np.zeros((16, 2)))]:
        assert np.all(dbm_variational_bound(v, W1, W2, b, c1, c2, q1, q2) <= log_p_star + 1e-12)
    # With the exact log Z the bound is one on log p(v), and p sums to one.
    log_z = dbm_exact_log_partition(W1, W2, b, c1, c2)
    assert np.exp(log_p_star - log_z).sum() == pytest.approx(1.0, abs=1e-12)


def test_dbm_mean_field_refuses_bad_arguments():
    W1, W2, b, c1, c2 = _dbm(4, 3, 2)
    with pytest.raises(ValueError, match="v must"):
        dbm_mean_field(np.zeros((2, 5)), W1, W2, b, c1, c2)
    with pytest.raises(ValueError, match="steps"):
        dbm_mean_field(np.zeros((2, 4)), W1, W2, b, c1, c2, steps=-1)
    with pytest.raises(ValueError, match="mu2"):
        dbm_variational_bound(np.zeros((2, 4)), W1, W2, b, c1, c2, np.zeros((2, 3)),
                              np.zeros((2, 3)))
    with pytest.raises(ValueError, match="c1"):
        dbm_mean_field(np.zeros((2, 4)), W1, W2, b, c1[:1], c2)


# -- the convergence rule: a log Z is recorded only when doubling the schedule settles it -------

def _strong_rbm():
    rng = np.random.default_rng(0)
    return rng.normal(0, 1.5, size=(30, 10)), rng.normal(0, 1, 30), rng.normal(0, 1, 10)


def test_the_convergence_rule_refuses_a_too_short_schedule_on_a_model_with_known_log_z():
    """AIS with 10, 20 and 40 betas on an RBM whose log Z is known by enumeration lands 2-3 nats
    low, and two of those land within a nat of each other by chance: the rule counts their
    standard errors, so it refuses; from 500 betas it accepts, within a nat of the truth."""
    from gen.trainer.protocols.likelihood import NotConverged, converged_ais

    W, b, c = _strong_rbm()
    exact = exact_log_partition(W, b, c)
    marginals = np.full(30, 0.5)

    def estimate(n_betas, seed):
        return ais_log_partition(W, b, c, marginals, n_betas=n_betas, n_chains=100, seed=seed)

    with pytest.raises(NotConverged, match="did not settle log Z within 1 nat") as caught:
        converged_ais(estimate, 10)
    assert [n for n, _, _ in caught.value.runs] == [10, 20, 40]
    assert np.mean([exact - v for _, v, _ in caught.value.runs]) > 1.0  # short schedules are biased low
    value, std, runs = converged_ais(estimate, 500)
    assert abs(value - exact) < 1.0 and [n for n, _, _ in runs][:2] == [500, 1000] and std > 0


def test_the_convergence_rule_doubles_until_two_schedules_agree():
    from gen.trainer.protocols.likelihood import NotConverged, convergence_detail, converged_ais

    seen = []
    values = {100: (10.0, 0.1), 200: (12.0, 0.1), 400: (12.3, 0.1)}

    def estimate(n_betas, seed):
        seen.append((n_betas, seed))
        return values[n_betas]

    value, std, runs = converged_ais(estimate, 100)
    assert (value, std) == (12.3, 0.1) and seen == [(100, 0), (200, 1), (400, 2)]
    assert convergence_detail(runs).startswith("400 betas; converged: 200 -> 400 betas moved log Z by +0.30 nats")
    values[400] = (13.5, 0.1)
    with pytest.raises(NotConverged):
        converged_ais(estimate, 100)
