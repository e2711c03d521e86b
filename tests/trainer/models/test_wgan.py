"""WGAN (clipping, RMSProp) and WGAN-GP (gradient penalty on interpolates), checked against
their definitions."""

import pytest
import torch

from gen.runtime.manifest import DataSpec, PreprocessSpec
from gen.trainer.config import TrainConfig
from gen.trainer.models import wgan
from gen.trainer.models.adversarial import gradient_penalty, interpolates

POINTS = DataSpec("test", "points", [2])
IMAGES = DataSpec("test", "image", [1, 8, 8], preprocessing=PreprocessSpec(0.0, 1.0, [0.0, 1.0]))


def build(model, data=POINTS, **options):
    cfg = TrainConfig.make(model=model, hidden=[16, 16], latent_dim=2, **options)
    options = cfg.family.resolve(cfg.options, data)
    return cfg.family.build(options, data), options


@pytest.mark.parametrize("data", [POINTS, IMAGES])
def test_clipping_keeps_every_critic_weight_in_bounds(data):
    torch.manual_seed(0)
    net, options = build("wgan", data, clip=0.01, lr=0.05)  # a large lr pushes weights past c each step
    trainer = wgan.Trainer(net, options)
    for _ in range(3):
        trainer.step(torch.rand(5 * 8, *data.shape) * 3)
    weights = torch.cat([p.detach().flatten() for p in net.discriminator_parameters()])
    assert weights.abs().max() <= 0.01 + 1e-7
    assert (weights.abs() > 0.0099).float().mean() > 0.1  # clipping was active, not vacuous
    assert isinstance(trainer.optD, torch.optim.RMSprop) and trainer.batches_per_step == 5


def test_wgan_takes_n_critic_steps_and_logs_the_wasserstein_estimate():
    torch.manual_seed(0)
    net, options = build("wgan", n_critic=3)
    trainer = wgan.Trainer(net, options)
    steps = {"d": 0, "g": 0}
    trainer.optD.step = lambda *a, **k: steps.__setitem__("d", steps["d"] + 1)
    trainer.optG.step = lambda *a, **k: steps.__setitem__("g", steps["g"] + 1)
    out = trainer.step(torch.randn(3 * 4, 2))
    assert steps == {"d": 3, "g": 1} and "wasserstein" in out and "gradient_penalty" not in out


def test_critic_has_no_sigmoid():
    """The critic's values are unbounded (a classifier's would lie in (0, 1))."""
    torch.manual_seed(0)
    net, _ = build("wgan-gp")
    with torch.no_grad():
        values = net.discriminate(torch.randn(256, 2) * 100)
    assert values.abs().max() > 1.0


def test_interpolates_lie_between_real_and_fake():
    real, fake = torch.zeros(4, 3), torch.ones(4, 3)
    eps = torch.tensor([0.0, 0.25, 0.5, 1.0])
    x = interpolates(real, fake, eps)
    assert torch.allclose(x[:, 0], 1 - eps) and torch.allclose(x, x[:, :1].expand(4, 3))


def test_gradient_penalty_is_computed_at_the_interpolates():
    """For f(x) = ||x||^2 / 2, grad f(x) = x: the penalty is mean((||x^|| - 1)^2) at x^ =
    eps real + (1 - eps) fake, which differs from its value at the real or the fake rows."""
    real, fake = torch.tensor([[3.0, 0.0], [0.0, 2.0]]), torch.tensor([[1.0, 0.0], [0.0, 4.0]])
    eps = torch.tensor([0.5, 0.25])
    got = gradient_penalty(lambda x: 0.5 * (x ** 2).sum(dim=1), real, fake, eps)
    x_hat = torch.tensor([[2.0, 0.0], [0.0, 3.5]])
    assert torch.isclose(got, ((x_hat.norm(dim=1) - 1) ** 2).mean())
    assert not torch.isclose(got, ((real.norm(dim=1) - 1) ** 2).mean())


def test_gradient_penalty_trains_the_critic():
    torch.manual_seed(0)
    net, options = build("wgan-gp", gp_weight=10.0)
    trainer = wgan.Trainer(net, options)
    out = trainer.step(torch.randn(5 * 8, 2))
    assert out["gradient_penalty"] > 0 and isinstance(trainer.optD, torch.optim.Adam)
    assert trainer.optD.defaults["betas"] == (0.5, 0.9) and trainer.optD.defaults["lr"] == 1e-4


def test_defaults_are_the_papers():
    w = TrainConfig.make(model="wgan").options
    assert (w.lr, w.clip, w.n_critic) == (5e-5, 0.01, 5)
    gp = TrainConfig.make(model="wgan-gp").options
    assert (gp.lr, gp.gp_weight, gp.n_critic, gp.beta1) == (1e-4, 10.0, 5, 0.5)
