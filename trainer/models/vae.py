"""Variational autoencoder (Kingma & Welling): Gaussian encoder q(z|x) = N(mu, diag(exp(logvar))),
Bernoulli or Gaussian decoder p(x|z), trained on the ELBO with the reparameterisation trick
and the closed-form KL to the N(0, I) prior.

The anomaly score is the negative ELBO at the posterior mean (z = mu), so it is
deterministic; sampling decodes z ~ N(0, I) drawn by the runtime.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import TrainConfig
from ..errors import TrainError
from .base import Graph, GraphDef, mlp

DEFAULT_HIDDEN = [256, 128]
DEFAULT_LATENT = 16
CAPABILITIES = ["sample", "reconstruct", "encode", "score"]
LATENT_PRIOR = "normal"


class VAE(nn.Module):
    def __init__(self, dim: int, hidden: list[int], latent_dim: int, decoder: str, kl_weight: float):
        super().__init__()
        self.dim, self.latent_dim = dim, latent_dim
        self.decoder_kind, self.kl_weight = decoder, kl_weight
        self.body = mlp([dim, *hidden], last_act=nn.ReLU()) if hidden else nn.Identity()
        width = hidden[-1] if hidden else dim
        self.mu_head = nn.Linear(width, latent_dim)
        self.logvar_head = nn.Linear(width, latent_dim)
        self.decoder_net = mlp([latent_dim, *reversed(hidden), dim])

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.mu_head(h), self.logvar_head(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's mean: Bernoulli probabilities or the Gaussian mean."""
        out = self.decoder_net(z)
        return torch.sigmoid(out) if self.decoder_kind == "bernoulli" else out

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x)[0])

    def nll(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """-log p(x|z) per row, summed over features (unit variance for the Gaussian)."""
        if self.decoder_kind == "bernoulli":
            # BCE with logits written out in its stable form: exporting F.binary_cross_entropy_
            # with_logits gives log(sigmoid(.)), whose tails onnxruntime computes with 1e-1 error.
            bce = torch.clamp(out, min=0) - out * x + torch.log1p(torch.exp(-torch.abs(out)))
            return bce.sum(dim=1)
        return 0.5 * ((out - x) ** 2).sum(dim=1) + 0.5 * self.dim * math.log(2 * math.pi)

    @staticmethod
    def kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL(N(mu, exp(logvar)) || N(0, I)) per row, in closed form."""
        return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)

    def neg_elbo(self, x: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
        mu, logvar = self.encode(x)
        z = mu if eps is None else mu + torch.exp(0.5 * logvar) * eps
        return self.nll(self.decoder_net(z), x) + self.kl_weight * self.kl(mu, logvar)

    def anomaly_score(self, x: torch.Tensor) -> torch.Tensor:
        """Negative ELBO at the posterior mean (higher = more anomalous)."""
        return self.neg_elbo(x)

    def graphs(self) -> dict[str, GraphDef]:
        return {
            "encoder": GraphDef(Graph(self, "encode"), "x", [self.dim], ["mu", "logvar"]),
            "decoder": GraphDef(Graph(self, "decode"), "z", [self.latent_dim], ["x"], "latent"),
            "score": GraphDef(Graph(self, "anomaly_score"), "x", [self.dim], ["score"]),
        }


def build(cfg: TrainConfig, dim: int, unit_range: bool) -> VAE:
    decoder = cfg.decoder if cfg.decoder != "auto" else ("bernoulli" if unit_range else "gaussian")
    if decoder == "bernoulli" and not unit_range:
        raise TrainError("decoder=bernoulli needs data scaled to [0, 1] (image data); use decoder=gaussian")
    hidden = DEFAULT_HIDDEN if cfg.hidden is None else cfg.hidden
    return VAE(dim, hidden, cfg.latent_dim or DEFAULT_LATENT, decoder, cfg.kl_weight)


class Trainer:
    """Maximise the ELBO: one reparameterised sample of z per row and step."""

    def __init__(self, net: VAE, cfg: TrainConfig):
        self.net = net
        self.opt = torch.optim.Adam(net.parameters(), lr=cfg.lr or 1e-3)
        self.batches_per_step = 1

    def step(self, x: torch.Tensor) -> dict[str, float]:
        self.opt.zero_grad(set_to_none=True)
        mu, logvar = self.net.encode(x)
        eps = torch.randn_like(mu)
        out = self.net.decoder_net(mu + torch.exp(0.5 * logvar) * eps)
        nll = self.net.nll(out, x).mean()
        kl = self.net.kl(mu, logvar).mean()
        loss = nll + self.net.kl_weight * kl
        loss.backward()
        self.opt.step()
        return {"loss": float(loss.detach()), "nll": float(nll.detach()), "kl": float(kl.detach())}
