"""Variational autoencoder (Kingma & Welling): Gaussian encoder q(z|x) = N(mu, diag(exp(logvar))),
Bernoulli or Gaussian decoder p(x|z), trained on the ELBO with the reparameterisation trick
and the closed-form KL to the N(0, I) prior.

The anomaly score is the negative ELBO at the posterior mean (z = mu), so it is
deterministic; sampling decodes z ~ N(0, I) drawn by the runtime. The encoder graph's `z`
output is the posterior mean mu; `logvar` is its second output.

The score graph returns the score's parts too: `errors`, the per-feature terms of
-log p(x|z) in the data's shape (binary cross-entropy for the Bernoulli decoder;
0.5 (x - mean)^2 + 0.5 log(2 pi) for the Gaussian, its constant included), and `kl`, the
per-row KL to the prior, so that, row by row,

    score == errors.sum(over features) + kl_weight * kl

(the anomaly map is `errors`; the KL has no place in it, being a property of the code).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from gen.runtime.manifest import AncestralSampler, DataSpec

from ..graphs import GraphDef, Method, Port, data_port
from ..options import Choice, Interval, ListOf, option
from ..registry import Family, Preset, register
from .base import LatentScores, fit_latent_scores, mlp, resolve_by_range, resolve_score, score_kind, score_option


@dataclass
class Options:
    hidden: list[int] = option([256, 128], "Hidden widths of the encoder (the decoder mirrors them); [] for none.",
                               ListOf(Interval(int, 1, None)))
    latent_dim: int = option(16, "Latent dimension.", Interval(int, 1, None))
    decoder: str = option("auto", "Decoder likelihood: bernoulli for data in [0, 1], gaussian (unit variance) "
                          "otherwise; auto picks by the data.", Choice("auto", "bernoulli", "gaussian"))
    kl_weight: float = option(1.0, "Weight of the KL term (> 0: without it this is not a VAE).",
                              Interval(float, 0, None, "neither"))
    lr: float = option(1e-3, "Adam learning rate.", Interval(float, 0, None, "neither"))
    score: str = score_option()


class VAE(nn.Module):
    def __init__(self, shape: list[int], hidden: list[int], latent_dim: int, decoder: str, kl_weight: float,
                 score: str = "recon", n_fit: int = 1):
        super().__init__()
        # Only a latent score keeps buffers, so run folders from before `--score` (recon) load as they were.
        self.latent_scores = LatentScores(score, latent_dim, n_fit) if score != "recon" else None
        self.shape, self.dim, self.latent_dim = list(shape), int(np.prod(shape)), latent_dim
        self.decoder_kind, self.kl_weight = decoder, kl_weight
        self.body = mlp([self.dim, *hidden], last_act=nn.ReLU()) if hidden else nn.Identity()
        width = hidden[-1] if hidden else self.dim
        self.mu_head = nn.Linear(width, latent_dim)
        self.logvar_head = nn.Linear(width, latent_dim)
        self.decoder_net = mlp([latent_dim, *reversed(hidden), self.dim])

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x.flatten(1))
        return self.mu_head(h), self.logvar_head(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's mean: Bernoulli probabilities or the Gaussian mean."""
        out = self.decoder_net(z)
        out = torch.sigmoid(out) if self.decoder_kind == "bernoulli" else out
        return out.reshape(-1, *self.shape)

    def nll_terms(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """-log p(x_j|z) per feature, flat (batch, features) (unit variance for the Gaussian);
        `out` is the decoder network's flat output (logits for Bernoulli)."""
        x = x.flatten(1)
        if self.decoder_kind == "bernoulli":
            # BCE with logits written out in its stable form: exporting F.binary_cross_entropy_
            # with_logits gives log(sigmoid(.)), whose tails onnxruntime computes with 1e-1 error.
            return torch.clamp(out, min=0) - out * x + torch.log1p(torch.exp(-torch.abs(out)))
        d = out - x  # d * d: one Mul in the exported graph, not Pow (see Reconstruction.errors)
        return 0.5 * d * d + 0.5 * math.log(2 * math.pi)

    def nll(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """-log p(x|z) per row: the sum of `nll_terms` over features."""
        return self.nll_terms(out, x).sum(dim=1)

    @staticmethod
    def kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL(N(mu, exp(logvar)) || N(0, I)) per row, in closed form."""
        return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """The row score of the score graph (higher = more anomalous)."""
        return self.score_parts(x)[0]

    def own_score(self, x: torch.Tensor) -> torch.Tensor:
        """Negative ELBO at the posterior mean: the score without a latent score."""
        mu, logvar = self.encode(x)
        return self.nll(self.decoder_net(mu), x) + self.kl_weight * self.kl(mu, logvar)

    def score_parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The score graph: (score, per-feature NLL terms in the data's shape, KL per row), with
        score = errors summed over features + kl_weight * kl (the negative ELBO at the posterior
        mean), or that combined with the posterior mean's latent score (see LatentScores)."""
        mu, logvar = self.encode(x)
        errors = self.nll_terms(self.decoder_net(mu), x)
        kl = self.kl(mu, logvar)
        elbo = errors.sum(dim=1) + self.kl_weight * kl
        if self.latent_scores is not None:
            elbo = self.latent_scores.combine(elbo, mu)
        return elbo, errors.reshape(-1, *self.shape), kl


class Trainer:
    """Maximise the ELBO: one reparameterised sample of z per row and step."""

    batches_per_step = 1

    def __init__(self, net: VAE, options: Options):
        self.net = net
        self.opt = torch.optim.Adam(net.parameters(), lr=options.lr)

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


def resolve(options: Options, data: DataSpec) -> Options:
    """decoder=auto -> bernoulli for data in [0, 1], else gaussian; bernoulli on other data is
    refused; score=auto -> combined for tables, recon (the negative ELBO) otherwise."""
    return resolve_score(resolve_by_range(options, data, "decoder", "bernoulli", "gaussian"), data)


def graphs(net: VAE, data: DataSpec) -> dict[str, GraphDef]:
    z = Port("z", "latent", [net.latent_dim])
    return {
        "encoder": GraphDef(Method(net, "encode"), [data_port("x", data)], [z, Port("logvar", "value", [net.latent_dim])]),
        "decoder": GraphDef(Method(net, "decode"), [z], [data_port("x", data)]),
        "score": GraphDef(Method(net, "score_parts"), [data_port("x", data)],
                          [Port("score", "value"), Port("errors", "value", list(data.shape)),
                           Port("kl", "value")]),
    }


register(Family(
    name="vae", description="Variational autoencoder (ELBO, closed-form KL); scores by the negative ELBO.",
    options=Options,
    build=lambda o, data: VAE(data.shape, o.hidden, o.latent_dim, o.decoder, o.kl_weight, o.score, data.n_train),
    trainer=Trainer, graphs=graphs, capabilities=("sample", "reconstruct", "encode", "score"),
    score_kind="negative_elbo", sampler=lambda net, o: AncestralSampler(graph="decoder"), latent_prior="normal",
    stops_early=True, score_kind_of=lambda o: score_kind(o, own="negative_elbo"),
    fit_score=lambda net, o, x_fit, x_cal, rng: fit_latent_scores(net, x_fit, x_cal, rng),
    variant=lambda o: f"{o.decoder} decoder", resolve=resolve,
    test=Preset(30, {"hidden": [32], "latent_dim": 4}), demo=Preset(100), bench=Preset(None),
))
