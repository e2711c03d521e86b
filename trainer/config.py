"""Training configuration: the run's options (shared by every family) plus the chosen
family's own options, from the command line and/or YAML, in one flat namespace of keys.

Validation happens once, here: unknown keys, options that do not apply to the chosen
family, and values outside their declared constraint are refused with one line naming the
key, the value and what was expected. `config.yaml` in a run folder records every option
with the value actually used (defaults and `auto` choices resolved).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from gen.runtime.errors import ConfigError, InputError

from . import options as opts
from . import registry
from .options import Choice, Flag, Interval, Text, option


@dataclass
class RunOptions:
    """Options of every training run, whatever the family."""

    model: str = option("auto", "Model family (see `gen models`); auto: the default family for the data's kind "
                        "(images: pca, tables and 2-D points: ae, ratings: autorec; marked in `gen models`).", Text())
    data: str = option("digits", "digits, ring8, grid25, lowrank (synthetic ratings), a path (MNIST IDX, .npy, .csv, .parquet, ratings: u.data, ratings.dat, ratings.csv, a user,item,rating CSV), or a folder or glob of .csv/.npy/.parquet files (streamed).", Text())
    out: str = option("runs/run", "Run folder to write.", Text())
    epochs: int = option(None, "Passes over the training rows. Default: a budget from the data (trainer/budget.py): "
                         "autoencoders and VAEs train up to a ceiling set by the number of optimiser steps and "
                         "stop early on held-out rows, keeping the best epoch; rbm trains that ceiling; gan on "
                         "points 30,000 steps, keeping its best epoch; autorec 60, glocal-k 120 (fine-tuning "
                         "rounds); other families 30 epochs. Given, exactly this many (the ceiling, with "
                         "--patience).", Interval(int, 1, None), optional=True)
    patience: int = option(None, "Stop after this many epochs without a better validation score and keep the best "
                           "epoch (families that stop early; default with no --epochs: from the data).",
                           Interval(int, 1, None), optional=True)
    seed: int = option(0, "Seed for splits, initialisation, batches and previews.", Interval(int, 0, 2**63 - 1))
    device: str = option("auto", "Training device: auto takes CUDA when torch sees it.", Choice("auto", "cpu", "cuda"))
    batch_size: int = option(64, "Rows per step.", Interval(int, 1, None))
    normal_class: int = option(None, "Train on rows of this label only; report one-class AUROC.",
                               Interval(int, None, None), optional=True)
    label_column: str = option(None, "Label column of a CSV/Parquet file (kept out of the features).",
                               Text(), optional=True)
    contamination: float = option(0.01, "Expected anomaly share: the threshold is the (1 - c) quantile of "
                                  "held-out normal scores.", Interval(float, 0, 0.5, "neither"))
    calibration_fraction: float = option(0.1, "Share of training rows held out to calibrate the threshold "
                                         "(at least min(200, 25%) of them).", Interval(float, 0, 0.5, "neither"))
    discriminator_epochs: int = option(10, "GAN families: epochs the discriminator (or critic) trains on with "
                                       "the generator frozen before it is calibrated for --refine (0: as trained).",
                                       Interval(int, 0, None))
    threads: int = option(None, "CPU threads of torch, and of numpy's BLAS while log Z is estimated (default: their "
                          "own choice).", Interval(int, 1, None), optional=True)
    stream: bool = option(False, "Read the training rows from the file in chunks each epoch, never all at once "
                          "(a folder or glob of files always streams; trainer/stream.py).", Flag())
    nproc: int = option(1, "Data-parallel processes: N processes on this machine (torchrun), or N Ray Train "
                        "workers with --engine ray; each trains on its share of the rows, rank 0 writes the run.",
                        Interval(int, 1, None))
    engine: str = option("local", "Where the processes run: local (this machine, torchrun) or ray (Ray Train's "
                         "TorchTrainer on the cluster of --address, or a local one).", Choice("local", "ray"))
    address: str = option(None, "--engine ray: the Ray cluster to join (auto, HOST:PORT, ray://HOST:PORT); "
                          "default: a local one started for the run.", Text(), optional=True)
    quiet: bool = option(False, "No progress bars.", Flag())


RUN_KEYS = tuple(f.name for f in dataclasses.fields(RunOptions))
# Run options that only mean something for some families: what they need, and why not otherwise.
SCORING_KEYS = ("contamination", "calibration_fraction", "discriminator_epochs", "patience")


def applies(key: str, family: registry.Family) -> str | None:
    """None when run option `key` applies to `family`, else the reason it does not."""
    if key == "contamination" and family.score_kind is None:
        return "it has no anomaly score to calibrate"
    if key == "calibration_fraction" and family.score_kind is None and family.discriminator is None:
        return "it has no anomaly score or discriminator to calibrate"
    if key == "discriminator_epochs" and family.discriminator is None:
        return "it has no discriminator"
    if key == "patience" and not family.stops_early:
        return "it trains a fixed number of epochs, with no validation score to stop on"
    return None


@dataclass
class TrainConfig:
    """A validated configuration: the run's options, the family, and its options."""

    run: RunOptions
    family: registry.Family
    options: Any
    chosen: str | None = None  # with model auto: which family was chosen and why (one line)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = "option") -> "TrainConfig":
        """Validate a flat mapping of keys (run options and the family's options)."""
        raw = {str(k).replace("-", "_"): v for k, v in raw.items()}
        model = raw.get("model", RunOptions.model)
        if not isinstance(model, str):
            raise ConfigError(f"{where} model={model!r}: expected a family name (see `gen models`)")
        chosen = None
        if model == "auto":
            from .data import data_kind

            kind = data_kind(str(raw.get("data", RunOptions.data)))
            family = registry.default_family(kind)
            chosen = f"model auto -> {family.name} (the default for {kind} data)"
            raw = {**raw, "model": family.name}
        else:
            family = registry.get(model)
        family_keys = [s.name for s in family.option_specs()]
        unknown = [k for k in raw if k not in RUN_KEYS and k not in family_keys]
        if unknown:
            raise ConfigError(_unknown_message(unknown[0], family, where)
                              + (f" ({chosen}; pass --model to choose another family)" if chosen else ""))
        for key in SCORING_KEYS:
            reason = applies(key, family)
            if key in raw and reason:
                raise ConfigError(f"{where} {key}: does not apply to family {family.name!r} ({reason})")
        run = opts.build(RunOptions, {k: v for k, v in raw.items() if k in RUN_KEYS}, where)
        options = opts.build(family.options, {k: v for k, v in raw.items() if k in family_keys}, where)
        return cls(run, family, options, chosen)

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> "TrainConfig":
        """Read a YAML config (same keys as the flags); `overrides` (the flags) win."""
        return cls.from_dict({**read_yaml(path), **(overrides or {})}, where=str(path))

    @classmethod
    def make(cls, **raw: Any) -> "TrainConfig":
        """Keyword form for the Python API and tests: TrainConfig.make(model="vae", epochs=5)."""
        return cls.from_dict(raw)

    def to_dict(self) -> dict[str, Any]:
        """Every key with the value in use: run options (without the calibration ones for a
        family that has no score), then the family's options."""
        run = dataclasses.asdict(self.run)
        run = {k: v for k, v in run.items() if not (k in SCORING_KEYS and applies(k, self.family))}
        return {**run, **dataclasses.asdict(self.options)}

    def write_yaml(self, path: Path) -> None:
        import yaml

        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


