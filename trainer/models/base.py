"""Building blocks shared by the family modules."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch import nn

from gen.runtime.errors import ConfigError
from gen.runtime.manifest import DataSpec

from ..graphs import GraphDef, Method, Port, data_port
from ..options import Choice, option


def mlp(sizes: list[int], act: type[nn.Module] = nn.ReLU, last_act: nn.Module | None = None) -> nn.Sequential:
    """Linear layers of `sizes` with `act` between them and `last_act` (if any) at the end."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(act())
    if last_act is not None:
        layers.append(last_act)
    return nn.Sequential(*layers)


class LinearDecay:
    """A learning rate that falls linearly from the optimiser's own to zero over the run's
    optimiser steps (Tieleman's PCD; Salakhutdinov and Hinton's DBM "gradually decreased to
    0"): a persistent chain then follows a model that has stopped moving, so the last updates
    are the model's own gradient instead of the noise of a fast-moving one. The training loop
    tells the run's steps through the trainer's `schedule` hook (trainer/registry.py); until
    then, and when `on` is false, the rate stays as it is."""

    def __init__(self, opt: torch.optim.Optimizer, on: bool):
        self.opt, self.on = opt, on
        self.base = [group["lr"] for group in opt.param_groups]
        self.total: int | None = None
        self.taken = 0

    def schedule(self, total_steps: int) -> None:
        self.total = max(1, int(total_steps))

    def step(self) -> None:
        """Sets the rate of this step, then steps the optimiser."""
        if self.on and self.total is not None:
            left = max(0.0, 1.0 - self.taken / self.total)
            for group, base in zip(self.opt.param_groups, self.base):
                group["lr"] = base * left
        self.opt.step()
        self.taken += 1


def lr_decay_option(default: str = "linear"):
    return option(default, "Learning-rate schedule: linear (from lr down to zero over the run's steps, as "
                  "Tieleman's PCD and Salakhutdinov and Hinton's DBM) or none (constant).", Choice("linear", "none"))


def resolve_by_range(options, data: DataSpec, name: str, unit_value: str, other_value: str):
    """Option `name` = auto -> `unit_value` for data in [0, 1] (BCE, a Bernoulli decoder),
    else `other_value`; `unit_value` asked for on other data is refused."""
    value = getattr(options, name)
    if value == unit_value and not data.unit_range:
        raise ConfigError(f"{name}={unit_value} needs data scaled to [0, 1] (image data); use {name}={other_value}")
    if value == "auto":
        return replace(options, **{name: unit_value if data.unit_range else other_value})
    return options


