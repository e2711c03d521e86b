"""AdaGAN (Tolstikhin et al. 2017): a boosted mixture of T GANs trained in sequence.

Algorithm 1 of the paper with its complete instance (Section 3): component t = 1 is a GAN
trained on the data with uniform weights. Before component t >= 2, with mixture weight
beta_t (1/t by default, which keeps the mixture uniform), a discriminator trained to tell
the data from the current mixture G_{t-1} gives h(X_i) = dP_{G_{t-1}} / dP_data at every
training row (exp(-logit)), and the rows are reweighted by

    W_t(X_i) = (1 / (N beta_t)) * max(lambda* - (1 - beta_t) h(X_i), 0),

lambda* chosen so the weights sum to 1: rows the mixture already covers well get weight 0,
the ones it misses get more. Component t is a GAN trained on minibatches drawn with those
weights, and the model becomes G_t = (1 - beta_t) G_{t-1} + beta_t G_t^c.

Each component is the plain GAN (MLP G and D, non-saturating loss, Adam, beta1 0.5);
`--epochs` counts epochs per component, so a run trains T x epochs. After the last one, the
mixture discriminator is trained against the final mixture and exported as `discriminator`
(for `--refine`). Exported: `generator_0` .. `generator_{T-1}` plus the weights, served by
the `mixture` sampler (each sample's component drawn from the seeded Generator).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from gen.runtime.manifest import DataSpec, MixtureSampler

from ..graphs import GraphDef, Method, Port, data_port
from ..options import Interval, option
from ..registry import Family, Preset, register
from .adversarial import (Adversarial, MLPBody, discriminator_loss, hidden_option, latent_option, low_dim_steps,
                          resolve_latent, variant_words)
from .base import mlp
from .gan import Trainer as GANTrainer


LATENT = 32


@dataclass
class Options:
    components: int = option(5, "Mixture components T, trained one after another.", Interval(int, 1, None))
    hidden: list[int] = hidden_option((256, 256))
    latent_dim: int = latent_option(LATENT)
    beta: float = option(0.0, "Mixture weight beta_t of each new component (0: 1/t, a uniform mixture).",
                         Interval(float, 0, 1, "left"))
    reweight_epochs: int = option(3, "Epochs of the discriminator between the data and the current "
                                  "mixture, before each reweighting and at the end.", Interval(int, 1, None))
    lr: float = option(1e-3, "Adam learning rate of each component's G and D, and of the mixture "
                       "discriminator (betas 0.5, 0.999).", Interval(float, 0, None, "neither"))
    pack: int = option(1, "PacGAN (Lin et al. 2018) within each component: its discriminator judges packs of this "
                       "many rows at once, real with real and generated with generated; 1: unpacked. The "
                       "mixture discriminator (reweighting, --refine) stays per row.", Interval(int, 1, None))


def adagan_weights(h: np.ndarray, beta: float) -> np.ndarray:
    """The paper's optimal training weights for the next component: (1 / (N beta)) *
    max(lambda* - (1 - beta) h_i, 0), with lambda* found by bisection so they sum to 1."""
    h = np.asarray(h, dtype=np.float64)
    n = len(h)
    if not 0.0 < beta <= 1.0:
        raise ValueError(f"beta must be in (0, 1], got {beta}")

    def total(lam: float) -> float:
        return float(np.maximum(lam - (1.0 - beta) * h, 0.0).sum() / (n * beta))

    low, high = 0.0, (1.0 - beta) * float(h.max()) + beta  # total(high) >= 1
    for _ in range(200):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if total(mid) < 1.0 else (low, mid)
    w = np.maximum(high - (1.0 - beta) * h, 0.0) / (n * beta)
    return w / w.sum()


def min_steps(o: Options, data: DataSpec) -> int | None:
    """On rows of a few values, the GAN families' generator steps (low_dim_steps) shared among the
    components: `--epochs` counts epochs per component."""
    steps = low_dim_steps(o, data)
    return None if steps is None else -(-steps // o.components)


class AdaGAN(nn.Module):
    def __init__(self, shape: list[int], hidden: list[int], latent_dim: int, components: int, unit_range: bool,
                 pack: int = 1):
        super().__init__()
        self.shape, self.latent_dim = list(shape), latent_dim
        dim = int(np.prod(shape))

        def component() -> Adversarial:
            return Adversarial(shape, latent_dim,
                               mlp([latent_dim, *hidden, dim], last_act=nn.Sigmoid() if unit_range else None),
                               MLPBody(pack * dim, list(reversed(hidden))), pack)

        self.components = nn.ModuleList(component() for _ in range(components))
        self.mixture_body = MLPBody(dim, list(reversed(hidden)))
        self.mixture_head = nn.Linear(self.mixture_body.features, 1)
        self.register_buffer("weights", torch.zeros(components))

    def discriminate(self, x: torch.Tensor) -> torch.Tensor:
        """The mixture discriminator's logit: log p_data(x) / p_mixture(x) once trained."""
        return self.mixture_head(self.mixture_body(x)).squeeze(1)

    def sample_mixture(self, n: int, like: torch.Tensor, upto: int) -> torch.Tensor:
        """n rows of the mixture of the first `upto` components (their current weights)."""
        w = self.weights[:upto] / self.weights[:upto].sum()
        k = torch.multinomial(w, n, replacement=True)
        z = torch.randn(n, self.latent_dim, device=like.device)
        out = torch.empty(n, *self.shape, device=like.device)
        for c in range(upto):
            rows = (k == c).nonzero().squeeze(1)
            if len(rows):
                out[rows] = self.components[c].generate(z[rows])
        return out


