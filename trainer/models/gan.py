"""GAN (Goodfellow et al. 2014), Algorithm 1 of the lecture: per generator step, `d_steps`
discriminator steps; generator loss minimax (log(1 - D(G(z)))) or non-saturating (-log D(G(z))).

netG maps z ~ N(0, I) to a row (sigmoid output for data in [0, 1]); netD maps a row to a logit.
A GAN has no likelihood; the exported `score` graph is the discriminator's negative logit,
a weak anomaly signal reported as such in BENCHMARKS.md.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from gen.runtime.manifest import AncestralSampler, DataSpec

from ..graphs import GraphDef, Method, Port, data_port
from ..options import Choice, Interval, ListOf, option
from ..registry import Family, Preset, register
from .adversarial import (discriminator_loss, fidelity_check, gan_graphs, generator_loss, pack_rows,
                          sample_normal)
from .base import mlp


@dataclass
class Options:
    hidden: list[int] = option([256, 256], "Hidden widths of G (D mirrors them); [] for none.",
                               ListOf(Interval(int, 1, None)))
    latent_dim: int = option(None, "Noise dimension of G. Default: the row's size, at most 32 (2 for 2-D "
                                   "points: a wider noise left a GAN on Grid-25 at 16 of 25 modes).",
                             Interval(int, 1, None), optional=True)
    loss: str = option("non_saturating", "Generator loss: non_saturating (-log D(G(z))) or minimax "
                       "(log(1 - D(G(z)))).", Choice("non_saturating", "minimax"))
    d_steps: int = option(1, "Discriminator steps per generator step (Algorithm 1's k).", Interval(int, 1, None))
    # Not DCGAN's 2e-4: on digits with these MLPs netD wins at 2e-4 and samples collapse
    # (mean pairwise sample distance 1.55 vs the data's 2.99 after 200 epochs; 2.96 at 1e-3).
    lr: float = option(1e-3, "Adam learning rate of G and D (betas 0.5, 0.999).", Interval(float, 0, None, "neither"))
    pack: int = option(1, "PacGAN (Lin et al. 2018): the discriminator judges packs of this many rows at once, "
                       "real with real and generated with generated, which penalises a generator that covers few "
                       "modes; 1: the plain GAN. With packs, a per-row discriminator is trained beside it on the "
                       "same batches and is the one exported (score, --refine).", Interval(int, 1, None))


MAX_LATENT = 32
# Rows of at most LOW_DIM values: without --epochs a GAN trains LOW_DIM_STEPS optimiser steps.
# Measured on the 2-D point sets (seeds 11 and 12, not the benchmark's): 30 epochs (3,400
# steps) left Grid-25 at 13-16 of 25 modes with 2-7% of samples near one; 10,000 steps
# 22-25 modes, 58-76%; 30,000 steps 23-25 modes, 82-84% (ring-8: 8/8, 93-95%), about 70 s.
LOW_DIM, LOW_DIM_STEPS = 16, 30_000


def resolve(options: Options, data: DataSpec) -> Options:
    """latent_dim left at its default -> the row's size, at most MAX_LATENT."""
    if options.latent_dim is None:
        return replace(options, latent_dim=min(MAX_LATENT, data.size))
    return options


def min_steps(options: Options, data: DataSpec) -> int | None:
    return LOW_DIM_STEPS if data.size <= LOW_DIM else None


def keep_best(net, options: Options, data: DataSpec, x_val: torch.Tensor, seed: int):
    """On rows of a few values (the same rule as min_steps), the epoch kept is the one whose
    samples best match the held-out rows (adversarial.fidelity_check); elsewhere the last."""
    return fidelity_check(net, x_val, seed) if data.size <= LOW_DIM else None


