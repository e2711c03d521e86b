"""MLP autoencoders from the lecture: naive (one code layer), standard (deep, symmetric)
and standard with tied weights (the decoder reuses the encoder's transposed weights).

Trained on reconstruction (BCE for data in [0, 1], MSE otherwise). The anomaly score is the
per-row mean squared reconstruction error; sampling decodes codes drawn from a Gaussian
fitted to the training codes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TrainConfig
from ..errors import TrainError
from .base import Graph, GraphDef

DEFAULT_HIDDEN = [256, 128]
DEFAULT_LATENT = 16
CAPABILITIES = ["sample", "reconstruct", "encode", "score"]
LATENT_PRIOR = "gaussian"


class AutoEncoder(nn.Module):
    def __init__(self, dim: int, hidden: list[int], latent_dim: int, variant: str, unit_range: bool):
        super().__init__()
        self.variant, self.unit_range = variant, unit_range
        self.dim, self.latent_dim = dim, latent_dim
        sizes = [dim, *([] if variant == "ae-naive" else hidden), latent_dim]
        self.encoder_layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        if variant == "ae-tied":
            # Decoder layer i uses encoder layer i's weight transposed, with its own bias.
            self.decoder_bias = nn.ParameterList(nn.Parameter(torch.zeros(a)) for a in sizes[:-1])
        else:
            self.decoder_layers = nn.ModuleList(nn.Linear(b, a) for a, b in zip(sizes[:-1], sizes[1:]))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        last = len(self.encoder_layers) - 1
        for i, layer in enumerate(self.encoder_layers):
            h = layer(h)
            # The naive code layer is nonlinear; a deep code layer stays linear (like PCA).
            if i < last or self.variant == "ae-naive":
                h = F.relu(h)
        return h

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        h = z
        n = len(self.encoder_layers)
        for i in reversed(range(n)):
            if self.variant == "ae-tied":
                h = F.linear(h, self.encoder_layers[i].weight.t(), self.decoder_bias[i])
            else:
                h = self.decoder_layers[i](h)
            if i > 0:
                h = F.relu(h)
        return h

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        logits = self.decode_logits(z)
        return torch.sigmoid(logits) if self.unit_range else logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def anomaly_score(self, x: torch.Tensor) -> torch.Tensor:
        """Mean squared reconstruction error per row (higher = more anomalous)."""
        return ((self(x) - x) ** 2).mean(dim=1)

    def graphs(self) -> dict[str, GraphDef]:
        return {
            "encoder": GraphDef(Graph(self, "encode"), "x", [self.dim], ["z"]),
            "decoder": GraphDef(Graph(self, "decode"), "z", [self.latent_dim], ["x"], "latent"),
            "score": GraphDef(Graph(self, "anomaly_score"), "x", [self.dim], ["score"]),
        }


def build(cfg: TrainConfig, dim: int, unit_range: bool) -> AutoEncoder:
    return AutoEncoder(dim, DEFAULT_HIDDEN if cfg.hidden is None else cfg.hidden, cfg.latent_dim or DEFAULT_LATENT,
                       cfg.model, unit_range)


class Trainer:
    """One optimiser step per batch on the reconstruction loss."""

    def __init__(self, net: AutoEncoder, cfg: TrainConfig):
        self.net = net
        self.use_bce = cfg.loss == "bce" or (cfg.loss == "auto" and net.unit_range)
        if self.use_bce and not net.unit_range:
            raise TrainError("loss=bce needs data scaled to [0, 1] (image data); use loss=mse")
        self.opt = torch.optim.Adam(net.parameters(), lr=cfg.lr or 1e-3)
        self.batches_per_step = 1

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net.decode_logits(self.net.encode(x))
        if self.use_bce:
            return F.binary_cross_entropy_with_logits(logits, x)
        return F.mse_loss(logits, x)

    def step(self, x: torch.Tensor) -> dict[str, float]:
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss(x)
        loss.backward()
        self.opt.step()
        return {"loss": float(loss.detach())}
