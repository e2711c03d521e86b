"""Tests of the numpy quality protocols (DESIGN.md "Quality protocols"), each on a case
with a known answer."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.special import logsumexp

from gen.trainer.protocols.completion import (
    bias_baseline, completion_split, global_mean_baseline, mae, rmse)
from gen.trainer.protocols.likelihood import (
    exact_log_partition, free_energy, log_likelihood)
from gen.trainer.protocols.modes import (
    GRID25_CENTRES, GRID25_STD, RING8_CENTRES, RING8_STD, grid25_coverage, mode_coverage,
    ring8_coverage)
from gen.trainer.protocols.sample_quality import (
    class_coverage, classifier_features, fit_feature_classifier, frechet_distance)


# --- completion -------------------------------------------------------------------------

def test_completion_split_is_the_protocol_permutation():
    train, test = completion_split(100)
    assert len(train) == 90 and len(test) == 10
    assert not set(train.tolist()) & set(test.tolist())
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(100))
    perm = np.random.RandomState(0).permutation(100)
    np.testing.assert_array_equal(train, perm[:90])
    np.testing.assert_array_equal(test, perm[90:])
    train2, test2 = completion_split(100)
    np.testing.assert_array_equal(train, train2)
    np.testing.assert_array_equal(test, test2)
    other, _ = completion_split(100, seed=1)
    assert not np.array_equal(train, other)


def test_completion_split_rounds_down():
    train, test = completion_split(15)          # 0.9 * 15 = 13.5 -> 13
    assert (len(train), len(test)) == (13, 2)
    train, test = completion_split(100_000)
    assert (len(train), len(test)) == (90_000, 10_000)


def test_completion_split_refuses_bad_arguments():
    with pytest.raises(ValueError, match="train_share"):
        completion_split(100, train_share=1.0)
    with pytest.raises(ValueError, match="n_ratings"):
        completion_split(1)


def test_rmse_and_mae_hand_computed():
    pred = np.array([1.0, 2.0, 3.0, 4.0])
    true = np.array([2.0, 2.0, 1.0, 4.0])   # errors -1, 0, 2, 0
    assert rmse(pred, true) == pytest.approx(math.sqrt(5.0 / 4.0))
    assert mae(pred, true) == pytest.approx(3.0 / 4.0)
    assert rmse(true, true) == 0.0


def test_rmse_refuses_shape_mismatch_and_empty():
    with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)"):
        rmse(np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match="empty"):
        mae(np.zeros(0), np.zeros(0))


def test_bias_baseline_beats_global_mean_on_bias_ratings():
    rng = np.random.default_rng(0)
    n_users, n_items, n = 200, 150, 20_000
    user_bias = rng.normal(0.0, 0.6, n_users)
    item_bias = rng.normal(0.0, 0.6, n_items)
    users = rng.integers(0, n_users, n)
    items = rng.integers(0, n_items, n)
    ratings = 3.5 + user_bias[users] + item_bias[items] + rng.normal(0.0, 0.3, n)
    train, test = completion_split(n)
    args = (users[train], items[train], ratings[train], users[test], items[test])
    mean_rmse = rmse(global_mean_baseline(*args), ratings[test])
    bias_rmse = rmse(bias_baseline(*args), ratings[test])
    # The noise std (0.3) bounds any predictor; biases of std 0.6 each give ~0.93 for the mean.
    assert mean_rmse > 0.8
    assert bias_rmse < 0.4
    assert bias_rmse < 0.5 * mean_rmse


def test_bias_baseline_unknown_ids_get_zero_bias():
    users = np.array([0, 0, 1, 1])
    items = np.array([0, 1, 0, 1])
    ratings = np.array([5.0, 5.0, 1.0, 1.0])
    pred = bias_baseline(users, items, ratings, np.array([7]), np.array([9]), reg=0.0)
    np.testing.assert_allclose(pred, [3.0])
    # With reg=0 and a full 2x2 table the biases are exact: user 0 at +2, user 1 at -2.
    pred = bias_baseline(users, items, ratings, np.array([0, 1]), np.array([0, 0]), reg=0.0)
    np.testing.assert_allclose(pred, [5.0, 1.0])


# --- modes --------------------------------------------------------------------------------

def test_ring8_three_modes_captured():
    rng = np.random.default_rng(0)
    which = rng.choice([0, 3, 5], size=2500)
    samples = RING8_CENTRES[which] + rng.normal(0.0, RING8_STD, (2500, 2))
    result = ring8_coverage(samples)
    assert result["modes"] == 3
    assert result["n_modes"] == 8 and result["n_samples"] == 2500
    assert [i for i, count in enumerate(result["per_mode"]) if count > 0] == [0, 3, 5]
    # Within 3 std in 2-D holds 1 - exp(-4.5) ~ 98.9% of an isotropic Gaussian.
    assert 0.97 < result["high_quality"] < 1.0


def test_ring8_centres_geometry():
    assert RING8_CENTRES.shape == (8, 2)
    np.testing.assert_allclose(np.linalg.norm(RING8_CENTRES, axis=1), 2.0)
    assert GRID25_CENTRES.shape == (25, 2)
    assert sorted(set(GRID25_CENTRES[:, 0].tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]


def test_on_centre_samples_are_all_high_quality():
    samples = np.repeat(RING8_CENTRES, 10, axis=0)
    result = ring8_coverage(samples)
    assert result["modes"] == 8 and result["high_quality"] == 1.0
    assert result["per_mode"] == [10] * 8


def test_far_samples_capture_nothing():
    samples = np.full((100, 2), 10.0)
    samples[0] = np.nan
    for result in (ring8_coverage(samples), grid25_coverage(samples)):
        assert result["modes"] == 0 and result["high_quality"] == 0.0


def test_just_outside_three_std_is_not_captured():
    inside = RING8_CENTRES[:1] + np.array([[2.9 * RING8_STD, 0.0]])
    outside = RING8_CENTRES[:1] + np.array([[3.1 * RING8_STD, 0.0]])
    assert ring8_coverage(inside)["modes"] == 1
    assert ring8_coverage(outside)["modes"] == 0


def test_grid25_all_centres_and_chunking():
    result = grid25_coverage(GRID25_CENTRES)
    assert result["modes"] == 25 and result["high_quality"] == 1.0
    # Enough samples to cross a chunk boundary: counts must still add up.
    rng = np.random.default_rng(1)
    which = rng.integers(0, 25, 200_000)
    samples = GRID25_CENTRES[which]
    result = mode_coverage(samples, GRID25_CENTRES, GRID25_STD)
    assert result["per_mode"] == np.bincount(which, minlength=25).tolist()


def test_mode_coverage_refuses_bad_shapes():
    with pytest.raises(ValueError, match="samples"):
        mode_coverage(np.zeros((0, 2)), RING8_CENTRES, RING8_STD)
    with pytest.raises(ValueError, match="centres"):
        mode_coverage(np.zeros((5, 2)), np.zeros((3, 3)), RING8_STD)
    with pytest.raises(ValueError, match="std"):
        mode_coverage(np.zeros((5, 2)), RING8_CENTRES, 0.0)


# --- sample quality ----------------------------------------------------------------------

def test_frechet_identical_sets_is_zero():
    x = np.random.default_rng(0).normal(size=(500, 6))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)


def test_frechet_matches_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(0)
    mu1, mu2 = np.array([0.0, 1.0, -1.0]), np.array([1.0, 1.0, 2.0])
    s1, s2 = np.array([1.0, 4.0, 0.25]), np.array([2.0, 1.0, 1.0])
    a = mu1 + rng.normal(size=(200_000, 3)) * np.sqrt(s1)
    b = mu2 + rng.normal(size=(200_000, 3)) * np.sqrt(s2)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert expected == pytest.approx(10.0 + (3 - 2 * math.sqrt(2)) + 1.0 + 0.25)
    d_ab = frechet_distance(a, b)
    assert d_ab == pytest.approx(expected, rel=0.02)
    assert frechet_distance(b, a) == pytest.approx(d_ab, rel=1e-9)


def test_frechet_handles_singular_covariances():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 4))
    b = rng.normal(size=(300, 4)) + np.array([3.0, 0, 0, 0])
    a[:, 3] = 0.0   # a dead feature, as a ReLU unit that never fires
    b[:, 3] = 0.0
    d = frechet_distance(a, b)
    assert np.isfinite(d) and d == pytest.approx(9.0, rel=0.15)


def test_frechet_refuses_mismatched_columns():
    with pytest.raises(ValueError, match="columns"):
        frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))


def test_class_coverage_uniform_and_single_class():
    uniform = class_coverage(np.tile(np.arange(10), 50), 10)
    assert uniform["classes_found"] == 10 and uniform["n_classes"] == 10
    assert uniform["kl_from_uniform"] == pytest.approx(0.0, abs=1e-12)
    assert uniform["histogram"] == [50] * 10
    single = class_coverage(np.full(100, 7), 10)
    assert single["classes_found"] == 1
    assert single["kl_from_uniform"] == pytest.approx(math.log(10))
    half = class_coverage(np.array([0, 0, 1, 1]), 4)   # 2 of 4 classes, evenly
    assert half["kl_from_uniform"] == pytest.approx(math.log(2))


def test_class_coverage_refuses_out_of_range_labels():
    with pytest.raises(ValueError, match="0..9"):
        class_coverage(np.array([0, 10]), 10)


def test_feature_classifier_on_digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x / 16.0, y, test_size=0.2, stratify=y, random_state=0)
    clf = fit_feature_classifier(x_train, y_train, seed=0)
    assert (clf.predict(x_test) == y_test).mean() > 0.9
    feats = classifier_features(clf, x_test)
    assert feats.shape == (len(x_test), 64) and feats.min() >= 0.0
    # The features are the network's own hidden layer: its output layer on them predicts.
    logits = feats @ clf.coefs_[1] + clf.intercepts_[1]
    np.testing.assert_array_equal(clf.classes_[logits.argmax(axis=1)], clf.predict(x_test))
    # Same-distribution sets are closer in this space than real versus noise.
    real = frechet_distance(classifier_features(clf, x_train), feats)
    noise = frechet_distance(
        classifier_features(clf, np.random.default_rng(0).random((300, 64))), feats)
    assert real < noise


# --- likelihood ---------------------------------------------------------------------------

def _tiny_rbm(n_visible: int, n_hidden: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return (rng.normal(0.0, 1.0, (n_visible, n_hidden)), rng.normal(0.0, 1.0, n_visible),
            rng.normal(0.0, 1.0, n_hidden))


def _all_states(k: int) -> np.ndarray:
    return np.array(list(itertools.product([0.0, 1.0], repeat=k)))


def _brute_log_z(W, b, c) -> float:
    v = _all_states(W.shape[0])
    h = _all_states(W.shape[1])
    neg_energy = (v @ b)[:, None] + (h @ c)[None, :] + v @ W @ h.T
    return float(logsumexp(neg_energy))


@pytest.mark.parametrize("shape", [(4, 3), (3, 5), (4, 4)])
def test_exact_log_partition_matches_brute_force(shape):
    W, b, c = _tiny_rbm(*shape)
    assert exact_log_partition(W, b, c) == pytest.approx(_brute_log_z(W, b, c), abs=1e-10)


def test_exact_log_partition_chunk_does_not_matter():
    W, b, c = _tiny_rbm(6, 5, seed=3)
    reference = exact_log_partition(W, b, c)
    for chunk in (1, 2, 3, 7):
        assert exact_log_partition(W, b, c, chunk=chunk) == pytest.approx(reference, abs=1e-10)
    assert reference == pytest.approx(_brute_log_z(W, b, c), abs=1e-10)


def test_exact_log_partition_large_weights_do_not_overflow():
    W, b, c = _tiny_rbm(4, 3, seed=1)
    W, b, c = 400.0 * W, 400.0 * b, 400.0 * c
    value = exact_log_partition(W, b, c)
    assert np.isfinite(value) and value == pytest.approx(_brute_log_z(W, b, c), rel=1e-12)


def test_probabilities_sum_to_one():
    W, b, c = _tiny_rbm(4, 3)
    log_z = exact_log_partition(W, b, c)
    ll = log_likelihood(_all_states(4), W, b, c, log_z)
    assert ll.shape == (16,) and np.all(ll < 0)
    assert np.exp(ll).sum() == pytest.approx(1.0, abs=1e-12)


def test_free_energy_matches_sum_over_hidden():
    W, b, c = _tiny_rbm(4, 3)
    v = _all_states(4)
    h = _all_states(3)
    neg_energy = (v @ b)[:, None] + (h @ c)[None, :] + v @ W @ h.T
    np.testing.assert_allclose(free_energy(v, W, b, c), -logsumexp(neg_energy, axis=1),
                               atol=1e-12)
    assert free_energy(v[5], W, b, c).shape == (1,)


def test_too_many_units_is_refused():
    with pytest.raises(ValueError, match="n_visible=25, n_hidden=30"):
        exact_log_partition(np.zeros((25, 30)), np.zeros(25), np.zeros(30))
    with pytest.raises(ValueError, match="max_units=3"):
        exact_log_partition(*_tiny_rbm(4, 4), max_units=3)
    # A wide visible layer is fine when the hidden one is small.
    W, b, c = np.zeros((1000, 2)), np.zeros(1000), np.zeros(2)
    assert exact_log_partition(W, b, c) == pytest.approx(1002 * math.log(2))


def test_bad_parameter_shapes_are_refused():
    W, b, c = _tiny_rbm(4, 3)
    with pytest.raises(ValueError, match="c must have shape"):
        exact_log_partition(W, b, c[:2])
    with pytest.raises(ValueError, match="v must have shape"):
        free_energy(np.zeros((2, 5)), W, b, c)
