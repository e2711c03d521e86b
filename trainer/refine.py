"""Discriminator-guided sampling's training side (`gen sample --refine drs|mh`): DRS's
fine-tuning of a copy of the discriminator against the final generator, the graphs with that
copy, and the Platt calibration of its logit on held-out real rows against generated ones."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from gen.runtime.errors import ConfigError
from gen.runtime.manifest import DataSpec, LatentSpec, RefineSpec

from . import registry
from .graphs import RawUnits
from .torch_run import TorchRunner, draw_with_torch


def tune_discriminator(family: registry.Family, net, graphs: dict, data: DataSpec, sampler, latent: LatentSpec,
                       real: np.ndarray, run, device: torch.device):
    """DRS's fine-tuning (Azadi et al. 2019, section 4): with the generator frozen, a copy of the
    network trains its discriminator (or critic) on for `run.discriminator_epochs` epochs as a
    classifier of the fitting rows against fresh generated rows (cross-entropy, Adam 1e-4,
    beta1 0.5), so it estimates the density ratio of the final generator rather than lagging
    one step behind it. The copy is what the exported discriminator graph is made from; the
    trained network (a critic stays a critic, an InfoGAN's Q head keeps its body) is left as
    it was. None when discriminator_epochs is 0."""
    import copy

    epochs = run.discriminator_epochs
    if not epochs or len(real) < 2:
        return None
    role = family.discriminator[0]
    tuned = copy.deepcopy(net).to(device)
    tuned.train()
    module = RawUnits(family.graphs(tuned, data)[role], data.preprocessing, data.shape).to(device)
    optimiser = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=1e-4, betas=(0.5, 0.999))
    rng = np.random.default_rng(run.seed + 2)
    real_t = torch.from_numpy(np.asarray(real, dtype=np.float32)).to(device)
    n, batch = len(real_t), run.batch_size
    for epoch in range(epochs):
        fake = torch.from_numpy(draw_with_torch(graphs, data, sampler, latent, n, int(rng.integers(2**31)),
                                                device)).to(device)
        order_real, order_fake = rng.permutation(n), rng.permutation(n)
        for i in range(0, n, batch):
            x_real = real_t[torch.from_numpy(order_real[i:i + batch]).to(device)]
            x_fake = fake[torch.from_numpy(order_fake[i:i + batch]).to(device)]
            logit_real, logit_fake = module(x_real).reshape(-1), module(x_fake).reshape(-1)
            loss = (F.binary_cross_entropy_with_logits(logit_real, torch.ones_like(logit_real))
                    + F.binary_cross_entropy_with_logits(logit_fake, torch.zeros_like(logit_fake)))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
    tuned.eval()
    return tuned


def with_tuned_discriminator(family: registry.Family, net, tuned, data: DataSpec) -> dict:
    """The family's graphs, the discriminator's taken from the fine-tuned copy when there is one."""
    graphs = family.graphs(net, data)
    if tuned is not None:
        role = family.discriminator[0]
        graphs[role] = family.graphs(tuned, data)[role]
    return graphs


REFINE_FAKES = 2000  # generated rows the discriminator is calibrated on (at least as many as real ones)


def calibrate_discriminator(graphs: dict, where: tuple[str, str], data: DataSpec, sampler, latent: LatentSpec,
                            real: np.ndarray, seed: int, device: torch.device) -> RefineSpec | None:
    """Platt scaling of the discriminator or critic output on held-out real rows against
    generated ones (drawn by the runtime's sampler with seed + 1), so that the calibrated
    logit estimates log p_data(x) / p_model(x) whatever the class counts (the prior log-odds
    of the counts is taken out). None without held-out rows."""
    from sklearn.linear_model import LogisticRegression

    if len(real) < 2:
        return None
    role, output = where
    n_fake = max(REFINE_FAKES, len(real))
    fake = draw_with_torch(graphs, data, sampler, latent, n_fake, seed + 1, device)
    runner = TorchRunner(graphs[role], data, device)

    def values(rows: np.ndarray) -> np.ndarray:
        return np.concatenate([runner.run({"x": rows[i:i + 1024].astype(np.float32)}, outputs=[output])[output]
                               for i in range(0, len(rows), 1024)]).astype(np.float64).ravel()

    v_real, v_fake = values(np.asarray(real)), values(fake)
    v = np.concatenate([v_real, v_fake])
    y = np.concatenate([np.ones(len(v_real)), np.zeros(len(v_fake))])
    spread = float(v.std())
    if not np.isfinite(v).all():
        raise ConfigError(f"the {role} graph returns non-finite values; training diverged (try a smaller lr)")
    if spread < 1e-12:  # a constant discriminator: no information, every ratio 1
        scale, offset = 0.0, 0.0
    else:
        fit = LogisticRegression(C=1.0, max_iter=1000).fit((v / spread)[:, None], y)
        scale = float(fit.coef_[0, 0]) / spread
        offset = float(fit.intercept_[0]) - float(np.log(len(v_real) / len(v_fake)))
    logit_real, logit_fake = scale * v_real + offset, scale * v_fake + offset
    accuracy = 0.5 * (float((logit_real > 0).mean()) + float((logit_fake <= 0).mean()))
    return RefineSpec(graph=role, output=output, scale=scale, offset=offset, max_logit=float(logit_fake.max()),
                      accuracy=accuracy, n_real=int(len(v_real)), n_fake=int(len(v_fake)))