class Reconstruction:
    """Scoring by reconstruction error, for networks with `encode`, `decode` and `shape` (the
    data's row shape): the score graph returns the row score and the per-feature errors it
    averages (anomaly maps)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def errors(self, x: torch.Tensor) -> torch.Tensor:
        """Squared reconstruction error per feature, in the data's shape. Written d * d: exported
        as one Mul, which onnxruntime's CPU provider runs about 3% faster end to end than the
        Pow that `** 2` exports to (MNIST autoencoder, batch 4,096), with identical values."""
        d = self(x) - x.reshape(-1, *self.shape)
        return d * d

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction error per row (higher = more anomalous): the per-feature squared
        errors pooled by `pool` (their mean, or their smoothed energy on images)."""
        return pool(self, self.errors(x))

    def score_and_errors(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The score graph: the row score and the per-feature errors (pooled by `pool`, they
        are the reconstruction error; a network with `latent_scores` combines it with its code's
        scores, see LatentScores)."""
        errors = self.errors(x)
        recon = pool(self, errors)
        latent = getattr(self, "latent_scores", None)
        if latent is None or latent.mode == "recon":
            return recon, errors
        return latent.combine(recon, code(self, x)), errors


def reconstruction_graphs(net, data: DataSpec, score: str = "score_and_errors") -> dict[str, GraphDef]:
    """encoder x -> z, decoder z -> x, and score x -> (score, errors): the graphs of every
    reconstruction family; `score` names the method returning the row score and the
    per-feature errors."""
    z = Port("z", "latent", [net.latent_dim])
    return {
        "encoder": GraphDef(Method(net, "encode"), [data_port("x", data)], [z]),
        "decoder": GraphDef(Method(net, "decode"), [z], [data_port("x", data)]),
        "score": GraphDef(Method(net, score), [data_port("x", data)],
                          [Port("score", "value"), Port("errors", "value", list(data.shape))]),
    }


SCORES = ("recon", "latent-knn", "mahalanobis", "combined")
SCORE_HELP = ("Anomaly score: recon (the family's own: the reconstruction error, pooled as --pool says where "
              "the family has it; a VAE's negative ELBO), latent-knn (mean distance of the code to its k nearest training codes, a memory bank "
              "inside the score graph), mahalanobis (of the code, under a Gaussian fitted to the training "
              "codes), combined (the own score plus latent k-NN distance, each scaled by its median and "
              "interquartile range on held-out normal rows); auto: combined for tables, recon for images and "
              "points (chosen by the one-class suites in BENCHMARKS.md).")
BANK_ROWS = 2048  # training codes kept in the memory bank at most (a seeded sample of the fitting rows)
KNN_K = 5


def resolve_score(options, data: DataSpec):
    """score=auto -> combined for tabular data, recon otherwise; and pool (where the family has it)."""
    if hasattr(options, "pool"):
        options = resolve_pool(options, data)
    if options.score == "auto":
        return replace(options, score="combined" if data.kind == "tabular" else "recon")
    return options


def score_option():
    """The `score` option of every family with an encoder (a field for its options dataclass)."""
    from ..options import Choice, option

    return option("auto", SCORE_HELP, Choice("auto", *SCORES))


def score_kind(options, own: str = "reconstruction_mse") -> str:
    """The manifest's score kind for a family with a `score` option whose own score (what
    score=recon means: reconstruction error, a VAE's negative ELBO) is of kind `own`."""
    if own == "reconstruction_mse" and getattr(options, "pool", "mean") == "smooth":
        own = "reconstruction_smoothed_rms"
    combined = "reconstruction_plus_latent_knn" if own == "reconstruction_mse" else f"{own}_plus_latent_knn"
    return {"recon": own, "latent-knn": "latent_knn_distance", "mahalanobis": "latent_mahalanobis",
            "combined": combined}[options.score]


def code(net, x: torch.Tensor) -> torch.Tensor:
    """The code of rows x: what `encode` returns, or its first part (a VAE's posterior mean)."""
    z = net.encode(x)
    return z[0] if isinstance(z, tuple) else z


def own_score(net, x: torch.Tensor) -> torch.Tensor:
    """The family's own row score (score=recon): `net.own_score` where the network defines it,
    else its per-feature reconstruction errors pooled by `pool`."""
    if hasattr(net, "own_score"):
        return net.own_score(x)
    return pool(net, net.errors(x))


POOLS = ("mean", "smooth")
POOL_HELP = ("How a row's per-feature squared reconstruction errors become its reconstruction score: mean "
             "(their mean, the MSE), smooth (images: the root mean square of the error map after a Gaussian "
             "blur of max(1, shorter side / 16) pixels, zero beyond the border, so that errors which cluster, "
             "as a missing or extra stroke does, count more than the same error scattered); auto: smooth for "
             "images, mean otherwise (chosen by the one-class suites in BENCHMARKS.md).")
SMOOTH_SIDES = 16  # the blur's standard deviation is the image's shorter side over this, at least one pixel
SMOOTH_TRUNCATE = 2.0  # the kernel reaches this many standard deviations (as scipy's truncate)


def pool_option():
    """The `pool` option of every family scored by reconstruction error (a field for its options dataclass)."""
    from ..options import Choice, option

    return option("auto", POOL_HELP, Choice("auto", *POOLS))


def is_image(data: DataSpec) -> bool:
    """Rows that are (C, H, W) images: what convolutions, smooth pooling and moved copies need."""
    return data.kind == "image" and len(data.shape) == 3


def resolve_pool(options, data: DataSpec):
    """pool=auto -> smooth for (C, H, W) images, mean otherwise; smooth on other rows is refused."""
    images = is_image(data)
    if options.pool == "smooth" and not images:
        raise ConfigError(f"pool=smooth needs (C, H, W) images; these rows have shape {list(data.shape)} "
                          "(use pool=mean)")
    if options.pool == "auto":
        return replace(options, pool="smooth" if images else "mean")
    return options


def smoothing_sigma(shape) -> float:
    """The blur of pool=smooth for images of `shape` (C, H, W), in pixels."""
    return max(1.0, min(int(shape[-2]), int(shape[-1])) / SMOOTH_SIDES)


class SmoothedEnergy(nn.Module):
    """sqrt(mean((G * e)^2)) of a row's error map e (C, H, W), G a Gaussian of
    `smoothing_sigma(shape)` pixels applied to each channel with zero beyond the border. The
    blur is separable, so it is two products with fixed banded matrices, e @ B_w then (the map
    transposed, which leaves its energy unchanged) @ B_h: two MatMul nodes in the exported
    score graph (onnxruntime's Conv kept memory per run and grew with the file's length). The
    matrices are rebuilt from the shape, not kept in checkpoints."""

    def __init__(self, shape):
        super().__init__()
        self.shape = [int(s) for s in shape]
        sigma = smoothing_sigma(shape)
        radius = int(SMOOTH_TRUNCATE * sigma + 0.5)
        taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
        taps /= taps.sum()

        def banded(n: int) -> torch.Tensor:
            """(n, n) with [i, j] = taps[j - i + radius]: x @ banded blurs x's last axis."""
            m = np.zeros((n, n))
            for i in range(n):
                for j in range(max(0, i - radius), min(n, i + radius + 1)):
                    m[i, j] = taps[j - i + radius]
            return torch.tensor(m.T, dtype=torch.float32)

        self.register_buffer("along_w", banded(self.shape[-1]), persistent=False)
        self.register_buffer("along_h", banded(self.shape[-2]), persistent=False)

    def forward(self, errors: torch.Tensor) -> torch.Tensor:
        n = errors.shape[0]
        h, w = self.shape[-2:]
        b = errors.reshape(-1, h, w) @ self.along_w  # blurred along the width
        b = b.transpose(1, 2) @ self.along_h  # then along the height, in (W, H) layout
        return torch.sqrt((b * b).reshape(n, -1).mean(dim=1))


def error_pool(pool_name: str, shape) -> SmoothedEnergy | None:
    """The module a network keeps as `error_pool` for option pool (None: the mean)."""
    return SmoothedEnergy(shape) if pool_name == "smooth" else None


def pool(net, errors: torch.Tensor) -> torch.Tensor:
    """The reconstruction score of per-feature squared errors (n, *shape): `net.error_pool`
    where the network keeps one (pool=smooth), else their mean."""
    smooth = getattr(net, "error_pool", None)
    return errors.flatten(1).mean(dim=1) if smooth is None else smooth(errors)


class LatentScores(nn.Module):
    """Scores of the code z = encode(x), kept inside the score graph as constants: a memory
    bank of training codes (distance to the k nearest, TopK in the graph), a Gaussian of the
    codes (Mahalanobis distance) and the robust scales that put reconstruction error and k-NN
    distance on one footing. Sized from the data spec at build time (bank rows = min(BANK_ROWS,
    fitting rows)), so a checkpoint loads into the same shapes; filled by `fit_latent_scores`
    after training. Until then (and for score=recon) the score is the reconstruction error."""

    def __init__(self, mode: str, latent_dim: int, n_fit: int):
        super().__init__()
        self.mode = mode
        rows = max(1, min(BANK_ROWS, int(n_fit or 1))) if mode in ("latent-knn", "combined") else 1
        self.k = min(KNN_K, rows)
        # The bank is kept centred on its mean (bank_mean), and codes are centred the same way
        # before |z|^2 - 2 z.b + |b|^2: without it near-identical codes lose their distances to
        # float32 cancellation.
        self.register_buffer("bank", torch.zeros(rows, latent_dim))
        self.register_buffer("bank_mean", torch.zeros(latent_dim))
        self.register_buffer("bank_sq", torch.zeros(rows))
        self.register_buffer("code_mean", torch.zeros(latent_dim))
        self.register_buffer("code_precision", torch.eye(latent_dim))
        self.register_buffer("scales", torch.tensor([0.0, 1.0, 0.0, 1.0]))  # recon centre, scale; knn centre, scale
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        # A plain attribute mirrors the buffer, so that export traces one branch (torch.export
        # cannot branch on a tensor's value); a loaded checkpoint sets it from the buffer.
        self.active = False
        self.register_load_state_dict_post_hook(lambda module, keys: setattr(module, "active", bool(module.fitted)))

    def knn(self, z: torch.Tensor) -> torch.Tensor:
        """Mean Euclidean distance of each code to its k nearest bank codes: found by the
        expanded form (one MatMul), then measured as |z - b| on those k alone. The expanded
        form's rounding (~1e-7 of |z|^2 + |b|^2) would reach the distance through a square root
        where rows repeat (a code on a bank code): sqrt(1e-6) is 1e-3, and torch and
        onnxruntime round differently."""
        z = z - self.bank_mean
        d2 = (z * z).sum(dim=1, keepdim=True) - 2.0 * (z @ self.bank.t()) + self.bank_sq.unsqueeze(0)
        nearest = torch.topk(d2, self.k, dim=1, largest=False).indices  # (n, k)
        diff = z.unsqueeze(1) - self.bank[nearest]  # (n, k, latent)
        return torch.sqrt((diff * diff).sum(dim=2)).mean(dim=1)

    def mahalanobis(self, z: torch.Tensor) -> torch.Tensor:
        d = z - self.code_mean
        return torch.sqrt(torch.clamp(((d @ self.code_precision) * d).sum(dim=1), min=0.0))

    def combine(self, recon: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The row score for this mode from the reconstruction error and the code."""
        if self.mode == "recon" or not self.active:
            return recon
        if self.mode == "latent-knn":
            return self.knn(z)
        if self.mode == "mahalanobis":
            return self.mahalanobis(z)
        s = self.scales
        return (recon - s[0]) / s[1] + (self.knn(z) - s[2]) / s[3]


RECON_SCALE_FLOOR = 1e-4  # model-space squared errors below this are float32 rounding, not signal


def _robust(values: np.ndarray, floor: float) -> tuple[float, float]:
    """(median, interquartile range) of held-out scores, the range at least `floor`: a network
    that reconstructs a one-column table exactly has errors of float32 rounding (IQR ~1e-7),
    which divided by their own spread would make the score noise (and differ between torch and
    onnxruntime by more than the export's parity tolerance)."""
    centre = float(np.median(values))
    spread = float(np.quantile(values, 0.75) - np.quantile(values, 0.25))
    return centre, max(spread, floor)


@torch.no_grad()
def fit_latent_scores(net, x_fit: torch.Tensor, x_cal: torch.Tensor, rng: np.random.Generator) -> dict:
    """Fill `net.latent_scores` after training: the memory bank (a seeded sample of the
    fitting rows' codes), the Gaussian of all their codes, and the scales of reconstruction
    error and k-NN distance on the held-out calibration rows (which then set the threshold on
    the combined score too). Returns what the manifest's `fitted` records."""
    scores: LatentScores | None = net.latent_scores
    if scores is None:
        return {}
    net.eval()
    codes = torch.cat([code(net, x_fit[i:i + 1024]) for i in range(0, len(x_fit), 1024)])  # (n_fit, latent)
    rows = len(scores.bank)
    pick = np.sort(rng.choice(len(codes), size=rows, replace=False)) if len(codes) > rows else np.arange(rows)
    bank = codes[torch.from_numpy(pick).to(codes.device)]
    centre = bank.mean(dim=0)
    bank = bank - centre
    scores.bank_mean.copy_(centre)
    scores.bank.copy_(bank)
    scores.bank_sq.copy_((bank * bank).sum(dim=1))
    c = codes.double().cpu().numpy()
    mean = c.mean(axis=0)
    cov = np.atleast_2d(np.cov(c, rowvar=False)) if len(c) > 1 else np.eye(c.shape[1])
    ridge = 1e-6 * max(float(np.trace(cov)) / len(cov), 1e-12)
    scores.code_mean.copy_(torch.from_numpy(mean))
    scores.code_precision.copy_(torch.from_numpy(np.linalg.pinv(cov + ridge * np.eye(len(cov)))))
    if len(x_cal):
        parts = [(own_score(net, x_cal[i:i + 1024]), scores.knn(code(net, x_cal[i:i + 1024])))
                 for i in range(0, len(x_cal), 1024)]  # batched: a (rows x bank) distance matrix at a time
        recon = torch.cat([p[0] for p in parts]).double().cpu().numpy()
        knn = torch.cat([p[1] for p in parts]).double().cpu().numpy()
        # Own scores are in model space (unit-variance features, pixels in [0, 1]);
        # k-NN distances in the code's own units, floored relative to their size and to the
        # codes' size (identical codes, as constant data gives, have distances of pure rounding).
        # float32 resolves a code to ~1e-7 of its size, and torch and onnxruntime round apart by
        # a few of those: a distance spread under 1% of the codes' size is rounding, not signal.
        code_size = float(np.sqrt((c ** 2).sum(axis=1).mean()))
        knn_floor = max(1e-3 * abs(float(np.median(knn))), 1e-2 * code_size, 1e-6)
        (rc, rs), (kc, ks) = _robust(recon, RECON_SCALE_FLOOR), _robust(knn, knn_floor)
        scores.scales.copy_(torch.tensor([rc, rs, kc, ks]))
    scores.fitted.fill_(True)
    scores.active = True
    return {"latent_score": scores.mode, "memory_bank_rows": rows, "knn_k": scores.k,
            "score_scales": [float(v) for v in scores.scales.tolist()]}
