"""AdaGAN: the reweighting of the paper, the mixture weights, and mixture sampling."""

import numpy as np
import pytest
import torch
from scipy import stats

from gen.runtime.manifest import DataSpec
from gen.trainer.config import TrainConfig
from gen.trainer.models import adagan

POINTS = DataSpec("test", "points", [2])


def test_weights_sum_to_one_and_drop_covered_rows():
    h = np.array([0.0, 0.1, 1.0, 5.0, 50.0])  # p_model / p_data: the last rows are well covered
    w = adagan.adagan_weights(h, beta=0.5)
    assert np.isclose(w.sum(), 1.0) and (w >= 0).all()
    assert w[-1] == 0 and np.all(np.diff(w) <= 0)


def test_weights_match_the_closed_form():
    """With lambda* found, every positive weight is (lambda* - (1 - beta) h) / (N beta)."""
    h = np.array([0.2, 0.4, 0.9, 3.0])
    beta = 0.25
    w = adagan.adagan_weights(h, beta)
    lam = w[0] * len(h) * beta + (1 - beta) * h[0]
    want = np.maximum(lam - (1 - beta) * h, 0) / (len(h) * beta)
    assert np.allclose(w, want, atol=1e-9)


def test_uniform_ratio_gives_uniform_weights():
    assert np.allclose(adagan.adagan_weights(np.ones(7), 0.5), 1 / 7)


def test_fit_trains_every_component_and_sets_uniform_weights():
    torch.manual_seed(0)
    cfg = TrainConfig.make(model="adagan", components=3, hidden=[8], latent_dim=2, reweight_epochs=1)
    net = cfg.family.build(cfg.options, POINTS)
    history = adagan.Trainer(net, cfg.options).fit(torch.randn(64, 2), epochs=2, batch_size=16,
                                                    rng=np.random.default_rng(0))
    assert [r["component"] for r in history] == [1, 1, 2, 2, 3, 3]
    assert torch.allclose(net.weights, torch.full((3,), 1 / 3))
    spec = adagan.sampler(net, cfg.options)
    assert spec.graphs == ["generator_0", "generator_1", "generator_2"] and np.isclose(sum(spec.weights), 1)


def test_constant_beta_weights_are_geometric():
    torch.manual_seed(0)
    cfg = TrainConfig.make(model="adagan", components=3, hidden=[8], latent_dim=2, beta=0.5, reweight_epochs=1)
    net = cfg.family.build(cfg.options, POINTS)
    adagan.Trainer(net, cfg.options).fit(torch.randn(32, 2), epochs=1, batch_size=16, rng=np.random.default_rng(0))
    assert torch.allclose(net.weights, torch.tensor([0.25, 0.25, 0.5]))


def test_mixture_sampling_is_seeded_and_follows_the_weights(bundles):
    """Component counts of 4,000 samples fit the weights (chi-square), and a seed repeats."""
    from gen.runtime import load
    from gen.runtime.samplers import mixture

    model = load(bundles["adagan"])
    spec = model.manifest.sampler
    assert spec.kind == "mixture" and len(spec.graphs) == 2
    a, b = model.sample(50, seed=3), model.sample(50, seed=3)
    assert np.array_equal(a, b) and not np.array_equal(a, model.sample(50, seed=4))
    weights = np.array([0.2, 0.8])
    spec.weights = weights.tolist()
    counts = np.zeros(2)
    calls = []
    original = model.run_batched

    def spy(role, feeds, output):
        calls.append((role, len(feeds["z"])))
        return original(role, feeds, output)

    model.run_batched = spy
    mixture.sample(model, spec, 4000, np.random.default_rng(0))
    for role, rows in calls:
        counts[spec.graphs.index(role)] += rows
    assert counts.sum() == 4000 and len(calls) == 2  # each component runs once, on its sub-batch
    assert stats.chisquare(counts, 4000 * weights).pvalue > 0.01
