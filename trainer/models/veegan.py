"""VEEGAN (Srivastava et al. 2017): a generator G (z -> x), a reconstructor network F
(x -> z) that learns to invert G and to map the data to the Gaussian, and a discriminator on
(z, x) pairs telling data pairs (F(x), x) from generated pairs (z, G(z)).

Algorithm 1 of the paper, per step: D is trained to classify the pairs (cross-entropy; here
data pairs are the positive class); G minimises an adversarial term on its own pairs plus the
l2 reconstruction ||z - F(G(z))||^2, and F minimises that reconstruction term. The paper's
adversarial term is D's raw density-ratio estimate (the logit), unbounded below; here it is
the non-saturating -log D(z, G(z)), which has the same fixed point and did not diverge on the
2-D mixtures where the raw logit did (5 of 25 grid modes, 0.4% high-quality samples). The reconstruction penalty is
what fights mode collapse: a generator that drops a mode cannot be inverted onto the whole
Gaussian. MLP networks (rows flattened), Adam with beta1 0.5.

Exported: `generator` (z -> x), the reconstructor as the `encoder` graph (x -> z, served by
`gen encode`), and `discriminator` (x -> logit D(F(x), x), high for data-like rows) for
`--refine`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gen.runtime.manifest import AncestralSampler, DataSpec

from ..graphs import GraphDef, Method, Port, data_port
from ..options import Interval, option
from ..registry import Family, Preset, register
from .adversarial import (AveragedGenerator, GeneratorAverage, MLPBody, average_option, variant_words,
                          discriminator_loss, gan_graphs, hidden_option, keep_most_faithful, latent_option,
                          low_dim_steps, pack_option, pack_rows, resolve_latent)
from .base import mlp


LATENT = 16


@dataclass
class Options:
    hidden: list[int] = hidden_option((256, 256))
    latent_dim: int = latent_option(LATENT)
    recon_weight: float = option(1.0, "Weight of the l2 reconstruction ||z - F(G(z))||^2.", Interval(float, 0, None))
    lr: float = option(1e-3, "Adam learning rate of G, F and D (betas 0.5, 0.999).",
                       Interval(float, 0, None, "neither"))
    pack: int = pack_option("--refine")
    average: float = average_option(0.0)


class VEEGAN(AveragedGenerator, nn.Module):
    """With `pack` m > 1 (PacGAN) D judges packs of m (z, x) pairs side by side; a per-row pair
    discriminator (row_body, row_head) trains beside it and is the exported one."""

    def __init__(self, shape: list[int], hidden: list[int], latent_dim: int, unit_range: bool, pack: int = 1,
                 average: float = 0.0):
        super().__init__()
        self.shape, self.latent_dim, self.pack = list(shape), latent_dim, pack
        dim = int(np.prod(shape))
        self.netG = mlp([latent_dim, *hidden, dim], last_act=nn.Sigmoid() if unit_range else None)
        self.netG_average = GeneratorAverage(self.netG, average) if average > 0 else None
        self.netF = mlp([dim, *reversed(hidden), latent_dim])
        self.body = MLPBody(pack * (latent_dim + dim), list(reversed(hidden)))
        self.head = nn.Linear(self.body.features, 1)
        self.row_body = MLPBody(latent_dim + dim, list(reversed(hidden))) if pack > 1 else None
        self.row_head = nn.Linear(self.row_body.features, 1) if pack > 1 else None

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator_in_use()(z).reshape(-1, *self.shape)

    def reconstruct_code(self, x: torch.Tensor) -> torch.Tensor:
        """F(x): the reconstructor's code of a row."""
        return self.netF(x.flatten(1))

    def discriminate_pair(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """D's logit per (z, x) pair (the per-row discriminator's, with packs)."""
        body, head = (self.body, self.head) if self.pack == 1 else (self.row_body, self.row_head)
        return head(body(torch.cat([z, x.flatten(1)], dim=1))).squeeze(1)

    def discriminate_pair_packs(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """D's logit per pack of `pack` consecutive pairs (per pair when pack is 1)."""
        if self.pack == 1:
            return self.discriminate_pair(z, x)
        return self.head(self.body(pack_rows(torch.cat([z, x.flatten(1)], dim=1), self.pack))).squeeze(1)

    def discriminate(self, x: torch.Tensor) -> torch.Tensor:
        """logit D(F(x), x): high for rows whose pair looks like a data pair."""
        return self.discriminate_pair(self.reconstruct_code(x), x)

    def discriminator_parameters(self):
        rows = [*self.row_body.parameters(), *self.row_head.parameters()] if self.pack > 1 else []
        return [*self.body.parameters(), *self.head.parameters(), *rows]


class Trainer:
    def __init__(self, net: VEEGAN, o: Options):
        self.net, self.recon_weight = net, o.recon_weight
        self.optD = torch.optim.Adam(net.discriminator_parameters(), lr=o.lr, betas=(0.5, 0.999))
        self.optGF = torch.optim.Adam([*net.netG.parameters(), *net.netF.parameters()], lr=o.lr, betas=(0.5, 0.999))
        self.batches_per_step = 1

    def step(self, x: torch.Tensor) -> dict[str, float]:
        net, m = self.net, self.net.pack
        n = max(len(x), m)  # generated pairs: at least one pack
        z = torch.randn(n, net.latent_dim, device=x.device)
        fake = net.generate(z)
        out = {}
        if len(x) >= m:  # the end of an epoch may leave fewer real rows than a pack
            with torch.no_grad():
                z_real = net.reconstruct_code(x)
            loss_d = discriminator_loss(net.discriminate_pair_packs(z_real, x),
                                        net.discriminate_pair_packs(z, fake.detach()))
            loss_row = torch.zeros(())
            if m > 1:  # the per-row pair discriminator learns from the same pairs
                loss_row = discriminator_loss(net.discriminate_pair(z_real, x), net.discriminate_pair(z, fake.detach()))
                out["loss_d_row"] = float(loss_row.detach())
            self.optD.zero_grad(set_to_none=True)
            (loss_d + loss_row).backward()
            self.optD.step()
            out["loss_d"] = float(loss_d.detach())
        logit = net.discriminate_pair_packs(z, fake)
        adversarial = F.binary_cross_entropy_with_logits(logit, torch.ones_like(logit))
        recon = ((z - net.reconstruct_code(fake)) ** 2).sum(dim=1).mean()
        loss = adversarial + self.recon_weight * recon
        self.optGF.zero_grad(set_to_none=True)
        loss.backward()
        self.optGF.step()
        net.update_average()
        return {"loss_d": 0.0, **out, "loss_g": float(adversarial.detach()), "recon": float(recon.detach())}


def graphs(net: VEEGAN, data: DataSpec) -> dict[str, GraphDef]:
    return gan_graphs(net, data, extra={
        "encoder": GraphDef(Method(net, "reconstruct_code"), [data_port("x", data)],
                            [Port("z", "latent", [net.latent_dim])])})


register(Family(
    name="veegan", description="VEEGAN: generator, reconstructor F (x -> z) and a (z, x) discriminator; "
                               "samples, encodes.",
    options=Options,
    build=lambda o, data: VEEGAN(data.shape, o.hidden, o.latent_dim, data.unit_range, o.pack, o.average),
    trainer=Trainer, graphs=graphs, capabilities=("sample", "encode"), score_kind=None,
    sampler=lambda net, o: AncestralSampler(graph="generator"), latent_prior="normal",
    discriminator=("discriminator", "logit"), resolve=lambda o, data: resolve_latent(o, data, LATENT),
    min_steps=low_dim_steps, keep_best=keep_most_faithful,
    variant=lambda o: f"mlp {'-'.join(map(str, o.hidden))}, recon weight {o.recon_weight:g}"
                      + variant_words(o),
    test=Preset(3, {"hidden": [16], "latent_dim": 4}), bench=Preset(200),
))
