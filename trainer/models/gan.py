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
from .adversarial import (LOW_DIM, AveragedGenerator, GeneratorAverage, average_option, variant_words, discriminator_loss,
                          gan_graphs, generator_loss, keep_most_faithful, latent_option, low_dim_steps, pack_option,
                          pack_rows, resolve_latent, sample_normal)
from .base import LinearDecay, mlp


# PacGAN2 on points, by measurement (the default budget, seeds 0-2): unpacked, Grid-25 kept 20-24
# of 25 modes (93.2% of plain samples near one), ring-8 8/8 with 96.2%; packs of 2 (both
# generator losses, F0.5 check) 25/25 on every seed with 94.0%, ring-8 8/8 with 94.9%. Packs
# alone, on seeds 11-13 (not the benchmark's): 25/25 modes on each with 91.1/88.1/84.1%; packs
# of 4: 21-25 modes with 6-33% (slower to learn).
LOW_DIM_PACK = 2
# The rate decays linearly to zero on points, by measurement (the default command, seeds 0-2):
# ring-8 97.9/97.5/97.1% of plain samples near a mode against 95.4/95.0/94.4% at a constant rate,
# Grid-25 93.7/93.5/91.9% against 93.9/93.7/94.3%, every mode on every seed either way; the
# kept epochs moved late (ring-8 227-265 of 266 against 143-202). Not measured on images.


@dataclass
class Options:
    hidden: list[int] = option([256, 256], "Hidden widths of G (D mirrors them); [] for none.",
                               ListOf(Interval(int, 1, None)))
    latent_dim: int = latent_option(32)
    loss: str = option("non_saturating", "Generator loss: non_saturating (-log D(G(z))) or minimax "
                       "(log(1 - D(G(z)))).", Choice("non_saturating", "minimax"))
    d_steps: int = option(1, "Discriminator steps per generator step (Algorithm 1's k).", Interval(int, 1, None))
    # Not DCGAN's 2e-4: on digits with these MLPs netD wins at 2e-4 and samples collapse
    # (mean pairwise sample distance 1.55 vs the data's 2.99 after 200 epochs; 2.96 at 1e-3).
    lr: float = option(1e-3, "Adam learning rate of G and D (betas 0.5, 0.999).", Interval(float, 0, None, "neither"))
    pack: int = pack_option(default=None, when_unset=f" Default: {LOW_DIM_PACK} on rows of at most {LOW_DIM} values "
                            "(2-D point sets, small tables), 1 otherwise.")
    # Measured on Grid-25 with the default budget: plain samples near a mode 93.2% (seeds 0-2)
    # and 92.1% (seeds 11, 12) against 90.4% and about 89% without the average, as many modes.
    average: float = average_option(0.999)
    lr_decay: str = option(None, "Learning-rate schedule of G and D: linear (from lr down to zero over the run's steps) "
                           f"or none (constant). Default: linear on rows of at most {LOW_DIM} values (2-D point "
                           "sets, small tables), none otherwise.", Choice("linear", "none"), optional=True)


MAX_LATENT = 32


def resolve(options: Options, data: DataSpec) -> Options:
    """latent_dim as every GAN family resolves it; pack left unset -> LOW_DIM_PACK on rows of at
    most LOW_DIM values, else 1 (not measured on images)."""
    if options.pack is None:
        options = replace(options, pack=LOW_DIM_PACK if data.size <= LOW_DIM else 1)
    if options.lr_decay is None:
        options = replace(options, lr_decay="linear" if data.size <= LOW_DIM else "none")
    return resolve_latent(options, data, MAX_LATENT)


