"""PCA as a linear network, from the lecture: a linear encoder z = W_e x + b_e and a linear
decoder x' = W_d z + b_d, with no nonlinearity anywhere.

`pca` sets the weights in closed form from the SVD of the centred fitting rows (W_e = the top
principal components, b_e = -W_e mean, W_d = W_e^T, b_d = mean); `linear-ae` learns the same
shape by gradient descent on the mean squared reconstruction error. Every global minimum of
that loss spans the principal subspace (Baldi & Hornik, 1989), though its basis inside the
subspace is arbitrary, so the learned decoder's columns span what PCA's components span.

Both work in model space (pixels scaled to [0, 1], tabular features z-scored) and score by the
per-row reconstruction error (the squared errors pooled by `pool`: their mean on tables, their
smoothed energy on images by default); the score graph also returns the per-feature
squared errors (an anomaly map). Sampling decodes codes drawn from a Gaussian fitted to the
training codes (for PCA: independent, with the explained variances).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gen.runtime.errors import ConfigError
from gen.runtime.manifest import AncestralSampler

from ..options import Interval, option
from ..registry import Family, Preset, register
from .base import (LatentScores, error_pool, fit_latent_scores, pool, pool_option, reconstruction_graphs, resolve_score,
                   score_kind, score_option)


EXPLAINED = 0.8  # the default keeps the fewest components that explain this share of the variance


@dataclass
class PCAOptions:
    latent_dim: int = option(None, "Number of principal components, at most min(fitting rows, features). "
                                   f"Default: the fewest that explain {EXPLAINED:.0%} of the fitting rows' "
                                   "variance (in model space), at most min(rows, features) - 1, so that "
                                   "some variance is left to score. A closed-form fit: epochs are ignored.",
                             Interval(int, 1, None), optional=True)
    score: str = score_option()
    pool: str = pool_option()


@dataclass
class Options:
    latent_dim: int = option(16, "Code size (a linear code layer).", Interval(int, 1, None))
    lr: float = option(1e-3, "Adam learning rate.", Interval(float, 0, None, "neither"))
    score: str = score_option()
    pool: str = pool_option()


class LinearAE(nn.Module):
    """z = x W_e^T + b_e; x' = z W_d^T + b_d, reshaped to the data's shape."""

    def __init__(self, shape: list[int], latent_dim: int, score: str = "recon", n_fit: int = 1,
                 pool: str = "mean"):
        super().__init__()
        self.error_pool = error_pool(pool, shape)
        # Only a latent score keeps buffers, so run folders from before `--score` (recon) load as they were.
        self.latent_scores = LatentScores(score, latent_dim, n_fit) if score != "recon" else None
        self.shape, self.latent_dim = list(shape), latent_dim
        features = int(np.prod(shape))
        self.encoder = nn.Linear(features, latent_dim)
        self.decoder = nn.Linear(latent_dim, features)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.flatten(1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).reshape(-1, *self.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def errors(self, x: torch.Tensor) -> torch.Tensor:
        """The squared error of every feature, in the data's shape."""
        return (self(x) - x) ** 2

    def score(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-row reconstruction error (higher = more anomalous; the squared errors pooled by
        `pool`; with a latent score, combined with the code's, see LatentScores), and the
        squared error of every feature in the data's shape."""
        errors = self.errors(x)
        recon = pool(self, errors)
        if self.latent_scores is None:
            return recon, errors
        return self.latent_scores.combine(recon, self.encode(x)), errors


class PCA(LinearAE):
    """A LinearAE whose weights come from the SVD; it also keeps the explained variances
    (float64, for the manifest's `fitted`; no graph reads them)."""

    def __init__(self, shape: list[int], latent_dim: int, score: str = "recon", n_fit: int = 1,
                 pool: str = "mean"):
        super().__init__(shape, latent_dim, score, n_fit, pool)
        self.register_buffer("explained_variance", torch.zeros(latent_dim, dtype=torch.float64))
        self.register_buffer("explained_variance_ratio", torch.zeros(latent_dim, dtype=torch.float64))


def principal_components(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(components (k, D), mean (D,), explained variance (k,), explained variance ratio (k,))
    of rows x (n, D), in float64, as scikit-learn's PCA computes them: variances with n - 1 in
    the denominator, each component's sign chosen so that its largest-magnitude entry is
    positive (so a refit gives the same weights, whatever the row order)."""
    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    if k > min(n, d):
        raise ConfigError(f"latent_dim={k}: PCA keeps at most min(fitting rows, features) = "
                          f"min({n}, {d}) = {min(n, d)} components; use latent_dim <= {min(n, d)}")
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    pivot = np.argmax(np.abs(vt), axis=1)
    vt *= np.sign(vt[np.arange(len(vt)), pivot])[:, None]
    variance = s ** 2 / max(n - 1, 1)
    total = variance.sum()
    ratio = variance / total if total > 0 else np.zeros_like(variance)
    return vt[:k], mean, variance[:k], ratio[:k]


def components_for(x: np.ndarray, share: float = EXPLAINED) -> int:
    """The default number of components for model-space rows x (n, D): the fewest whose
    explained variance reaches `share` of the total, at most min(n, D) - 1 (all of them would
    reconstruct every row exactly, leaving nothing to score) and at least 1. Measured on the
    one-class suites (bench/tabular.py, MNIST-5k, sklearn digits): 70-80% score within 0.01 of
    each other on images and best on tables, where a fixed 16 kept every component of a
    9-column table (or was refused); 90% and more let anomalies reconstruct too."""
    n, d = x.shape
    _, s, _ = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
    variance = s ** 2
    total = variance.sum()
    cap = max(1, min(n, d) - 1)
    if total <= 0:
        return 1
    k = int(np.searchsorted(np.cumsum(variance) / total, share - 1e-12) + 1)
    return int(min(max(k, 1), cap))


def fit_options(options: PCAOptions, data, x_fit: np.ndarray) -> PCAOptions:
    """latent_dim left at its default (None) -> components_for(the fitting rows)."""
    from dataclasses import replace

    if options.latent_dim is not None:
        return options
    return replace(options, latent_dim=components_for(x_fit))


class PCATrainer:
    """The closed-form fit: called once with all fitting rows, instead of any epoch."""

    batches_per_step = 1

    def __init__(self, net: PCA, options: PCAOptions):
        self.net = net

    @torch.no_grad()
    def fit(self, x: torch.Tensor, **schedule) -> dict[str, float]:
        net = self.net
        components, mean, variance, ratio = principal_components(
            x.detach().flatten(1).cpu().double().numpy(), net.latent_dim)
        for param, value in ((net.encoder.weight, components), (net.encoder.bias, -components @ mean),
                             (net.decoder.weight, components.T), (net.decoder.bias, mean)):
            param.copy_(torch.from_numpy(np.ascontiguousarray(value)))
        net.explained_variance.copy_(torch.from_numpy(variance))
        net.explained_variance_ratio.copy_(torch.from_numpy(ratio))
        recon = net(x)
        return {"loss": float(F.mse_loss(recon, x)), "explained_variance_ratio_sum": float(ratio.sum())}


class Trainer:
    """One Adam step per batch on the mean squared reconstruction error."""

    batches_per_step = 1

    def __init__(self, net: LinearAE, options: Options):
        self.net = net
        self.opt = torch.optim.Adam(net.parameters(), lr=options.lr)

    def step(self, x: torch.Tensor) -> dict[str, float]:
        self.opt.zero_grad(set_to_none=True)
        loss = F.mse_loss(self.net(x), x)
        loss.backward()
        self.opt.step()
        return {"loss": float(loss.detach())}


def fitted(net: PCA, options) -> dict:
    """PCA's facts for the manifest, in model space: components (latent_dim x features), mean,
    explained variance and its ratio to the total variance."""

    def floats(t: torch.Tensor) -> list:
        return t.detach().cpu().double().numpy().tolist()

    return {"components": floats(net.encoder.weight), "mean": floats(net.decoder.bias),
            "explained_variance": floats(net.explained_variance),
            "explained_variance_ratio": floats(net.explained_variance_ratio)}




def _family(name: str, description: str, options: type, network: type, trainer, variant: str,
            test: Preset, bench: Preset, fit=None, fit_options=None, stops_early=False,
            default_for: tuple[str, ...] = ()) -> Family:
    return register(Family(
        name=name, description=description, options=options,
        build=lambda o, data: network(data.shape, o.latent_dim, o.score, data.n_train, o.pool), trainer=trainer,
        graphs=lambda net, data: reconstruction_graphs(net, data, "score"),
        resolve=lambda o, data: resolve_score(o, data), score_kind_of=score_kind,
        fit_score=lambda net, o, x_fit, x_cal, rng: fit_latent_scores(net, x_fit, x_cal, rng),
        capabilities=("sample", "reconstruct", "encode", "score"), score_kind="reconstruction_mse",
        sampler=lambda net, o: AncestralSampler(graph="decoder"), latent_prior="gaussian",
        variant=lambda o: variant, fitted=fit, fit_options=fit_options, stops_early=stops_early,
        default_for=default_for,
        test=test, bench=bench,
    ))


_family("pca", "PCA as a linear autoencoder, in closed form from the SVD (epochs are ignored); "
        "scores by reconstruction error.", PCAOptions, PCA, PCATrainer, "closed form (SVD)",
        # bench: the default (components by explained variance, `components_for`).
        test=Preset(1, {"latent_dim": 4}), bench=Preset(None), fit=fitted, fit_options=fit_options,
        # the default for images: on MNIST-5k and sklearn digits it scores within 0.01 of the
        # best trained family at a fraction of a second per class (BENCHMARKS.md).
        default_for=("image",))
_family("linear-ae", "Linear autoencoder learned by gradient descent on MSE (spans PCA's subspace).",
        Options, LinearAE, Trainer, "learned (Adam, MSE)",
        # bench: the default budget (1000 epochs at lr 3e-3 reached PCA-16's one-class AUROC before).
        test=Preset(30, {"latent_dim": 4}), bench=Preset(None), stops_early=True)
