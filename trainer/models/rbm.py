"""Restricted Boltzmann machines: Bernoulli (binary pixels) and Gaussian-Bernoulli (real-valued
rows), trained by contrastive divergence, CD-k, or persistent CD (PCD: the negative chains
persist across updates), with momentum and weight decay; the Bernoulli RBM's rate falls
linearly to zero over the run by default (Tieleman's PCD; `lr_decay`).

Energy (Bernoulli): E(v, h) = -b.v - c.h - v.W.h, so the free energy is
    F(v) = -b.v - sum_j softplus(c_j + (v W)_j),
p(h_j = 1 | v) = sigmoid(c_j + (v W)_j) and p(v_i = 1 | h) = sigmoid(b_i + (W h)_i).
Gaussian-Bernoulli, with per-feature sigma (1 on standardised data unless learned):
    E(v, h) = sum_i (v_i - b_i)^2 / (2 sigma_i^2) - c.h - (v / sigma).W.h,
    F(v) = sum_i (v_i - b_i)^2 / (2 sigma_i^2) - sum_j softplus(c_j + ((v / sigma) W)_j),
v | h ~ N(b + sigma * (W h), sigma^2).

The CD update is the gradient of F(v_data) - F(v_model) with v_model the end of the negative
chain (held fixed), so autograd computes it. The bundle exports `free_energy` (the anomaly
score) and `gibbs_step` (state + uniform/normal noise -> next state and the visible mean, the
noise drawn by the runtime), served by the runtime's `gibbs` sampler.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gen.runtime.errors import ConfigError
from gen.runtime.manifest import DataSpec, GibbsSampler, LogPartition, NoiseSpec, PreprocessSpec

from ..graphs import GraphDef, Method, Port, data_port
from ..options import Choice, Flag, Interval, option
from ..progress import phase
from ..protocols import likelihood
from ..registry import Family, Preset, register
from .base import LinearDecay, lr_decay_option

EXACT_UNITS = 20  # log Z by enumeration up to 2^20 states of the smaller layer; AIS beyond
BASE_ROWS = 10_000  # AIS: the base model's hidden activity is averaged over at most this many training rows


@dataclass
class Options:
    n_hidden: int = option(256, "Hidden units.", Interval(int, 1, None))
    method: str = option("pcd", "Negative phase: cd (chains start at the data) or pcd (persistent chains).",
                         Choice("cd", "pcd"))
    cd_k: int = option(1, "Gibbs steps of the negative phase per update (the k of CD-k).", Interval(int, 1, None))
    # With the linear decay, 0.1 (from a constant 0.05) on MNIST-5k, seeds 0-2: test
    # log-likelihood -107.6 against -147.5 (seed 0's AIS did not settle then), one-class
    # AUROC 0.985 against 0.981 on digits and 0.950 against 0.951 on MNIST-5k.
    lr: float = option(0.1, "SGD learning rate (its start, with lr_decay linear).",
                       Interval(float, 0, None, "neither"))
    momentum: float = option(0.5, "SGD momentum.", Interval(float, 0, 1, "left"))
    lr_decay: str = lr_decay_option("linear")
    weight_decay: float = option(1e-4, "L2 penalty on the weights (not the biases).", Interval(float, 0, None))
    binarize: str = option("threshold", "How pixels in [0, 1] become binary: threshold (in the graphs too), or "
                           "stochastic (a fresh Bernoulli draw per update; graphs take the probabilities).",
                           Choice("threshold", "stochastic"))
    threshold: float = option(0.5, "Binarisation threshold (binarize=threshold).", Interval(float, 0, 1, "neither"))
    log_z: str = option("auto", f"log Z for log-likelihoods: exact (enumeration, <= {EXACT_UNITS} units in the "
                        "smaller layer), ais (annealed importance sampling, recorded only when doubling the "
                        "schedule settles it), none; auto picks exact when it can, else none (AIS costs at least "
                        "three schedules and changes no score, threshold or AUROC).",
                        Choice("auto", "exact", "ais", "none"))
    ais_betas: int = option(14500, "AIS intermediate distributions.", Interval(int, 10, None))
    ais_chains: int = option(100, "AIS chains.", Interval(int, 2, None))
    gibbs_steps: int = option(1000, "Default Gibbs steps per chain when the bundle samples.", Interval(int, 1, None))


@dataclass
class GaussianOptions:
    n_hidden: int = option(256, "Hidden units.", Interval(int, 1, None))
    method: str = option("pcd", "Negative phase: cd or pcd.", Choice("cd", "pcd"))
    cd_k: int = option(1, "Gibbs steps of the negative phase per update.", Interval(int, 1, None))
    lr: float = option(0.01, "SGD learning rate.", Interval(float, 0, None, "neither"))
    momentum: float = option(0.5, "SGD momentum.", Interval(float, 0, 1, "left"))
    lr_decay: str = lr_decay_option("none")  # not measured on real-valued rows
    weight_decay: float = option(1e-4, "L2 penalty on the weights (not the biases).", Interval(float, 0, None))
    learn_sigma: bool = option(False, "Learn a standard deviation per feature (else 1 on standardised data).", Flag())
    log_z: str = option("auto", f"log Z: exact (enumerating <= {EXACT_UNITS} hidden units), none; auto picks exact "
                        "when it can.", Choice("auto", "exact", "none"))
    gibbs_steps: int = option(1000, "Default Gibbs steps per chain when the bundle samples.", Interval(int, 1, None))


class RBM(nn.Module):
    def __init__(self, shape: list[int], n_hidden: int, gaussian: bool = False, learn_sigma: bool = False):
        super().__init__()
        self.shape, self.n_visible, self.n_hidden = list(shape), int(np.prod(shape)), n_hidden
        self.gaussian = gaussian
        self.W = nn.Parameter(0.01 * torch.randn(self.n_visible, n_hidden))
        self.b = nn.Parameter(torch.zeros(self.n_visible))
        self.c = nn.Parameter(torch.zeros(n_hidden))
        self.log_sigma = nn.Parameter(torch.zeros(self.n_visible), requires_grad=learn_sigma)

    def _scaled(self, v: torch.Tensor) -> torch.Tensor:
        v = v.flatten(1)
        return v / self.log_sigma.exp() if self.gaussian else v

    def hidden_probs(self, v: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self._scaled(v) @ self.W + self.c)

    def visible_mean(self, h: torch.Tensor) -> torch.Tensor:
        """E[v | h], flat: Bernoulli probabilities or the Gaussian mean."""
        if self.gaussian:
            return self.b + self.log_sigma.exp() * (h @ self.W.t())
        return torch.sigmoid(h @ self.W.t() + self.b)

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """F(v) per row (higher = less likely = more anomalous)."""
        flat = v.flatten(1)
        hidden = F.softplus(self._scaled(v) @ self.W + self.c).sum(1)
        if self.gaussian:
            return (0.5 * ((flat - self.b) / self.log_sigma.exp()) ** 2).sum(1) - hidden
        return -(flat @ self.b) - hidden

    def gibbs_step(self, v: torch.Tensor, u_h: torch.Tensor, noise_v: torch.Tensor):
        """One block Gibbs step v -> h -> v' with the noise given: h_j = [u_h_j < p(h_j|v)];
        v'_i = [u_v_i < p(v_i|h)] (Bernoulli) or mean_i + sigma_i * n_v_i (Gaussian).
        Returns (v', E[v'|h]) in the data's shape; a Gaussian RBM returns v' twice, as the chain
        state and as the sample the runtime hands back (its mean would lose the noise's spread)."""
        h = (u_h < self.hidden_probs(v)).to(v.dtype)
        mean = self.visible_mean(h)
        flat_noise = noise_v.flatten(1)
        if self.gaussian:
            nxt = (mean + self.log_sigma.exp() * flat_noise).reshape(-1, *self.shape)
            return nxt, nxt, mean.reshape(-1, *self.shape)
        nxt = (flat_noise < mean).to(v.dtype)
        return nxt.reshape(-1, *self.shape), mean.reshape(-1, *self.shape)

    def numpy_params(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return tuple(p.detach().cpu().double().numpy() for p in (self.W, self.b, self.c))


class Trainer:
    """CD-k or PCD on F(v_data) - F(v_model), SGD with momentum; L2 on the weights only."""

    batches_per_step = 1

    def __init__(self, net: RBM, options):
        self.net, self.options = net, options
        self.stochastic = getattr(options, "binarize", "threshold") == "stochastic"
        params = [{"params": [net.W], "weight_decay": options.weight_decay},
                  {"params": [net.b, net.c] + ([net.log_sigma] if net.log_sigma.requires_grad else []),
                   "weight_decay": 0.0}]
        self.opt = torch.optim.SGD(params, lr=options.lr, momentum=options.momentum)
        self.chains: torch.Tensor | None = None
        self.decay = LinearDecay(self.opt, options.lr_decay == "linear")
        self.schedule = self.decay.schedule

    @torch.no_grad()
    def fit_start(self, x_fit: torch.Tensor, batch_size: int) -> None:
        """Visible biases start at the log-odds of the training marginals (Hinton's practical
        guide, section 8.1): the model starts as the base-rate model instead of 0.5 per pixel."""
        if not self.net.gaussian:
            p = x_fit.flatten(1).mean(0).clamp(1e-3, 1 - 1e-3)
            self.net.b.copy_(torch.log(p / (1 - p)))

    @torch.no_grad()
    def sample_chain(self, v: torch.Tensor, steps: int) -> torch.Tensor:
        net = self.net
        for _ in range(steps):
            h = torch.bernoulli(net.hidden_probs(v))
            mean = net.visible_mean(h)
            v = (mean + net.log_sigma.exp() * torch.randn_like(mean)) if net.gaussian else torch.bernoulli(mean)
        return v

    def step(self, x: torch.Tensor) -> dict[str, float]:
        net = self.net
        v0 = x.flatten(1)
        if self.stochastic:
            v0 = torch.bernoulli(v0)
        if self.options.method == "pcd":
            if self.chains is None:
                self.chains = torch.bernoulli(torch.full_like(v0, 0.5)) if not net.gaussian else torch.randn_like(v0)
            start = self.chains
        else:
            start = v0
        vk = self.sample_chain(start, self.options.cd_k)
        if self.options.method == "pcd":
            self.chains = vk
        loss = net.free_energy(v0).mean() - net.free_energy(vk).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.decay.step()
        with torch.no_grad():
            recon = ((net.visible_mean(net.hidden_probs(v0)) - v0) ** 2).sum(1).mean()
        return {"cd_loss": float(loss.detach()), "recon": float(recon)}


def prepare_bernoulli(options: Options, data: DataSpec, fit_rows: np.ndarray, family: str = "rbm") -> DataSpec:
    """Values in [0, 1] (pixels scaled by their known range, or any rows, e.g. a table of 0/1
    values, that already lie in [0, 1] and are taken as they are), then binarised by threshold
    inside every graph (or sampled per update during training when binarize=stochastic).
    Rows with values outside [0, 1] are refused, naming the range found."""
    if not data.unit_range:
        lo, hi = (float(fit_rows.min()), float(fit_rows.max())) if fit_rows.size else (0.0, 0.0)
        if lo < 0.0 or hi > 1.0:
            raise ConfigError(f"{family} has binary units, so it needs values in [0, 1]; {data.source} holds "
                              f"{data.kind} data with values from {lo:g} to {hi:g}: use grbm for real-valued rows")
        data = replace(data, preprocessing=PreprocessSpec(0.0, 1.0, [0.0, 1.0]))
    binarize = options.threshold if options.binarize == "threshold" else None
    return replace(data, preprocessing=replace(data.preprocessing, binarize=binarize))


def _resolve_log_z(options, enumerated: int, where: str, instead: str):
    """log_z=auto -> exact when `enumerated` units can be enumerated, else none (no log_p
    column: an AIS estimate is asked for by name); exact beyond that size is refused, naming
    `instead`."""
    if options.log_z == "auto":
        return replace(options, log_z="exact" if enumerated <= EXACT_UNITS else "none")
    if options.log_z == "exact" and enumerated > EXACT_UNITS:
        raise ConfigError(f"log_z=exact enumerates {where}, so it needs <= {EXACT_UNITS} units there, "
                          f"got {enumerated}; use log_z={instead}")
    return options


def resolve_bernoulli(options: Options, data: DataSpec) -> Options:
    """As _resolve_log_z; with stochastic binarisation the graphs take grey values, for which
    -F(x) - log Z is no log-probability, so no log Z is stored (log_z=auto -> none)."""
    if options.binarize == "stochastic":
        if options.log_z in ("exact", "ais"):
            raise ConfigError(f"log_z={options.log_z} needs binarize=threshold: with stochastic binarisation the "
                              "bundle scores grey values, which have no log-probability under a binary RBM")
        return replace(options, log_z="none")
    return _resolve_log_z(options, min(data.size, options.n_hidden), "the smaller layer", "ais")


def resolve_gaussian(options: GaussianOptions, data: DataSpec) -> GaussianOptions:
    return _resolve_log_z(options, options.n_hidden, "the hidden layer", "none")


def prepare_gaussian(options: GaussianOptions, data: DataSpec, fit_rows: np.ndarray) -> DataSpec:
    """Every feature standardised on the fitting rows (the unit-variance model assumes it)."""
    flat = fit_rows.reshape(len(fit_rows), -1).astype(np.float64)
    std = flat.std(axis=0)
    prep = PreprocessSpec(flat.mean(axis=0).tolist(), np.where(std > 1e-8, std, 1.0).tolist())
    return replace(data, preprocessing=prep)


def graphs(net: RBM, data: DataSpec) -> dict[str, GraphDef]:
    noise_v = Port("n_v", "noise", list(data.shape), "normal") if net.gaussian else \
        Port("u_v", "noise", list(data.shape), "uniform")
    return {
        "free_energy": GraphDef(Method(net, "free_energy"), [data_port("x", data)], [Port("free_energy", "value")]),
        "gibbs_step": GraphDef(Method(net, "gibbs_step"),
                               [Port("v", "state", list(data.shape)), Port("u_h", "noise", [net.n_hidden], "uniform"),
                                noise_v],
                               [Port("v_next", "state", list(data.shape)),
                                *([data_port("v_sample", data)] if net.gaussian else []), data_port("v_mean", data)]),
    }


def sampler(net: RBM, options) -> GibbsSampler:
    noise = [NoiseSpec("u_h", "uniform"), NoiseSpec("n_v", "normal") if net.gaussian else NoiseSpec("u_v", "uniform")]
    # Binary units show their probabilities (the usual picture); Gaussian ones their samples.
    return GibbsSampler(graph="gibbs_step", chain={"v": "v_next"}, noise=noise,
                        mean="v_sample" if net.gaussian else "v_mean",
                        init="normal" if net.gaussian else "bernoulli", steps=options.gibbs_steps)


def log_partition(net: RBM, options, x_fit: torch.Tensor, data: DataSpec | None = None) -> LogPartition | None:
    """log Z: exact by enumeration when the smaller layer has <= EXACT_UNITS units, else AIS
    from a factorial base model fitted to the training rows: their pixel marginals and mean
    hidden activations (Bernoulli only).

    A Gaussian RBM's density is over standardised rows z = (x - offset) / scale; given the
    DataSpec, log Z also takes the Jacobian sum_i log scale_i, so that -F - log Z is a density
    of the raw rows the bundle is served (binary pixels need no such term)."""
    W, b, c = net.numpy_params()
    if options.log_z == "none":
        return None
    if net.gaussian:
        sigma = net.log_sigma.detach().exp().double().cpu().numpy()
        value = likelihood.grbm_exact_log_partition(W, b, c, sigma)
        detail = f"enumeration of 2^{net.n_hidden} hidden states"
        if data is not None:
            scale = np.broadcast_to(np.asarray(data.preprocessing.scale, dtype=np.float64), (net.n_visible,))
            value += float(np.log(scale).sum())
            detail += "; includes sum(log scale), so log_p is a density of raw rows"
        return LogPartition(value, 0.0, "exact", detail)
    if options.log_z == "exact":
        return LogPartition(likelihood.exact_log_partition(W, b, c), 0.0, "exact",
                            f"enumeration of 2^{min(net.n_visible, net.n_hidden)} states of the smaller layer")
    marginals = x_fit.flatten(1).double().mean(0).cpu().numpy()
    # mean p(h = 1 | v) over (at most BASE_ROWS of) the training rows: the base's hidden layer
    v = x_fit[:BASE_ROWS].flatten(1).double().cpu().numpy()
    hidden = likelihood.sigmoid(v @ W + c).mean(0)

    def estimate(n_betas: int, seed: int) -> tuple[float, float]:
        with phase(f"rbm: log Z by AIS, {n_betas:,} betas", n_betas - 1, "steps") as progress:
            return likelihood.ais_log_partition(W, b, c, marginals, n_betas=n_betas, n_chains=options.ais_chains,
                                                seed=seed, dtype=np.float32, progress=progress.update,
                                                hidden_marginals=hidden)

    return ais_log_partition_checked("rbm", estimate, options, "base model: the training rows' pixel marginals "
                                     "and mean hidden activations")


def ais_log_partition_checked(family: str, estimate, options, about: str) -> LogPartition | None:
    """log Z by AIS under the convergence rule (likelihood.converged_ais: doubling the
    schedule moves it by less than a nat), or None (no log Z, so no log_p column) with a
    warning naming the estimates when the rule fails."""
    import warnings

    from gen.runtime.errors import GenWarning

    try:
        value, std, runs = likelihood.converged_ais(estimate, options.ais_betas)
    except likelihood.NotConverged as exc:
        warnings.warn(GenWarning(f"{family}: log Z is not recorded (no log_p column): {exc}; raise --ais-betas "
                                 "or --ais-chains"), stacklevel=2)
        return None
    return LogPartition(value, std, "ais", f"{likelihood.convergence_detail(runs)}, {options.ais_chains} chains, "
                                           f"{about}")


def _register(name: str, description: str, options: type, gaussian: bool, resolve, prepare,
              bench: Preset | None, by_steps: bool) -> None:
    register(Family(
        name=name, description=description, options=options,
        build=lambda o, data: RBM(data.shape, o.n_hidden, gaussian, getattr(o, "learn_sigma", False)),
        trainer=Trainer, graphs=graphs, capabilities=("sample", "score"), score_kind="free_energy",
        sampler=sampler, latent_prior=None, resolve=resolve, prepare=prepare,
        score_graph=("free_energy", "free_energy"),
        log_partition=log_partition, trains_by_steps=by_steps,
        variant=lambda o: f"{o.method}" + (f"-{o.cd_k}" if o.method == "cd" else f", k={o.cd_k}")
                          + f", {o.n_hidden} hidden",
        test=Preset(10, {"n_hidden": 8, "gibbs_steps": 20, "lr": 0.05}), bench=bench,
    ))


_register("rbm", "Bernoulli RBM (CD-k or PCD) on binarised pixels; scores by free energy, samples by Gibbs chains.",
          # bench: the defaults (log_z auto is none past enumeration, so no AIS runs)
          Options, False, resolve_bernoulli, prepare_bernoulli, Preset(None),
          # without --epochs, 1,000 optimiser steps at least (trainer/budget.py): on MNIST-5k one
          # class is ~7 steps an epoch, and 30 epochs scored 0.90 mean AUROC against 0.945
          by_steps=True)
_register("grbm", "Gaussian-Bernoulli RBM for real-valued rows (standardised); free-energy score, Gibbs sampling.",
          GaussianOptions, True, resolve_gaussian, prepare_gaussian, None, by_steps=False)  # not measured on tables