def check_before_torch(raw: dict[str, Any], where: str = "option") -> None:
    """Refuse bad run options and a --data that cannot be read, before anything imports torch
    (seconds on a cold start): the checks that need no family. `TrainConfig.from_dict` makes
    them again, with the family's own options, once torch is there."""
    from .data import source_format

    raw = {str(k).replace("-", "_"): v for k, v in raw.items()}
    run = opts.build(RunOptions, {k: v for k, v in raw.items() if k in RUN_KEYS}, where)
    source_format(run.data, run.label_column)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file as a flat mapping (safe_load only), with one-line errors."""
    import yaml  # here, not at the top: the serving commands import this module and never read YAML

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected a mapping of keys to values")
    return {str(k).replace("-", "_"): v for k, v in raw.items()}


def _unknown_message(key: str, family: registry.Family, where: str) -> str:
    others = [f.name for f in registry.families().values() if key in {s.name for s in f.option_specs()}]
    takes = ", ".join(s.name for s in family.option_specs()) or "no options"
    if others:
        return (f"{where} {key}: does not apply to family {family.name!r} (it is an option of "
                f"{', '.join(others)}); {family.name} takes: {takes}")
    return (f"{where} {key}: unknown key; run options: {', '.join(RUN_KEYS)}; "
            f"{family.name} options: {takes}")
