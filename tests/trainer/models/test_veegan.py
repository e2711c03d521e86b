"""VEEGAN: the reconstructor inverts the generator; the discriminator reads (z, x) pairs."""

import torch

from gen.runtime.manifest import DataSpec
from gen.trainer.config import TrainConfig
from gen.trainer.models import veegan

POINTS = DataSpec("test", "points", [2])


def build(**options):
    cfg = TrainConfig.make(model="veegan", hidden=[32, 32], latent_dim=2, **options)
    return cfg.family.build(cfg.options, POINTS), cfg.options


def test_discriminator_reads_pairs_and_rows_through_the_reconstructor():
    torch.manual_seed(0)
    net, _ = build()
    x = torch.randn(5, 2)
    assert torch.allclose(net.discriminate(x), net.discriminate_pair(net.reconstruct_code(x), x))
    assert not torch.allclose(net.discriminate_pair(torch.zeros(5, 2), x), net.discriminate(x))


def test_training_lowers_the_reconstruction_of_z():
    torch.manual_seed(0)
    net, o = build(recon_weight=1.0)
    trainer = veegan.Trainer(net, o)
    x = torch.randn(512, 2) * 0.5 + 1.0
    first = trainer.step(x[:64])["recon"]
    for i in range(200):
        last = trainer.step(x[torch.randperm(512)[:64]])["recon"]
    assert last < 0.5 * first


def test_reconstructor_only_learns_from_the_reconstruction():
    """F is in the G/F optimiser, not D's; D's loss leaves F untouched."""
    torch.manual_seed(0)
    net, o = build()
    trainer = veegan.Trainer(net, o)
    d_params = {id(p) for group in trainer.optD.param_groups for p in group["params"]}
    assert not d_params & {id(p) for p in net.netF.parameters()}
    gf = {id(p) for group in trainer.optGF.param_groups for p in group["params"]}
    assert {id(p) for p in net.netF.parameters()} <= gf and {id(p) for p in net.netG.parameters()} <= gf
