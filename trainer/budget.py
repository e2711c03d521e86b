"""How long a run trains when `--epochs` is not given: a budget that follows from the data.

Families that declare `stops_early` (their score on held-out normal rows is the loss they
minimise: the autoencoders and the VAE) train up to a ceiling of epochs set by the number of
optimiser steps an epoch makes, and stop once the mean score of the held-out validation rows
has not improved for `patience` epochs; the weights of the best epoch are restored. Families
that declare `trains_by_steps` (the RBMs: their free energy is no loss to stop on) train that
ceiling in full: 30 epochs of a 300-row class are 150 steps, and an RBM that short scored
MNIST-5k at 0.90 mean AUROC against 0.95 after 1,000 steps. Other families train
DEFAULT_EPOCHS epochs, as before. An explicit `--epochs N` trains exactly N
epochs and keeps the last, unless `--patience` is given too (then N is the ceiling).

The rule, in optimiser steps so that it holds for 300 rows and for a million:
- ceiling: max(DEFAULT_EPOCHS, enough epochs for MIN_STEPS steps) (small data is not
  under-trained), cut to MAX_STEPS steps where that is fewer (large data is not over-trained:
  a million rows at batch 64 get 4 epochs);
- patience: PATIENCE_STEPS steps' worth of epochs, at least MIN_PATIENCE epochs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

DEFAULT_EPOCHS = 30
MIN_STEPS = 1000
MAX_STEPS = 50_000
PATIENCE_STEPS = 100
MIN_PATIENCE = 5
MAX_VALIDATION_ROWS = 4096  # the validation loss is the mean over at most this many held-out rows


@dataclass(frozen=True)
class Budget:
    """The resolved schedule: at most `max_epochs`; with `patience`, stop after that many
    epochs without a better validation loss and keep the best epoch."""

    max_epochs: int
    patience: int | None
    steps_per_epoch: int
    rule: str

    def record(self) -> dict:
        return asdict(self)


def plan(n_fit: int, rows_per_step: int, epochs: int | None, patience: int | None, stops_early: bool,
         by_steps: bool = False, min_steps: int | None = None, default_epochs: int | None = None,
         steps_per_epoch: int | None = None) -> Budget:
    """The budget of a run of `n_fit` fitting rows, `rows_per_step` rows per optimiser step,
    given the run's `epochs` and `patience` options (None: not given). `by_steps`: a family that
    does not stop early but trains the steps' ceiling in full (the RBMs). `min_steps`: a family
    that, on this data, trains at least that many steps, in full (a GAN on low-dimensional rows).
    `default_epochs`: a family that does not stop early and names its own epoch count.
    `steps_per_epoch`: the steps an epoch takes, where the batching knows better than
    ceil(n_fit / rows_per_step) (the training loop folds a one-row last batch into the one
    before it)."""
    steps = steps_per_epoch or max(1, math.ceil(n_fit / max(1, rows_per_step)))
    if epochs is not None:
        return Budget(epochs, patience if stops_early else None, steps,
                      "--epochs" + (" with --patience" if patience and stops_early else ""))
    if default_epochs is not None and not stops_early:
        return Budget(default_epochs, None, steps, f"{default_epochs} epochs (this family's default)")
    if min_steps is not None and not stops_early:
        return Budget(max(DEFAULT_EPOCHS, math.ceil(min_steps / steps)), None, steps,
                      f"max({DEFAULT_EPOCHS} epochs, {min_steps} steps) (this family on rows of this size "
                      "trains its budget in full)")
    ceiling = max(DEFAULT_EPOCHS, math.ceil(MIN_STEPS / steps))
    ceiling = max(1, min(ceiling, math.ceil(MAX_STEPS / steps)))
    if not stops_early:
        if by_steps:
            return Budget(ceiling, None, steps, f"max({DEFAULT_EPOCHS} epochs, {MIN_STEPS} steps), at most "
                                                f"{MAX_STEPS} steps (this family trains its budget in full)")
        return Budget(DEFAULT_EPOCHS, None, steps, f"{DEFAULT_EPOCHS} epochs (this family does not stop early)")
    wait = patience if patience is not None else max(MIN_PATIENCE, math.ceil(PATIENCE_STEPS / steps))
    return Budget(ceiling, wait, steps,
                  f"at most max({DEFAULT_EPOCHS}, {MIN_STEPS} steps) and {MAX_STEPS} steps; "
                  f"stop after {wait} epochs without a better validation loss")


class EarlyStopping:
    """Tracks the validation loss per epoch; keeps a copy of the best weights."""

    def __init__(self, patience: int | None):
        self.patience = patience
        self.best = math.inf
        self.best_epoch = 0
        self.best_state = None
        self.since = 0

    def update(self, epoch: int, loss: float, net) -> bool:
        """Record epoch `epoch`'s validation loss; True when training should stop."""
        if loss < self.best:
            self.best, self.best_epoch, self.since = loss, epoch, 0
            self.best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            self.since += 1
        return self.patience is not None and self.since >= self.patience

    def restore(self, net) -> None:
        """Load the best epoch's weights back into `net` (nothing when no epoch was tracked)."""
        if self.best_state is not None:
            net.load_state_dict(self.best_state)
