"""MLP autoencoders from the lecture: naive (one code layer), standard (deep, symmetric)
and standard with tied weights (the decoder reuses the encoder's transposed weights).

Trained on reconstruction (BCE for data in [0, 1], MSE otherwise). The anomaly score is the
per-row reconstruction error in model space: the per-feature squared errors pooled by `pool`
(their mean on tables; on images by default their smoothed energy, see base.SmoothedEnergy);
the score graph also returns those errors (output `errors`, the data's shape: the anomaly map). Sampling decodes codes drawn from a Gaussian fitted
to the training codes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gen.runtime.manifest import AncestralSampler, DataSpec

from ..options import Choice, Interval, ListOf, option
from ..registry import Family, Preset, register
from .base import (LatentScores, Reconstruction, fit_latent_scores, reconstruction_graphs, error_pool,
                   pool_option, resolve_by_range, resolve_score, score_kind, score_option)

LOSS = Choice("auto", "mse", "bce")
LOSS_HELP = "Reconstruction loss: bce for data in [0, 1], mse otherwise; auto picks by the data."


@dataclass
class NaiveOptions:
    latent_dim: int = option(16, "Code size (one ReLU code layer, no hidden layer).", Interval(int, 1, None))
    loss: str = option("auto", LOSS_HELP, LOSS)
    lr: float = option(1e-3, "Adam learning rate.", Interval(float, 0, None, "neither"))
    score: str = score_option()
    pool: str = pool_option()


@dataclass
class Options:
    hidden: list[int] = option([256, 128], "Hidden widths of the encoder (the decoder mirrors them); [] for none.",
                               ListOf(Interval(int, 1, None)))
    latent_dim: int = option(16, "Code size (a linear code layer).", Interval(int, 1, None))
    loss: str = option("auto", LOSS_HELP, LOSS)
    lr: float = option(1e-3, "Adam learning rate.", Interval(float, 0, None, "neither"))
    score: str = score_option()
    pool: str = pool_option()


class AutoEncoder(Reconstruction, nn.Module):
    def __init__(self, shape: list[int], hidden: list[int], latent_dim: int, variant: str, unit_range: bool,
                 score: str = "recon", n_fit: int = 1, pool: str = "mean"):
        super().__init__()
        self.error_pool = error_pool(pool, shape)
        # Only a latent score keeps buffers, so run folders from before `--score` (recon) load as they were.
        self.latent_scores = LatentScores(score, latent_dim, n_fit) if score != "recon" else None
        self.variant, self.unit_range = variant, unit_range
        self.shape, self.latent_dim = list(shape), latent_dim
        sizes = [int(np.prod(shape)), *hidden, latent_dim]
        self.encoder_layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        if variant == "ae-tied":
            # Decoder layer i uses encoder layer i's weight transposed, with its own bias.
            self.decoder_bias = nn.ParameterList(nn.Parameter(torch.zeros(a)) for a in sizes[:-1])
        else:
            self.decoder_layers = nn.ModuleList(nn.Linear(b, a) for a, b in zip(sizes[:-1], sizes[1:]))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1)
        last = len(self.encoder_layers) - 1
        for i, layer in enumerate(self.encoder_layers):
            h = layer(h)
            # The naive code layer is nonlinear; a deep code layer stays linear (like PCA).
            if i < last or self.variant == "ae-naive":
                h = F.relu(h)
        return h

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder before its output nonlinearity, flat (batch, features)."""
        h = z
        for i in reversed(range(len(self.encoder_layers))):
            if self.variant == "ae-tied":
                h = F.linear(h, self.encoder_layers[i].weight.t(), self.decoder_bias[i])
            else:
                h = self.decoder_layers[i](h)
            if i > 0:
                h = F.relu(h)
        return h

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        logits = self.decode_logits(z)
        out = torch.sigmoid(logits) if self.unit_range else logits
        return out.reshape(-1, *self.shape)



class Trainer:
    """One optimiser step per batch on the reconstruction loss (any network with `encode`,
    `decode_logits` and `unit_range`: the MLP and the convolutional autoencoders)."""

    batches_per_step = 1

    def __init__(self, net: AutoEncoder, options):
        self.net = net
        self.use_bce = options.loss == "bce"
        self.opt = torch.optim.Adam(net.parameters(), lr=options.lr)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net.decode_logits(self.net.encode(x))
        target = x.reshape(logits.shape)
        if self.use_bce:
            return F.binary_cross_entropy_with_logits(logits, target)
        # MSE on what the decoder returns (through its sigmoid for data in [0, 1]), the same
        # output the score, reconstruct and sample graphs use.
        return F.mse_loss(torch.sigmoid(logits) if self.net.unit_range else logits, target)

    def step(self, x: torch.Tensor) -> dict[str, float]:
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss(x)
        loss.backward()
        self.opt.step()
        return {"loss": float(loss.detach())}


def resolve(options, data: DataSpec):
    """loss=auto -> bce for data in [0, 1], else mse; bce on other data is refused; score=auto
    -> combined for tables, recon otherwise."""
    options = resolve_by_range(options, data, "loss", "bce", "mse")
    return resolve_score(options, data)




def _family(name: str, description: str, options: type, variant: str, demo: Preset | None) -> Family:
    return register(Family(
        name=name, description=description, options=options,
        build=lambda o, data: AutoEncoder(data.shape, getattr(o, "hidden", []), o.latent_dim, name, data.unit_range,
                                          o.score, data.n_train, o.pool),
        trainer=Trainer, graphs=reconstruction_graphs, capabilities=("sample", "reconstruct", "encode", "score"),
        score_kind="reconstruction_mse", sampler=lambda net, o: AncestralSampler(graph="decoder"),
        latent_prior="gaussian", stops_early=True,
        fit_score=lambda net, o, x_fit, x_cal, rng: fit_latent_scores(net, x_fit, x_cal, rng),
        score_kind_of=score_kind, variant=lambda o: f"{variant}, {o.loss} loss", resolve=resolve,
        test=Preset(30, {"latent_dim": 4, **({"hidden": [32]} if options is Options else {})}),
        demo=demo, bench=Preset(None) if demo is not None else None, default_for=("tabular", "points") if name == "ae" else (),
    ))


_family("ae-naive", "Naive autoencoder: a single ReLU code layer, no hidden layer.", NaiveOptions, "naive", None)
_family("ae", "Deep symmetric MLP autoencoder with a linear code; scores by reconstruction error "
        "(on tables plus the code's k-NN distance to training codes, --score).",
        Options, "standard", Preset(100))
_family("ae-tied", "As ae, the decoder reuses the encoder's transposed weights (half the parameters).",
        Options, "tied weights", None)
