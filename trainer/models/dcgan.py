"""DCGAN (Radford et al. 2016), the lecture's architecture guidelines for images of any
(C, H, W): strided convolutions in D and fractionally-strided ones in G (no pooling), batch
norm in both (not on D's input layer nor G's output layer), ReLU in G with a tanh output,
LeakyReLU(0.2) in D, no hidden fully-connected layers beyond G's projection of z and D's
final linear read-out; Adam 2e-4, beta1 0.5, weights N(0, 0.02). Trained by the GAN's
Algorithm 1 step (`gan.Trainer`).

Output paddings are computed per layer, so 8x8 digits (8 -> 4 -> 2 and back) and 28x28
MNIST (28 -> 14 -> 7 and back) come out in their own shape.
"""

from __future__ import annotations

from dataclasses import dataclass

from gen.runtime.errors import ConfigError
from gen.runtime.manifest import AncestralSampler, DataSpec

from ..options import Choice, Interval, option
from ..registry import Family, Preset, register
from .adversarial import (Adversarial, ConvBody, ConvGenerator, average_option, variant_words, body,
                          channels_option, gan_graphs, init_dcgan, latent_option, pack_option, resolve_latent)
from .gan import Trainer


LATENT = 64


@dataclass
class Options:
    channels: list[int] = channels_option()
    latent_dim: int = latent_option(LATENT)
    loss: str = option("non_saturating", "Generator loss: non_saturating (-log D(G(z))) or minimax "
                       "(log(1 - D(G(z)))).", Choice("non_saturating", "minimax"))
    d_steps: int = option(1, "Discriminator steps per generator step (Algorithm 1's k).", Interval(int, 1, None))
    lr: float = option(2e-4, "Adam learning rate of G and D (betas 0.5, 0.999).", Interval(float, 0, None, "neither"))
    pack: int = pack_option("--refine")
    average: float = average_option(0.0)


def build(o: Options, data: DataSpec) -> Adversarial:
    """PacGAN's packs of images are stacked along the channels, as Lin et al. do for DCGAN."""
    net = Adversarial(data.shape, o.latent_dim,
                      ConvGenerator(o.latent_dim, data.shape, o.channels, data.unit_range),
                      body("conv", data, [], o.channels, norm="batch", pack=o.pack), o.pack,
                      ConvBody(data.shape, o.channels, norm="batch") if o.pack > 1 else None, o.average)
    init_dcgan(net)
    return net


def resolve(options: Options, data: DataSpec) -> Options:
    if data.kind != "image" or len(data.shape) != 3:
        raise ConfigError(f"model dcgan needs (C, H, W) images; {data.source} rows have shape {list(data.shape)} "
                          "(for other data use gan or wgan-gp)")
    if not options.channels:
        raise ConfigError("channels=[]: dcgan needs at least one convolution")
    return resolve_latent(options, data, LATENT)


register(Family(
    name="dcgan", description="DCGAN: strided convolutions, batch norm, ReLU/tanh G, LeakyReLU D; samples images.",
    options=Options, build=build, trainer=Trainer,
    graphs=lambda net, data: gan_graphs(net, data), capabilities=("sample",), score_kind=None,
    sampler=lambda net, o: AncestralSampler(graph="generator"), latent_prior="normal",
    discriminator=("discriminator", "logit"), resolve=resolve, data_kinds=("image",),
    variant=lambda o: (f"conv {'-'.join(map(str, o.channels))}, {o.loss} loss"
                       + variant_words(o)),
    test=Preset(3, {"channels": [8, 16], "latent_dim": 4}), bench=Preset(40),
))
