"""WGAN (Arjovsky et al. 2017) and WGAN-GP (Gulrajani et al. 2017).

`wgan` is the lecture's Algorithm 1: per generator step, n_critic critic steps on
E f(x) - E f(G(z)) by RMSProp (alpha 5e-5), each followed by clipping every critic weight
into [-c, c] (c = 0.01); then the generator minimises -E f(G(z)). m = 64 is the run's
batch size. `wgan-gp` replaces clipping by the gradient penalty lambda E[(||grad f(x^)|| - 1)^2]
at random interpolates x^ of real and generated rows (lambda 10, Adam 1e-4, betas
(0.5, 0.9), n_critic 5); its critic has no batch norm (the penalty is per row).

The critic has no sigmoid: its output is exported as the `critic` graph (x -> value), and
the epoch log carries `wasserstein`, the critic's estimate E f(x) - E f(G(z)) averaged over
the epoch's critic steps. Networks are MLPs, or DCGAN-style convolutions for images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gen.runtime.manifest import AncestralSampler, DataSpec

from ..options import Interval, option
from ..registry import Family, Preset, register
from .adversarial import (ARCH, ARCH_HELP, Adversarial, average_option, variant_words, body, channels_option,
                          gan_graphs, generator, gradient_penalty, hidden_option, init_dcgan, keep_most_faithful,
                          latent_option, low_dim_steps, pack_option, resolve_arch, resolve_latent, sample_normal)


LATENT = 32


@dataclass
class Options:
    arch: str = option("auto", ARCH_HELP, ARCH)
    hidden: list[int] = hidden_option((256, 256))
    channels: list[int] = channels_option()
    latent_dim: int = latent_option(LATENT)
    n_critic: int = option(5, "Critic steps per generator step.", Interval(int, 1, None))
    clip: float = option(0.01, "Clipping bound c: every critic weight is kept in [-c, c].",
                         Interval(float, 0, None, "neither"))
    lr: float = option(5e-5, "RMSProp learning rate (alpha) of the critic and the generator.",
                       Interval(float, 0, None, "neither"))
    pack: int = pack_option("--refine")
    average: float = average_option(0.0)


@dataclass
class GPOptions:
    arch: str = option("auto", ARCH_HELP, ARCH)
    hidden: list[int] = hidden_option((256, 256))
    channels: list[int] = channels_option()
    latent_dim: int = latent_option(LATENT)
    n_critic: int = option(5, "Critic steps per generator step.", Interval(int, 1, None))
    gp_weight: float = option(10.0, "Gradient penalty weight lambda.", Interval(float, 0, None))
    lr: float = option(1e-4, "Adam learning rate of the critic and the generator.",
                       Interval(float, 0, None, "neither"))
    beta1: float = option(0.5, "Adam beta1 (the paper uses 0.5 or 0; beta2 is 0.9).",
                          Interval(float, 0, 1, "left"))
    pack: int = pack_option("--refine")
    average: float = average_option(0.0)


def build(o, data: DataSpec) -> Adversarial:
    """With packs (PacGAN), the critic judges packs of rows and a per-row critic trains beside it."""
    norm = "layer" if hasattr(o, "gp_weight") else "none"
    net = Adversarial(data.shape, o.latent_dim, generator(o.arch, o.latent_dim, data, o.hidden, o.channels),
                      body(o.arch, data, o.hidden, o.channels, norm=norm, pack=o.pack), o.pack,
                      body(o.arch, data, o.hidden, o.channels, norm=norm) if o.pack > 1 else None, o.average)
    if o.arch == "conv":
        init_dcgan(net)
    return net


class Trainer:
    """n_critic critic steps (each on its own minibatch), then one generator step. With packs the
    critic's objective (and its gradient penalty, per pack) is over packs of rows, the
    generator's too, and the per-row critic learns the same objective over rows beside it."""

    def __init__(self, net: Adversarial, options):
        self.net, self.n_critic = net, options.n_critic
        self.gp_weight = getattr(options, "gp_weight", None)
        self.clip = getattr(options, "clip", None)
        if self.gp_weight is None:
            self.optD = torch.optim.RMSprop(net.discriminator_parameters(), lr=options.lr)
            self.optG = torch.optim.RMSprop(net.generator_parameters(), lr=options.lr)
        else:
            betas = (options.beta1, 0.9)
            self.optD = torch.optim.Adam(net.discriminator_parameters(), lr=options.lr, betas=betas)
            self.optG = torch.optim.Adam(net.generator_parameters(), lr=options.lr, betas=betas)
        self.batches_per_step = options.n_critic

    def step(self, x: torch.Tensor) -> dict[str, float]:
        net, m = self.net, self.net.pack
        critics = [(net.discriminate_packs, m)] + ([(net.discriminate, 1)] if net.trains_row_discriminator else [])
        estimates, penalties, rows = [], [], []
        for real in x.chunk(self.n_critic):
            if len(real) < m:  # the end of an epoch, fewer rows than a pack
                continue
            fake = net.generate(sample_normal(len(real), net.latent_dim, x)).detach()
            loss = torch.zeros(())
            for k, (critic, size) in enumerate(critics):
                w = critic(real).mean() - critic(fake).mean()
                loss = loss - w
                if self.gp_weight is not None:
                    penalty = gradient_penalty(critic, real, fake, pack=size)
                    loss = loss + self.gp_weight * penalty
                    if k == 0:
                        penalties.append(float(penalty.detach()))
                (estimates if k == 0 else rows).append(float(w.detach()))
            self.optD.zero_grad(set_to_none=True)
            loss.backward()
            self.optD.step()
            if self.clip is not None:
                with torch.no_grad():
                    for p in net.discriminator_parameters():
                        p.clamp_(-self.clip, self.clip)
        z = sample_normal(max(len(x) // self.n_critic, m), net.latent_dim, x)
        loss_g = -net.discriminate_packs(net.generate(z)).mean()
        self.optG.zero_grad(set_to_none=True)
        loss_g.backward()
        self.optG.step()
        net.update_average()
        out = {"wasserstein": sum(estimates) / len(estimates) if estimates else 0.0, "loss_g": float(loss_g.detach())}
        if penalties:
            out["gradient_penalty"] = sum(penalties) / len(penalties)
        if rows:
            out["wasserstein_row"] = sum(rows) / len(rows)
        return out


def min_steps(o, data: DataSpec) -> int | None:
    """On rows of a few values, the GAN families' budget (low_dim_steps) counted in minibatches:
    n_critic of them per generator step, so a run takes about as long as a gan's."""
    steps = low_dim_steps(o, data)
    return None if steps is None else -(-steps // o.n_critic)


def _variant(o) -> str:
    nets = f"conv {'-'.join(map(str, o.channels))}" if o.arch == "conv" else f"mlp {'-'.join(map(str, o.hidden))}"
    rule = f"gradient penalty {o.gp_weight:g}" if hasattr(o, "gp_weight") else f"clip {o.clip:g}"
    return f"{nets}, {rule}, n_critic={o.n_critic}" + variant_words(o)


COMMON = dict(
    build=build, trainer=Trainer, graphs=lambda net, data: gan_graphs(net, data, "critic", "critic"),
    capabilities=("sample",), score_kind=None, sampler=lambda net, o: AncestralSampler(graph="generator"),
    latent_prior="normal", discriminator=("critic", "critic"), variant=_variant,
    min_steps=min_steps, keep_best=keep_most_faithful,
)


def resolve(name: str):
    return lambda o, data: resolve_latent(resolve_arch(o, data, name), data, LATENT)

register(Family(
    name="wgan", description="WGAN, Algorithm 1: critic weights clipped to [-c, c], RMSProp; samples.",
    options=Options, resolve=resolve("wgan"),
    test=Preset(3, {"hidden": [16], "channels": [8], "latent_dim": 4}), bench=Preset(200), **COMMON,
))

register(Family(
    name="wgan-gp", description="WGAN-GP: critic with a gradient penalty on interpolates, Adam; samples.",
    options=GPOptions, resolve=resolve("wgan-gp"),
    test=Preset(3, {"hidden": [16], "channels": [8], "latent_dim": 4}), bench=Preset(200), **COMMON,
))
