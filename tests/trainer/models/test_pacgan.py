"""PacGAN packing (Lin et al. 2018) in every GAN family: packs are m consecutive rows side by
side (along the channels for convolutional discriminators), the packed discriminator trains
beside a per-row one, and the per-row one is what the bundle exports for `--refine`.
Parametrised over the registry: a family with a discriminator is tested here with no edit."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pytest
import torch

from gen.runtime import load
from gen.runtime.manifest import DataSpec, PreprocessSpec
from gen.trainer import registry
from gen.trainer.config import TrainConfig
from gen.trainer.models.adversarial import body, gradient_penalty, pack_rows

ADVERSARIAL = [name for name in registry.names() if registry.get(name).discriminator is not None]
IMAGE = DataSpec("test", "image", [2, 8, 8], preprocessing=PreprocessSpec(0.0, 1.0, [0.0, 1.0]))


def test_every_family_with_a_discriminator_packs():
    assert {"gan", "dcgan", "wgan", "wgan-gp", "veegan", "infogan", "adagan"} <= set(ADVERSARIAL)
    for name in ADVERSARIAL:
        family = registry.get(name)
        options = {f.name: f.default for f in fields(family.options)}
        assert options.get("pack") in (1, None), name  # the option exists; None: the family resolves it
        # packing is off by default on images (gan packs points: test_gan.py)
        assert family.resolve(TrainConfig.make(model=name).options, IMAGE).pack == 1, name


def test_a_convolutional_pack_stacks_the_rows_along_the_channels():
    x = torch.rand(6, 2, 8, 8)
    packs = pack_rows(x.flatten(1), 3).reshape(2, 6, 8, 8)
    torch.testing.assert_close(packs[1], torch.cat([x[3], x[4], x[5]], dim=0))
    convs = body("conv", IMAGE, [], [4], norm="none", pack=3)
    assert convs.convs[0].in_channels == 3 * 2
    assert convs(pack_rows(x.flatten(1), 3)).shape == (2, convs.features)
    mlp = body("mlp", IMAGE, [16], [], pack=3)
    assert mlp.net[0].in_features == 3 * 2 * 8 * 8


def test_the_gradient_penalty_of_packs_takes_the_norm_over_the_whole_pack():
    """A linear critic of packs f(p) = a . p has gradient a at every interpolate: the penalty is
    (||a|| - 1)^2 over the pack, not over each row's share of a."""
    a = torch.tensor([0.6, 0.0, 0.0, 0.8, 1.0, 2.0])  # ||a|| over a pack of 3 rows of 2 = sqrt(6)
    critic = lambda x: pack_rows(x.flatten(1), 3) @ a  # noqa: E731
    real, fake = torch.rand(7, 2), torch.rand(7, 2)  # the 7th row is left out of the packs
    penalty = gradient_penalty(critic, real, fake, pack=3)
    assert float(penalty) == pytest.approx((6 ** 0.5 - 1) ** 2, rel=1e-6)
    per_row = lambda x: x.flatten(1) @ a[:2]  # noqa: E731  # unpacked: ||(0.6, 0)|| per row
    assert float(gradient_penalty(per_row, real, fake)) == pytest.approx(0.4 ** 2, rel=1e-6)


@pytest.mark.parametrize("name", ["wgan", "wgan-gp", "dcgan"])
def test_packed_and_per_row_discriminators_both_learn_from_a_step(name):
    """Both change, and both got a gradient from the step's loss (WGAN's clipping alone would
    change every weight)."""
    torch.manual_seed(0)
    cfg = TrainConfig.make(model=name, data="digits", channels=[4], latent_dim=2, pack=3,
                           **({"n_critic": 1} if name != "dcgan" else {}))
    options = cfg.family.resolve(cfg.options, IMAGE)
    net = cfg.family.build(options, IMAGE)
    assert net.body.convs[0].in_channels == 3 * 2 and net.row_body.convs[0].in_channels == 2
    x = torch.rand(9, 2, 8, 8)
    assert net.discriminate_packs(x).shape == (3,) and net.discriminate(x).shape == (9,)
    packed, rows = ([p.detach().clone() for p in m.parameters()] for m in (net.body, net.row_body))
    cfg.family.trainer(net, options).step(torch.rand(12, 2, 8, 8))
    assert any(not torch.equal(a, b) for a, b in zip(packed, net.body.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(rows, net.row_body.parameters()))
    for head in (net.head, net.row_head):
        assert head.weight.grad is not None and bool(head.weight.grad.abs().sum() > 0)


def test_a_packed_convolutional_infogan_takes_a_batch_shorter_than_two_packs():
    """Its fully-connected layer's batch norm needs two packs: fewer real rows skip the packed
    loss, and the generator step draws at least two packs."""
    torch.manual_seed(0)
    cfg = TrainConfig.make(model="infogan", data="digits", channels=[4], fc=8, latent_dim=2, pack=2)
    options = cfg.family.resolve(cfg.options, IMAGE)
    net = cfg.family.build(options, IMAGE)
    trainer = cfg.family.trainer(net, options)
    for rows in (2, 3, 5):  # (one row fails unpacked too: the per-row batch norm)
        assert np.isfinite(trainer.step(torch.rand(rows, 2, 8, 8))["loss_g"]), rows


@pytest.mark.parametrize("name", ADVERSARIAL)
def test_a_packed_run_exports_a_per_row_discriminator_that_refines(name, tmp_path):
    from gen.exporters.onnx_export import export_run
    from gen.trainer.train import train

    family = registry.get(name)
    preset = family.test
    cfg = TrainConfig.make(model=name, data=preset.data, normal_class=preset.normal_class, epochs=1, seed=0,
                           device="cpu", out=str(tmp_path / "run"), quiet=True, **{**preset.options, "pack": 2})
    export_run(train(cfg), tmp_path / "bundle")
    model = load(tmp_path / "bundle")
    assert model.manifest.config["pack"] == 2 and "PacGAN2" in model.manifest.variant
    rows = model.sample(5, seed=0)
    role, output = family.discriminator
    logits = model.run_batched(role, {"x": rows}, output)
    assert logits.reshape(-1).shape == (5,) and np.isfinite(logits).all()  # one value per row, any count
    refined = model.sample(7, seed=0, refine="drs")
    assert refined.shape == (7, *model.manifest.data.shape) and np.isfinite(refined).all()


@pytest.mark.parametrize("name", ["dcgan", "wgan-gp", "infogan"])
def test_an_averaged_generator_starts_from_the_initialised_weights(name):
    """DCGAN's initialisation runs after the network is built: the average is set to its result."""
    torch.manual_seed(0)
    cfg = TrainConfig.make(model=name, data="digits", channels=[4], latent_dim=2, average=0.99)
    options = cfg.family.resolve(cfg.options, IMAGE)
    net = cfg.family.build(options, IMAGE)
    for a, w in zip(net.netG_average.net.state_dict().values(), net.netG.state_dict().values()):
        torch.testing.assert_close(a, w)
