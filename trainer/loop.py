"""The epoch loop: a budget from the data (trainer/budget.py), one optimiser step per batch,
early stopping on held-out rows where the family stops early, per-epoch records in
metrics.jsonl; or the family's own schedule (a closed form, a sequence of components)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from gen.runtime.errors import ConfigError

from . import budget, registry
from .config import TrainConfig
from .distributed import Group, synchronise
from .progress import phase


class Batches:
    """The fitting rows of each epoch, in model space, in steps of `rows_per_step` rows: from
    rows in memory (`x_fit`; one process's share of a permutation when there are several) or
    streamed from files (`stream`, a StreamedRows, with `pre` turning raw rows into model
    space). `rows` is how many rows one process sees per epoch (for the budget). A last batch
    of one row is folded into the one before it (a batch-norm layer cannot train on one row)."""

    def __init__(self, x_fit: torch.Tensor, rows_per_step: int, group: Group, stream=None, pre=None):
        self.x_fit, self.rows_per_step, self.group, self.stream, self.pre = x_fit, rows_per_step, group, stream, pre
        total = stream.n_fit if stream is not None else len(x_fit)
        self.rows = total // group.world if group.world > 1 else total

    def starts(self, n: int) -> list[int]:
        """Where the batches of an epoch of `n` rows in memory start: every `rows_per_step`
        rows, a one-row last batch joining the one before (batch norm in training needs two rows)."""
        starts = list(range(0, n, self.rows_per_step))
        if len(starts) > 1 and n - starts[-1] == 1:
            starts.pop()
        return starts

    def steps_per_epoch(self) -> int:
        """Optimiser steps of an epoch: exact for rows in memory and for a stream read by one
        process; with several processes a stream takes whole batches of the smallest share,
        which depends on the epoch's file order, so this (every row once) is an estimate
        there, up to about a tenth high (the shares' balance, trainer/stream.py)."""
        if self.stream is not None:
            return max(1, math.ceil(self.rows / self.rows_per_step))
        return max(1, len(self.starts(self.rows)))

    def epoch(self, rng: np.random.Generator):
        if self.stream is not None:
            device = self.x_fit.device
            for raw in self.stream.epoch(rng, self.rows_per_step, self.group.rank, self.group.world):
                with torch.no_grad():  # (a yield inside the block would leave gradients off for the step)
                    rows = self.pre.to_model(torch.from_numpy(raw).to(device))
                yield rows
            return
        order = torch.from_numpy(rng.permutation(len(self.x_fit))).to(self.x_fit.device)
        if self.group.world > 1:  # this process's share, the same length in every process
            order = order[self.group.rank::self.group.world][:self.rows]
        starts = self.starts(len(order))
        for i, end in zip(starts, [*starts[1:], len(order)]):
            yield self.x_fit[order[i:end]]


def fit_epochs(cfg: TrainConfig, net, trainer, x_fit: torch.Tensor, rng: np.random.Generator, name: str,
               out: Path, validate=None, min_steps: int | None = None, stream=None, pre=None,
               group: Group = Group()) -> tuple[list[dict], float, dict]:
    """Train; (per-epoch records, seconds, how training stopped). With `validate` (the mean
    score of held-out normal rows) and a patience, training stops once it has not improved
    for that many epochs and the best epoch's weights are restored (trainer/budget.py).
    `stream`: fitting rows read from files each epoch (trainer/stream.py; `x_fit` is then a
    sample of them, for the hooks that take rows); `group`: the processes training together
    (trainer/distributed.py)."""
    parts = registry.hooks(trainer)
    rows_per_step = cfg.run.batch_size * parts.batches_per_step
    batches = Batches(x_fit, rows_per_step, group, stream, pre)
    plan = budget.plan(batches.rows, rows_per_step, cfg.run.epochs, cfg.run.patience,
                       cfg.family.stops_early and validate is not None, cfg.family.trains_by_steps, min_steps,
                       cfg.family.default_epochs, steps_per_epoch=batches.steps_per_epoch())
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
    if parts.schedule is not None:  # e.g. a learning rate that decays over the run's steps
        parts.schedule(plan.max_epochs * plan.steps_per_epoch)
    if parts.fit_start is not None:  # e.g. a DBM's greedy layer-wise pretraining, before joint training
        parts.fit_start(x_fit, cfg.run.batch_size)
    synchronise(net, trainer, group, cfg.run.seed)
    epochs = phase(f"{cfg.family.name} on {name}", plan.max_epochs, "epochs")
    with epochs as progress, open(out / "metrics.jsonl", "w") as log:
        stopper = budget.EarlyStopping(plan.patience)
        stopped = "ceiling"
        for epoch in range(1, plan.max_epochs + 1):
            net.train()
            start = time.perf_counter()
            sums: dict[str, float] = {}
            steps = 0
            for batch in batches.epoch(rng):
                try:
                    losses = trainer.step(batch)
                except RuntimeError:  # e.g. torch.bernoulli on NaN probabilities once weights blew up
                    if all(bool(torch.isfinite(p).all()) for p in net.parameters()):
                        raise
                    raise ConfigError(f"training diverged at epoch {epoch} (non-finite weights); "
                                      "try a smaller lr") from None
                for key, value in losses.items():
                    sums[key] = sums.get(key, 0.0) + value
                steps += 1
            means = group.mean({k: v / max(steps, 1) for k, v in sums.items()})
            if not all(np.isfinite(v) for v in means.values()):
                raise ConfigError(f"training diverged at epoch {epoch} (losses {means}); try a smaller lr")
            if validate is not None:
                means["val_score"] = group.broadcast_float(validate())
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