class GAN(AveragedGenerator, nn.Module):
    """netG: z -> row; netD: a pack of `pack` rows -> logit (one row when pack is 1); with packs,
    netD_row: one row -> logit, the exported discriminator."""

    def __init__(self, shape: list[int], hidden: list[int], latent_dim: int, unit_range: bool, pack: int = 1,
                 average: float = 0.0):
        super().__init__()
        self.shape, self.latent_dim, self.pack = list(shape), latent_dim, pack
        dim = int(np.prod(shape))
        self.netG = mlp([latent_dim, *hidden, dim], last_act=nn.Sigmoid() if unit_range else None)
        self.netG_average = GeneratorAverage(self.netG, average) if average > 0 else None
        self.netD = mlp([pack * dim, *reversed(hidden), 1], act=lambda: nn.LeakyReLU(0.2))
        self.netD_row = mlp([dim, *reversed(hidden), 1], act=lambda: nn.LeakyReLU(0.2)) if pack > 1 else None

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """G(z): the averaged weights' in eval mode (sampling, export), the trained ones' in training."""
        return self.generator_in_use()(z).reshape(-1, *self.shape)

    @property
    def trains_row_discriminator(self) -> bool:
        return self.netD_row is not None

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
    with betas (0.5, 0.999) on both (shared by dcgan and adagan's components, with their own
    defaults). With packs the discriminator's loss is that of the packs, and a per-row
    discriminator, where the network keeps one, learns from the same rows; the generator's loss
    is the sum of both discriminators' (not PacGAN's packs alone): the packs judge the spread of
    the samples, the per-row one each sample. Measured with PacGAN2 and 60,000 steps: ring-8
    seed 11, plain samples near a mode 89.4% with the packs alone, 94.2% with both (97.0%
    unpacked); Grid-25 seed 0, 24/25 modes with the packs alone, 25/25 with both.

    Each discriminator update uses its own minibatch of real rows; the loop hands `step` a
    batch of d_steps * batch_size rows (or fewer at the end of an epoch) and it splits them.
    With --lr-decay linear both rates fall to zero over the run's steps (D's counted as
    d_steps a step; an epoch's short last batch that splits into fewer parts leaves D's rate a
    little above zero at the end).
    """

    def __init__(self, net, options):
        self.net, self.d_steps, self.loss_kind = net, options.d_steps, options.loss
        self.optD = torch.optim.Adam(net.discriminator_parameters(), lr=options.lr, betas=(0.5, 0.999))
        self.optG = torch.optim.Adam(net.generator_parameters(), lr=options.lr, betas=(0.5, 0.999))
        self.batches_per_step = options.d_steps
        decays = getattr(options, "lr_decay", "none") == "linear"  # dcgan and adagan share this trainer
        self.decayD, self.decayG = LinearDecay(self.optD, decays), LinearDecay(self.optG, decays)

    def schedule(self, total_steps: int) -> None:
        """The run's steps (the training loop's hook): D takes d_steps optimiser steps in each."""
        self.decayD.schedule(total_steps * self.d_steps)
        self.decayG.schedule(total_steps)

    def step(self, x: torch.Tensor) -> dict[str, float]:
        net, m = self.net, self.net.pack
        rows = net.trains_row_discriminator
        loss_d = loss_row = torch.zeros(())
        for real in x.chunk(self.d_steps):
            if len(real) < m:  # the end of an epoch, fewer rows than a pack
                continue
            fake = net.generate(sample_normal(len(real), net.latent_dim, x)).detach()
            loss_d = discriminator_loss(net.discriminate_packs(real), net.discriminate_packs(fake))
            if rows:  # the per-row discriminator learns from the same rows
                loss_row = discriminator_loss(net.discriminate(real), net.discriminate(fake))
            self.optD.zero_grad(set_to_none=True)
            (loss_d + loss_row).backward()
            self.decayD.step()
        z = sample_normal(max(len(x) // self.d_steps, m), net.latent_dim, x)
        fake = net.generate(z)
        loss_g = generator_loss(net.discriminate_packs(fake), self.loss_kind)
        both = rows and isinstance(net, GAN)  # gan's generator answers to the per-row discriminator too
        if both:  # (class docstring; dcgan, which shares this trainer, keeps PacGAN's packs alone: not measured)
            loss_g_row = generator_loss(net.discriminate(fake), self.loss_kind)
            loss_g = loss_g + loss_g_row
        self.optG.zero_grad(set_to_none=True)
        loss_g.backward()
        self.decayG.step()
        net.update_average()
        return {"loss_d": float(loss_d.detach()), "loss_g": float(loss_g.detach()),
                **({"loss_d_row": float(loss_row.detach())} if rows else {}),
                **({"loss_g_row": float(loss_g_row.detach())} if both else {})}


def graphs(net: GAN, data: DataSpec) -> dict[str, GraphDef]:
    return gan_graphs(net, data, extra={
        "score": GraphDef(Method(net, "score"), [data_port("x", data)], [Port("score", "value")])})


# With packs the held-out check weighs precision twice as much as recall (F0.5): the packs
# keep the modes covered, and the epochs F1 kept on ring-8 were early ones whose samples lay
# wider than the modes. Measured on epoch-by-epoch traces (PacGAN2, both generator losses):
# ring-8 seed 1 F1 kept epoch 46 (90.2% of samples near a mode), F0.5 epoch 202 (94.9%);
# Grid-25 seed 2 F1 94.1%, F0.5 93.6%, 25/25 modes either way.
PACKED_CHECK_BETA = 0.5


def keep_best(net: GAN, o: Options, data: DataSpec, x_val: torch.Tensor, seed: int):
    """The GAN families' held-out check (adversarial.keep_most_faithful), F0.5 with packs."""
    return keep_most_faithful(net, o, data, x_val, seed, beta=PACKED_CHECK_BETA if o.pack > 1 else 1.0)


def _variant(o: Options) -> str:
    return (f"{o.loss} loss, d_steps={o.d_steps}" + (", rate decaying linearly" if o.lr_decay == "linear" else "")
            + variant_words(o))


register(Family(
    name="gan", description="GAN, Goodfellow Algorithm 1 (d_steps D-steps per G-step); samples; weak score.",
    options=Options,
    build=lambda o, data: GAN(data.shape, o.hidden, o.latent_dim, data.unit_range, o.pack, o.average),
    trainer=Trainer, graphs=graphs, capabilities=("sample", "score"), resolve=resolve,
    min_steps=low_dim_steps, keep_best=keep_best,
    score_kind="negative_discriminator_logit", sampler=lambda net, o: AncestralSampler(graph="generator"),
    latent_prior="normal", discriminator=("discriminator", "logit"), variant=_variant,
    test=Preset(30, {"hidden": [32], "latent_dim": 4}), demo=Preset(300), bench=Preset(300),
))
