"""The maths of each family, checked against its definition."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gen.trainer.config import TrainConfig
from gen.trainer.errors import TrainError
from gen.trainer.evaluate import calibrate
from gen.trainer.models import autoencoder, gan, vae


def cfg(**kw):
    return TrainConfig(**kw).validate()


def test_naive_autoencoder_has_one_code_layer():
    net = autoencoder.build(cfg(model="ae-naive", latent_dim=5), dim=12, unit_range=True)
    assert [tuple(l.weight.shape) for l in net.encoder_layers] == [(5, 12)]
    assert net.encode(torch.randn(3, 12)).min() >= 0  # the naive code layer is ReLU


def test_standard_autoencoder_is_symmetric():
    net = autoencoder.build(cfg(model="ae", hidden=[10, 8], latent_dim=3), dim=12, unit_range=False)
    assert [tuple(l.weight.shape) for l in net.encoder_layers] == [(10, 12), (8, 10), (3, 8)]
    assert [tuple(l.weight.shape) for l in net.decoder_layers] == [(12, 10), (10, 8), (8, 3)]


def test_tied_autoencoder_decodes_with_transposed_encoder_weights():
    net = autoencoder.build(cfg(model="ae-tied", hidden=[6], latent_dim=3), dim=8, unit_range=False)
    untied = autoencoder.build(cfg(model="ae", hidden=[6], latent_dim=3), dim=8, unit_range=False)
    assert sum(p.numel() for p in net.parameters()) < sum(p.numel() for p in untied.parameters())
    z = torch.randn(4, 3)
    w1, w2 = net.encoder_layers[0].weight, net.encoder_layers[1].weight
    b0, b1 = net.decoder_bias[0], net.decoder_bias[1]
    expected = F.relu(z @ w2 + b1) @ w1 + b0
    torch.testing.assert_close(net.decode(z), expected)
    with torch.no_grad():
        w1.mul_(2.0)  # changing the encoder changes the decoder
    assert not torch.allclose(net.decode(z), expected)


def test_vae_closed_form_kl_matches_monte_carlo():
    torch.manual_seed(0)
    mu, logvar = torch.tensor([[0.5, -1.0]]), torch.tensor([[0.2, -0.7]])
    closed = vae.VAE.kl(mu, logvar)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros(2), torch.ones(2))
    z = q.sample((200_000,))
    mc = (q.log_prob(z) - p.log_prob(z)).sum(-1).mean()
    assert float(closed) == pytest.approx(float(mc), abs=0.01)
    torch.testing.assert_close(closed, torch.distributions.kl_divergence(q, p).sum(-1))


def test_vae_bernoulli_nll_is_bce_and_stable():
    net = vae.build(cfg(model="vae", hidden=[4], latent_dim=2), dim=3, unit_range=True)
    logits = torch.tensor([[-80.0, 0.3, 60.0]])
    x = torch.tensor([[0.0, 0.5, 1.0]])
    want = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    torch.testing.assert_close(net.nll(logits, x), want.reshape(1))


def test_vae_gaussian_nll_is_the_normal_density():
    net = vae.build(cfg(model="vae", hidden=[4], latent_dim=2), dim=3, unit_range=False)
    assert net.decoder_kind == "gaussian"
    mean, x = torch.tensor([[0.0, 1.0, 2.0]]), torch.tensor([[0.5, 1.0, 1.0]])
    want = -torch.distributions.Normal(mean, 1.0).log_prob(x).sum()
    torch.testing.assert_close(net.nll(mean, x), want.reshape(1))


def test_vae_score_is_negative_elbo_at_posterior_mean():
    net = vae.build(cfg(model="vae", hidden=[4], latent_dim=2, kl_weight=1.0), dim=3, unit_range=True)
    x = torch.rand(5, 3)
    mu, logvar = net.encode(x)
    want = net.nll(net.decoder_net(mu), x) + net.kl(mu, logvar)
    torch.testing.assert_close(net.anomaly_score(x), want)


def test_kl_weight_zero_is_refused():
    with pytest.raises(TrainError, match="kl_weight"):
        cfg(model="vae", kl_weight=0.0)


def test_gan_takes_k_discriminator_steps_per_generator_step():
    torch.manual_seed(0)
    net = gan.build(cfg(model="gan", hidden=[8], latent_dim=2), dim=3, unit_range=True)
    trainer = gan.Trainer(net, cfg(model="gan", k=3))
    steps = {"d": 0, "g": 0}
    trainer.optD.step = lambda *a, **k: steps.__setitem__("d", steps["d"] + 1)
    trainer.optG.step = lambda *a, **k: steps.__setitem__("g", steps["g"] + 1)
    trainer.step(torch.rand(3 * 4, 3))
    assert steps == {"d": 3, "g": 1} and trainer.batches_per_step == 3


@pytest.mark.parametrize("kind", ["minimax", "non_saturating"])
def test_gan_generator_losses(kind):
    """minimax: G minimises log(1 - D(G(z))) < 0; non-saturating: G minimises -log D(G(z)) > 0."""
    torch.manual_seed(0)
    net = gan.build(cfg(model="gan", hidden=[8], latent_dim=2), dim=3, unit_range=True)
    trainer = gan.Trainer(net, cfg(model="gan", gan_loss=kind))
    captured = {}
    original = net.discriminate

    def spy(x):
        captured["logits"] = original(x)
        return captured["logits"]

    net.discriminate = spy
    losses = trainer.step(torch.rand(8, 3))
    d = torch.sigmoid(captured["logits"]).detach()  # the generator step's D(G(z))
    expected = torch.log(1 - d).mean() if kind == "minimax" else -torch.log(d).mean()
    assert losses["loss_g"] == pytest.approx(float(expected), rel=1e-5)


def test_calibration_threshold_and_quantiles():
    scores = np.arange(1, 101, dtype=float)
    spec = calibrate(scores, contamination=0.05)
    assert spec["threshold"] == pytest.approx(np.quantile(scores, 0.95))
    assert spec["quantile_values"][0] == 1 and spec["quantile_values"][-1] == 100
    assert spec["n_calibration"] == 100
    # exactly `contamination` of the calibration rows lie above the threshold
    assert np.mean(scores > spec["threshold"]) == pytest.approx(0.05)