class Trainer:
    """The whole sequence in `fit` (the training loop's hook for trainers that run their own
    schedule): T components, each for `epochs` epochs of weighted minibatches."""

    batches_per_step = 1

    def __init__(self, net: AdaGAN, o: Options):
        self.net, self.o = net, o
        self.optM = torch.optim.Adam([*net.mixture_body.parameters(), *net.mixture_head.parameters()],
                                     lr=o.lr, betas=(0.5, 0.999))

    def _train_mixture_discriminator(self, x: torch.Tensor, upto: int, epochs: int, batch_size: int,
                                     rng: np.random.Generator) -> float:
        net, loss = self.net, torch.zeros(())
        for _ in range(epochs):
            order = torch.from_numpy(rng.permutation(len(x))).to(x.device)
            for i in range(0, len(order), batch_size):
                real = x[order[i:i + batch_size]]
                with torch.no_grad():
                    fake = net.sample_mixture(len(real), x, upto)
                loss = discriminator_loss(net.discriminate(real), net.discriminate(fake))
                self.optM.zero_grad(set_to_none=True)
                loss.backward()
                self.optM.step()
        return float(loss.detach())

    def fit(self, x: torch.Tensor, epochs: int, batch_size: int, rng: np.random.Generator) -> list[dict]:
        net, o = self.net, self.o
        n = len(x)
        w = np.full(n, 1.0 / n)
        history = []
        for t in range(len(net.components)):
            beta = 1.0 if t == 0 else (o.beta or 1.0 / (t + 1))
            if t > 0:
                net.eval()
                with torch.no_grad():
                    logit = torch.cat([net.discriminate(x[i:i + 1024]) for i in range(0, n, 1024)])
                h = np.exp(-np.clip(logit.cpu().numpy().astype(np.float64), -30.0, 30.0))
                w = adagan_weights(h, beta)
                net.train()
            trainer = GANTrainer(net.components[t], SimpleNamespace(lr=o.lr, d_steps=1, loss="non_saturating"))
            steps = max(1, -(-n // batch_size))
            for epoch in range(1, epochs + 1):
                sums: dict[str, float] = {}
                for _ in range(steps):
                    idx = torch.from_numpy(rng.choice(n, size=min(batch_size, n), p=w)).to(x.device)
                    for key, value in trainer.step(x[idx]).items():
                        sums[key] = sums.get(key, 0.0) + value
                history.append({"component": t + 1, "component_epoch": epoch,
                                **{k: v / steps for k, v in sums.items()}})
            with torch.no_grad():
                net.weights[:t] *= 1.0 - beta
                net.weights[t] = beta
            loss_m = self._train_mixture_discriminator(x, t + 1, o.reweight_epochs, batch_size, rng)
            history[-1].update({"beta": beta, "weights_entropy": float(-(w * np.log(np.maximum(w, 1e-300))).sum()),
                                "loss_mixture_d": loss_m})
        return history


def graphs(net: AdaGAN, data: DataSpec) -> dict[str, GraphDef]:
    out = {f"generator_{k}": GraphDef(Method(c, "generate"), [Port("z", "latent", [net.latent_dim])],
                                      [data_port("x", data)])
           for k, c in enumerate(net.components)}
    out["discriminator"] = GraphDef(Method(net, "discriminate"), [data_port("x", data)], [Port("logit", "value")])
    return out


def sampler(net: AdaGAN, o: Options) -> MixtureSampler:
    weights = net.weights.detach().cpu().double().numpy()
    return MixtureSampler(graphs=[f"generator_{k}" for k in range(len(weights))],
                          weights=(weights / weights.sum()).tolist())


register(Family(
    name="adagan", description="AdaGAN: T GANs trained in sequence on reweighted data, served as a "
                               "weighted mixture; samples.",
    options=Options,
    build=lambda o, data: AdaGAN(data.shape, o.hidden, o.latent_dim, o.components, data.unit_range, o.pack),
    trainer=Trainer, graphs=graphs, capabilities=("sample",), score_kind=None, sampler=sampler,
    latent_prior="normal", discriminator=("discriminator", "logit"),
    resolve=lambda o, data: resolve_latent(o, data, LATENT), min_steps=min_steps,
    variant=lambda o: f"{o.components} components, mlp {'-'.join(map(str, o.hidden))}, "
                      f"beta {'1/t' if not o.beta else f'{o.beta:g}'}" + variant_words(o),
    test=Preset(2, {"components": 2, "hidden": [16], "latent_dim": 4, "reweight_epochs": 1}), bench=Preset(60),
))
