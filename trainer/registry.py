"""The registry of model families. Each family's module declares one `Family` and registers
it; the CLI, config validation, manifest labels, tests, demo and bench read it from here.

Adding a family is its file plus one registration line: its module name in
`gen.trainer.models.BUILTIN` (or, from another package, an entry point in the group
`gen.families` that names the module).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from gen.runtime.errors import ConfigError
from gen.runtime.manifest import VERBS, DataSpec, SamplerSpec

from . import options as opts

class Trainer(Protocol):
    """What the training loop drives: `step` on a batch of `batches_per_step * batch_size`
    model-space rows, returning the losses to log. Two optional hooks (`TrainerHooks` gives
    their defaults; `hooks(trainer)` reads a trainer's):
    - `fit_start(x_fit, batch_size)`, called once with all fitting rows before the first epoch
      (a DBM's greedy layer-wise pretraining);
    - `fit(x_fit, epochs, batch_size, rng)`, called once instead of the epoch loop, for a model
      with its own schedule: a closed form (PCA's SVD; it returns the figures to log) or a
      sequence (AdaGAN's components; it returns one record per epoch);
    - `schedule(total_steps)`, called once before the first epoch with the optimiser steps the
      run's budget will take (a learning rate that decays over the run): exact for rows in
      memory and for a stream read by one process; an estimate, up to about a tenth high,
      for a stream shared by several processes; the ceiling for a family that stops early.

    Ratings rows (families that train on ratings) hold NaN where no rating was observed."""

    batches_per_step: int

    def step(self, x) -> dict[str, float]: ...


@dataclass(frozen=True)
class TrainerHooks:
    """A trainer's optional parts, each with its default: rows per step in batches (1), a
    fit-start hook (none), its own schedule instead of the epoch loop (none), the run's total
    steps told before the first epoch (not told)."""

    batches_per_step: int = 1
    fit_start: Callable[[Any, int], None] | None = None
    fit: Callable[..., Any] | None = None
    schedule: Callable[[int], None] | None = None


def hooks(trainer: Trainer) -> TrainerHooks:
    """The optional parts `trainer` defines (see Trainer), defaults for the others."""
    return TrainerHooks(batches_per_step=int(getattr(trainer, "batches_per_step", 1)),
                        fit_start=getattr(trainer, "fit_start", None), fit=getattr(trainer, "fit", None),
                        schedule=getattr(trainer, "schedule", None))


@dataclass(frozen=True)
class Preset:
    """Settings for one use (demo, bench, the contract test): epochs, option values, and the
    data to train on (a built-in dataset, and the normal class for labelled data)."""

    epochs: int | None  # None: the run's default budget (trainer/budget.py), what `gen train` does
    options: dict[str, Any] = field(default_factory=dict)
    data: str = "digits"
    normal_class: int | None = 0


@dataclass(frozen=True)
class Family:
    """Everything gen knows about one model family.

    name, description: the registry name (`gen train --model NAME`) and one line for `gen models`.
    options: the options dataclass (fields made with `gen.trainer.options.option`).
    build(options, data): the network (an nn.Module) for a DataSpec (shape, kind, ranges).
    trainer(net, options): the training step object (see `Trainer`).
    graphs(net, data): {role: GraphDef} to export; ports named in the runtime's vocabulary
      (encoder x -> z, decoder z -> x, score x -> score, ...).
    capabilities: the runtime verbs the bundle serves (gen.runtime.manifest.VERBS).
    score_kind: what the `score` graph computes (None: no anomaly score, no calibration).
    sampler(net, options): the manifest's sampler spec for `sample` (None: cannot sample).
    latent_prior: `normal` (N(0, I)) or `gaussian` (fitted to the training codes of the
      `encoder` graph) for ancestral and mixture samplers; None otherwise.
    variant(options): a short label of the variant for the manifest and `gen info`.
    resolve(options, data): options with data-dependent choices (`auto`) resolved, so that
      config.yaml and the manifest record what actually ran. Raises ConfigError for options
      that do not fit the data.
    prepare(options, data, fit_rows): the DataSpec the family trains and serves on, when it
      needs other preprocessing than the default (binarised pixels for a Bernoulli RBM,
      standardised features for a Gaussian one); fit_rows are the raw fitting rows.
    fit_options(options, data, x_fit): options whose default follows from the fitting rows
      themselves (x_fit: model-space rows, numpy float64, flattened), such as PCA's number of
      components by explained variance; called after `resolve` and `prepare`, before `build`.
    fit_score(net, options, x_fit, x_cal, rng): fills what the score graph keeps besides the
      weights (a memory bank of training codes, scales from held-out rows) after training;
      returns the facts for the manifest's `fitted`.
    score_kind_of(options): the score kind when an option chooses it (else `score_kind`).
    default_for: the data kinds for which `gen train` without --model (model auto) picks this
      family (the one-class suites in BENCHMARKS.md chose them); at most one family per kind.
    stops_early: the mean score of held-out normal rows is the loss the family minimises, so
      without --epochs it trains on a budget from the data and stops early (trainer/budget.py).
    trains_by_steps: a family that does not stop early but, without --epochs, trains the same
      ceiling of optimiser steps as those that do (trainer/budget.py), in full.
    min_steps(options, data): the optimiser steps a family that does not stop early trains at
      least, without --epochs, on this data (None: the budget above); e.g. a GAN on
      low-dimensional rows, which 30 epochs leave far from covering their modes.
    keep_best(net, options, data, x_val, seed): for a family that does not stop early, a
      validation loss (a function of no argument, lower is better) on the held-out rows x_val
      (model space) that picks the epoch kept when it trains its default budget, or None on
      data where the last epoch is kept (e.g. a GAN on points: adversarial.fidelity_check).
    default_epochs: the epochs a family that does not stop early trains without --epochs,
      where its own measurements chose a number (AutoRec, GLocal-K); None: the budget above.
    score_graph: (graph role, output name) that computes the anomaly score.
    log_partition(net, options, x_fit, data): log Z of an energy-based model (exact or
      estimated) such that -score - log Z is log p of the raw rows, stored in the manifest so
      the runtime serves log p(v); None where there is none.
    data_kinds: the data kinds (gen.runtime.manifest.DATA_KINDS) the family trains on; None:
      every kind but ratings.
    ratings_rows(options): for a family that trains on ratings, which entity is a row
      (`item` or `user`); the trainer builds the rating matrix that way round.
    discriminator: (graph role, output) of an exported discriminator or critic (x -> one
      value per row) for discriminator-guided sampling (`gen sample --refine drs|mh`); training
      calibrates it on held-out rows against generated ones and stores that in the manifest.
    fitted(net, options): closed-form facts worth reading without the graphs (PCA's
      components, mean, explained variance), stored in the manifest's `fitted`.
    demo, bench, test: presets for `gen demo`, bench/ and the common contract test (None: the
      family is not part of that use).
    """

    name: str
    description: str
    options: type
    build: Callable[[Any, DataSpec], Any]
    trainer: Callable[[Any, Any], Trainer]
    graphs: Callable[[Any, DataSpec], dict]
    capabilities: tuple[str, ...]
    score_kind: str | None
    sampler: Callable[[Any, Any], SamplerSpec] | None
    latent_prior: str | None
    variant: Callable[[Any], str]
    test: Preset
    resolve: Callable[[Any, DataSpec], Any] = lambda options, data: options  # noqa: E731
    prepare: Callable[[Any, DataSpec, Any], DataSpec] | None = None
    fit_options: Callable[[Any, DataSpec, Any], Any] | None = None
    stops_early: bool = False
    trains_by_steps: bool = False
    min_steps: Callable[[Any, DataSpec], int | None] | None = None
    default_epochs: int | None = None
    keep_best: Callable[..., Any] | None = None
    fit_score: Callable[..., dict] | None = None
    score_kind_of: Callable[[Any], str] | None = None
    default_for: tuple[str, ...] = ()
    score_graph: tuple[str, str] = ("score", "score")
    log_partition: Callable[..., Any] | None = None
    data_kinds: tuple[str, ...] | None = None
    ratings_rows: Callable[[Any], str] | None = None
    fitted: Callable[[Any, Any], dict] | None = None
    discriminator: tuple[str, str] | None = None
    demo: Preset | None = None
    bench: Preset | None = None

    def __post_init__(self):
        unknown = [v for v in self.capabilities if v not in VERBS]
        if unknown:
            raise ValueError(f"family {self.name!r}: unknown capabilities {unknown}")
        if ("score" in self.capabilities) != (self.score_kind is not None):
            raise ValueError(f"family {self.name!r}: a score kind goes with the 'score' capability")
        if ("sample" in self.capabilities) != (self.sampler is not None):
            raise ValueError(f"family {self.name!r}: a sampler goes with the 'sample' capability")
        if self.discriminator is not None and "sample" not in self.capabilities:
            raise ValueError(f"family {self.name!r}: a discriminator for refined sampling goes with 'sample'")
        if ("ratings" in (self.data_kinds or ())) != (self.ratings_rows is not None):
            raise ValueError(f"family {self.name!r}: ratings_rows goes with training on ratings data")

    def accepts(self, kind: str) -> bool:
        """Whether the family trains on data of this kind."""
        return kind in self.data_kinds if self.data_kinds is not None else kind != "ratings"

    def option_specs(self) -> list[opts.OptionSpec]:
        return opts.specs(self.options)


_FAMILIES: dict[str, Family] = {}
_ORIGIN: dict[str, str] = {}  # family name -> the module that registered it
_loaded = False


def register(family: Family) -> Family:
    """Add `family` to the registry (a second family of the same name is refused)."""
    if family.name in _FAMILIES and _FAMILIES[family.name] is not family:
        raise ValueError(f"family {family.name!r} is already registered")
    _FAMILIES[family.name] = family
    _ORIGIN[family.name] = sys._getframe(1).f_globals.get("__name__", "")
    return family


def unregister(name: str) -> None:
    """Remove a family (tests that register a throwaway family clean up with this)."""
    _FAMILIES.pop(name, None)
    _ORIGIN.pop(name, None)


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    from .models import BUILTIN

    for module in BUILTIN:
        importlib.import_module(f"gen.trainer.models.{module}")
    from importlib.metadata import entry_points  # here: 8 ms to import, and only `train`/`models` need it

    for point in entry_points(group="gen.families"):
        importlib.import_module(point.value)


def families() -> dict[str, Family]:
    """Every registered family, by name: built-in families in BUILTIN's module order (whatever
    was imported first), then the others in registration order."""
    _load()
    from .models import BUILTIN

    def key(item: tuple[int, Family]) -> tuple[int, int]:
        module = _ORIGIN.get(item[1].name, "").rsplit(".", 1)[-1]
        return (BUILTIN.index(module) if module in BUILTIN else len(BUILTIN), item[0])

    return {f.name: f for _, f in sorted(enumerate(_FAMILIES.values()), key=key)}


def names() -> list[str]:
    return list(families())


def default_family(kind: str) -> Family:
    """The family `--model auto` trains on data of `kind` (the one that declares it in
    `default_for`), or a ConfigError when no family does."""
    chosen = [f for f in families().values() if kind in f.default_for]
    if not chosen:
        raise ConfigError(f"model=auto: no default family for {kind} data; choose one with --model (see `gen models`)")
    return chosen[0]


def get(name: str) -> Family:
    """The family called `name`, or a ConfigError listing the known ones."""
    known = families()
    if name not in known:
        raise ConfigError(f"model={name!r}: expected one of {', '.join(known)} (see `gen models`)")
    return known[name]
