"""The epoch loop: a budget from the data (trainer/budget.py), one optimiser step per batch,
early stopping on held-out rows where the family stops early, per-epoch records in
metrics.jsonl; or the family's own schedule (a closed form, a sequence of components)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from gen.runtime.errors import ConfigError

from . import budget, registry
from .config import TrainConfig
from .progress import phase


def fit_epochs(cfg: TrainConfig, net, trainer, x_fit: torch.Tensor, rng: np.random.Generator, name: str,
         out: Path, validate=None, min_steps: int | None = None) -> tuple[list[dict], float, dict]:
    """Train; (per-epoch records, seconds, how training stopped). With `validate` (the mean
    score of held-out normal rows) and a patience, training stops once it has not improved
    for that many epochs and the best epoch's weights are restored (trainer/budget.py)."""
    parts = registry.hooks(trainer)
    rows_per_step = cfg.run.batch_size * parts.batches_per_step
    plan = budget.plan(len(x_fit), rows_per_step, cfg.run.epochs, cfg.run.patience,
                       cfg.family.stops_early and validate is not None, cfg.family.trains_by_steps, min_steps)
    history = []
    start_all = time.perf_counter()
    if parts.fit is not None:  # its own schedule: closed form (PCA, one record) or AdaGAN's sequence
        figures = parts.fit(x_fit, epochs=plan.max_epochs, batch_size=cfg.run.batch_size, rng=rng)
        records = figures if isinstance(figures, list) else [figures]
        seconds = round(time.perf_counter() - start_all, 4)
        history = [{"epoch": i + 1, **r, **({"seconds": seconds} if i == len(records) - 1 else {})}
                   for i, r in enumerate(records)]
        bad = [r for r in history if not all(np.isfinite(v) for v in r.values() if isinstance(v, float))]
        if bad:
            raise ConfigError(f"training diverged (losses {bad[0]}); try a smaller lr")
        (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
        return history, time.perf_counter() - start_all, {"rule": "the family's own schedule",
                                                          "kept_epoch": len(history), "stopped": "done"}
    if parts.fit_start is not None:  # e.g. a DBM's greedy layer-wise pretraining, before joint training
        parts.fit_start(x_fit, cfg.run.batch_size)
    epochs = phase(f"{cfg.family.name} on {name}", plan.max_epochs, "epochs")
    with epochs as progress, open(out / "metrics.jsonl", "w") as log:
        stopper = budget.EarlyStopping(plan.patience)
        stopped = "ceiling"
        for epoch in range(1, plan.max_epochs + 1):
            net.train()
            start = time.perf_counter()
            order = torch.from_numpy(rng.permutation(len(x_fit))).to(x_fit.device)
            sums: dict[str, float] = {}
            steps = 0
            for i in range(0, len(order), rows_per_step):
                try:
                    losses = trainer.step(x_fit[order[i:i + rows_per_step]])
                except RuntimeError:  # e.g. torch.bernoulli on NaN probabilities once weights blew up
                    if all(bool(torch.isfinite(p).all()) for p in net.parameters()):
                        raise
                    raise ConfigError(f"training diverged at epoch {epoch} (non-finite weights); "
                                      "try a smaller lr") from None
                for key, value in losses.items():
                    sums[key] = sums.get(key, 0.0) + value
                steps += 1
            means = {k: v / steps for k, v in sums.items()}
            if not all(np.isfinite(v) for v in means.values()):
                raise ConfigError(f"training diverged at epoch {epoch} (losses {means}); try a smaller lr")
            if validate is not None:
                means["val_score"] = validate()
            record = {"epoch": epoch, **means, "seconds": round(time.perf_counter() - start, 4)}
            history.append(record)
            log.write(json.dumps(record) + "\n")
            progress.advance(info="  ".join(f"{k} {v:.4f}" for k, v in means.items()))
            if validate is not None and stopper.update(epoch, means["val_score"], net):
                stopped = "patience"
                break
    kept = len(history)
    if validate is not None and stopper.best_epoch:
        stopper.restore(net)
        kept = stopper.best_epoch
    return history, time.perf_counter() - start_all, {
        **plan.record(), "kept_epoch": kept, "stopped": stopped,
        **({"best_val_score": stopper.best} if validate is not None and stopper.best_epoch else {})}