class GAN(nn.Module):
    """netG: z -> row; netD: a pack of `pack` rows -> logit (one row when pack is 1); with packs,
    netD_row: one row -> logit, the exported discriminator."""

    def __init__(self, shape: list[int], hidden: list[int], latent_dim: int, unit_range: bool, pack: int = 1):
        super().__init__()
        self.shape, self.latent_dim, self.pack = list(shape), latent_dim, pack
        dim = int(np.prod(shape))
        self.netG = mlp([latent_dim, *hidden, dim], last_act=nn.Sigmoid() if unit_range else None)
        self.netD = mlp([pack * dim, *reversed(hidden), 1], act=lambda: nn.LeakyReLU(0.2))
        self.netD_row = mlp([dim, *reversed(hidden), 1], act=lambda: nn.LeakyReLU(0.2)) if pack > 1 else None

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        return self.netG(z).reshape(-1, *self.shape)

    def discriminate(self, x: torch.Tensor) -> torch.Tensor:
        """D's logit per row: log D(x) / (1 - D(x)) (the per-row discriminator's, with packs)."""
        return (self.netD if self.netD_row is None else self.netD_row)(x.flatten(1)).squeeze(1)

    def discriminate_packs(self, x: torch.Tensor) -> torch.Tensor:
        """D's logit per pack of `pack` consecutive rows (per row when pack is 1)."""
        if self.pack == 1:
            return self.discriminate(x)
        return self.netD(pack_rows(x.flatten(1), self.pack)).squeeze(1)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        return -self.discriminate(x)

    def generator_parameters(self):
        return self.netG.parameters()

    def discriminator_parameters(self):
        return [*self.netD.parameters(), *(self.netD_row.parameters() if self.netD_row is not None else [])]


class Trainer:
    """Algorithm 1: per call, `d_steps` discriminator updates then one generator update, Adam
    with betas (0.5, 0.999) on both (shared by dcgan, with its own defaults).

    Each discriminator update uses its own minibatch of real rows; the loop hands `step` a
    batch of d_steps * batch_size rows (or fewer at the end of an epoch) and it splits them.
    """

    def __init__(self, net, options):
        self.net, self.d_steps, self.loss_kind = net, options.d_steps, options.loss
        self.optD = torch.optim.Adam(net.discriminator_parameters(), lr=options.lr, betas=(0.5, 0.999))
        self.optG = torch.optim.Adam(net.generator_parameters(), lr=options.lr, betas=(0.5, 0.999))
        self.batches_per_step = options.d_steps

    def step(self, x: torch.Tensor) -> dict[str, float]:
        net, m = self.net, self.net.pack
        loss_d = loss_row = torch.zeros(())
        for real in x.chunk(self.d_steps):
            if len(real) < m:  # the end of an epoch, fewer rows than a pack
                continue
            fake = net.generate(sample_normal(len(real), net.latent_dim, x)).detach()
            loss_d = discriminator_loss(net.discriminate_packs(real), net.discriminate_packs(fake))
            if net.netD_row is not None:  # the per-row discriminator learns from the same rows
                loss_row = discriminator_loss(net.discriminate(real), net.discriminate(fake))
            self.optD.zero_grad(set_to_none=True)
            (loss_d + loss_row).backward()
            self.optD.step()
        z = sample_normal(max(len(x) // self.d_steps, m), net.latent_dim, x)
        loss_g = generator_loss(net.discriminate_packs(net.generate(z)), self.loss_kind)
        self.optG.zero_grad(set_to_none=True)
        loss_g.backward()
        self.optG.step()
        return {"loss_d": float(loss_d.detach()), "loss_g": float(loss_g.detach()),
                **({"loss_d_row": float(loss_row.detach())} if net.netD_row is not None else {})}


def graphs(net: GAN, data: DataSpec) -> dict[str, GraphDef]:
    return gan_graphs(net, data, extra={
        "score": GraphDef(Method(net, "score"), [data_port("x", data)], [Port("score", "value")])})


register(Family(
    name="gan", description="GAN, Goodfellow Algorithm 1 (d_steps D-steps per G-step); samples; weak score.",
    options=Options, build=lambda o, data: GAN(data.shape, o.hidden, o.latent_dim, data.unit_range, o.pack),
    trainer=Trainer, graphs=graphs, capabilities=("sample", "score"), resolve=resolve, min_steps=min_steps,
    keep_best=keep_best,
    score_kind="negative_discriminator_logit", sampler=lambda net, o: AncestralSampler(graph="generator"),
    latent_prior="normal", discriminator=("discriminator", "logit"), variant=lambda o: f"{o.loss} loss, d_steps={o.d_steps}" + (f", PacGAN{o.pack}" if o.pack > 1 else ""),
    test=Preset(30, {"hidden": [32], "latent_dim": 4}), demo=Preset(300), bench=Preset(300),
))
