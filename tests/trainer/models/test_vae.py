"""The maths of the VAE, checked against its definition."""

import pytest
import torch
import torch.nn.functional as F

from gen.runtime.errors import ConfigError
from gen.runtime.manifest import DataSpec, PreprocessSpec
from gen.trainer.config import TrainConfig
from gen.trainer.models import vae

UNIT = DataSpec("test", "image", [1, 1, 3], preprocessing=PreprocessSpec(0.0, 1.0, [0.0, 1.0]))
TABLE = DataSpec("test", "tabular", [3])


def net(data=UNIT, **options):
    cfg = TrainConfig.make(model="vae", hidden=[4], latent_dim=2, **options)
    return cfg.family.build(cfg.family.resolve(cfg.options, data), data)


def test_closed_form_kl_matches_monte_carlo():
    torch.manual_seed(0)
    mu, logvar = torch.tensor([[0.5, -1.0]]), torch.tensor([[0.2, -0.7]])
    closed = vae.VAE.kl(mu, logvar)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros(2), torch.ones(2))
    z = q.sample((200_000,))
    mc = (q.log_prob(z) - p.log_prob(z)).sum(-1).mean()
    assert float(closed) == pytest.approx(float(mc), abs=0.01)
    torch.testing.assert_close(closed, torch.distributions.kl_divergence(q, p).sum(-1))


def test_bernoulli_nll_is_bce_and_stable():
    v = net()
    assert v.decoder_kind == "bernoulli"
    logits = torch.tensor([[-80.0, 0.3, 60.0]])
    x = torch.tensor([[0.0, 0.5, 1.0]])
    want = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    torch.testing.assert_close(v.nll(logits, x), want.reshape(1))


def test_gaussian_nll_is_the_normal_density():
    v = net(TABLE)
    assert v.decoder_kind == "gaussian"
    mean, x = torch.tensor([[0.0, 1.0, 2.0]]), torch.tensor([[0.5, 1.0, 1.0]])
    want = -torch.distributions.Normal(mean, 1.0).log_prob(x).sum()
    torch.testing.assert_close(v.nll(mean, x), want.reshape(1))


def test_score_is_negative_elbo_at_posterior_mean():
    v = net(kl_weight=1.0)
    x = torch.rand(5, 1, 1, 3)
    mu, logvar = v.encode(x)
    want = v.nll(v.decoder_net(mu), x) + v.kl(mu, logvar)
    torch.testing.assert_close(v.score(x), want)


def test_kl_weight_zero_is_refused():
    with pytest.raises(ConfigError, match=r"kl_weight=0.0: expected a number > 0"):
        TrainConfig.make(model="vae", kl_weight=0.0)


def test_bernoulli_decoder_needs_unit_range():
    with pytest.raises(ConfigError, match=r"decoder=bernoulli needs data scaled to \[0, 1\]"):
        net(TABLE, decoder="bernoulli")


def test_empty_hidden_means_no_hidden_layer():
    cfg = TrainConfig.make(model="vae", hidden=[], latent_dim=2)
    assert isinstance(cfg.family.build(cfg.family.resolve(cfg.options, UNIT), UNIT).body, torch.nn.Identity)


@pytest.mark.parametrize("data", [UNIT, TABLE], ids=["bernoulli", "gaussian"])
def test_score_is_the_sum_of_per_feature_errors_plus_weighted_kl(data):
    v = net(data, kl_weight=0.3)
    x = torch.rand(6, *data.shape)
    score, errors, kl = v.score_parts(x)
    assert errors.shape == x.shape and kl.shape == (6,)
    torch.testing.assert_close(errors.flatten(1).sum(1) + 0.3 * kl, score)
    mu, logvar = v.encode(x)
    torch.testing.assert_close(score, v.nll(v.decoder_net(mu), x) + 0.3 * v.kl(mu, logvar))
    outputs = vae.graphs(v, data)["score"].outputs
    assert [(p.name, p.shape) for p in outputs] == [("score", []), ("errors", list(data.shape)), ("kl", [])]
