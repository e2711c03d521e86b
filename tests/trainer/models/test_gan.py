"""The GAN's Algorithm 1, checked against its definition."""

import pytest
import torch

from gen.runtime.manifest import DataSpec, PreprocessSpec
from gen.trainer.config import TrainConfig
from gen.trainer.models import gan

UNIT = DataSpec("test", "image", [1, 1, 3], preprocessing=PreprocessSpec(0.0, 1.0, [0.0, 1.0]))


def build(**options):
    cfg = TrainConfig.make(model="gan", hidden=[8], latent_dim=2, **options)
    return cfg.family.build(cfg.options, UNIT), cfg.options


def test_takes_d_steps_discriminator_steps_per_generator_step():
    torch.manual_seed(0)
    net, options = build(d_steps=3)
    trainer = gan.Trainer(net, options)
    steps = {"d": 0, "g": 0}
    trainer.optD.step = lambda *a, **k: steps.__setitem__("d", steps["d"] + 1)
    trainer.optG.step = lambda *a, **k: steps.__setitem__("g", steps["g"] + 1)
    trainer.step(torch.rand(3 * 4, 1, 1, 3))
    assert steps == {"d": 3, "g": 1} and trainer.batches_per_step == 3


@pytest.mark.parametrize("kind", ["minimax", "non_saturating"])
def test_generator_losses(kind):
    """minimax: G minimises log(1 - D(G(z))) < 0; non-saturating: G minimises -log D(G(z)) > 0."""
    torch.manual_seed(0)
    net, options = build(loss=kind)
    trainer = gan.Trainer(net, options)
    captured = {}
    original = net.discriminate

    def spy(x):
        captured["logits"] = original(x)
        return captured["logits"]

    net.discriminate = spy
    losses = trainer.step(torch.rand(8, 1, 1, 3))
    d = torch.sigmoid(captured["logits"]).detach()  # the generator step's D(G(z))
    expected = torch.log(1 - d).mean() if kind == "minimax" else -torch.log(d).mean()
    assert losses["loss_g"] == pytest.approx(float(expected), rel=1e-5)


def test_generator_output_has_the_data_shape_and_range():
    net, _ = build()
    x = net.generate(torch.randn(4, 2))
    assert x.shape == (4, 1, 1, 3) and x.min() >= 0 and x.max() <= 1
    torch.testing.assert_close(net.score(x), -net.discriminate(x))


def test_old_name_k_is_refused():
    from gen.runtime.errors import ConfigError

    with pytest.raises(ConfigError, match="k: unknown key"):
        TrainConfig.make(model="gan", k=2)
