"""DCGAN's architecture guidelines, for any (C, H, W)."""

import pytest
import torch
from torch import nn

from gen.runtime.errors import ConfigError
from gen.runtime.manifest import DataSpec, PreprocessSpec
from gen.trainer.config import TrainConfig


def image(shape):
    return DataSpec("test", "image", list(shape), preprocessing=PreprocessSpec(0.0, 1.0, [0.0, 1.0]))


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 7, 10), (1, 5, 1)])
def test_generator_returns_the_data_shape_in_unit_range(shape):
    torch.manual_seed(0)
    cfg = TrainConfig.make(model="dcgan", channels=[8, 16], latent_dim=3)
    net = cfg.family.build(cfg.family.resolve(cfg.options, image(shape)), image(shape))
    x = net.generate(torch.randn(5, 3) * 10)
    assert x.shape == (5, *shape) and x.min() >= 0 and x.max() <= 1
    assert net.discriminate(x).shape == (5,)


def test_follows_the_guidelines():
    cfg = TrainConfig.make(model="dcgan", channels=[8, 16], latent_dim=3)
    net = cfg.family.build(cfg.options, image((1, 28, 28)))
    mods = list(net.modules())
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) for m in mods)
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in net.netG.modules()) == 2
    assert sum(isinstance(m, nn.Conv2d) for m in net.body.modules()) == 2
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.netG.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.body.modules())
    assert any(isinstance(m, nn.LeakyReLU) for m in net.body.modules())
    assert not any(isinstance(m, nn.LeakyReLU) for m in net.netG.modules())
    # Linear layers: G's projection of z and D's read-out only
    assert sum(isinstance(m, nn.Linear) for m in mods) == 2
    weights = torch.cat([m.weight.flatten() for m in mods if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))])
    assert abs(float(weights.detach().std()) - 0.02) < 0.004
    assert cfg.options.lr == 2e-4


def test_refuses_data_that_is_not_images():
    cfg = TrainConfig.make(model="dcgan")
    with pytest.raises(ConfigError, match="dcgan needs \\(C, H, W\\) images"):
        cfg.family.resolve(cfg.options, DataSpec("pts", "points", [2]))
