"""The run folder (what `gen train` writes and `gen export` reads): its file names, and
`load_run`, which rebuilds the trained network from it (weights_only=True: no pickle)."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from gen.runtime.errors import BundleError, InputError
from gen.runtime.manifest import (DataSpec, LatentSpec, MetricsSpec, RefineSpec, SamplerSpec, ScoringSpec,
                                  parse)

from .config import TrainConfig, read_yaml

CHECKPOINT = "checkpoint.pt"
RUN_INFO = "run.json"
PROBE = "probe.npy"
PREVIEW = "preview.png"
PREVIEW_N = 64
PROBE_ROWS = 32


@dataclass
class RunInfo:
    """run.json, typed: read with the manifest's own parser, so a bundle's parts come from a
    run record that was checked once, where it was read."""

    family: str
    variant: str
    capabilities: list[str]
    data: DataSpec
    sampler: SamplerSpec | None
    latent: LatentSpec | None
    scoring: ScoringSpec | None
    metrics: MetricsSpec
    fitted: dict
    refine: RefineSpec | None
    model_choice: str | None = None

    @classmethod
    def read(cls, raw: dict, where: str) -> RunInfo:
        if not isinstance(raw, dict):
            raise BundleError(f"{where}: expected a mapping")
        fitted = raw.get("fitted") or {}
        if not isinstance(fitted, dict):
            raise BundleError(f"{where}: fitted: expected a mapping")
        return cls(family=parse(str, raw["family"], where, "family"),
                   variant=parse(str, raw["variant"], where, "variant"),
                   capabilities=parse(list[str], raw["capabilities"], where, "capabilities"),
                   data=parse(DataSpec, raw["data"], where, "data"),
                   sampler=parse(SamplerSpec | None, raw.get("sampler"), where, "sampler"),
                   latent=parse(LatentSpec | None, raw.get("latent"), where, "latent"),
                   scoring=parse(ScoringSpec | None, raw.get("scoring"), where, "scoring"),
                   metrics=parse(MetricsSpec, raw["metrics"], where, "metrics"),
                   fitted=fitted, refine=parse(RefineSpec | None, raw.get("refine"), where, "refine"),
                   model_choice=raw.get("model_choice") if isinstance(raw.get("model_choice"), str) else None)


@dataclass
class LoadedRun:
    """A run folder read back: its config, run.json (`info`), the data spec the network was
    built for, the trained network, and the fine-tuned copy of a GAN's discriminator that
    refined sampling reads (None where the run has none)."""

    cfg: TrainConfig
    info: dict  # run.json as written (bench and tests read figures from it)
    data: DataSpec
    net: torch.nn.Module
    tuned: torch.nn.Module | None = None
    run: RunInfo | None = None  # the same, typed


def load_run(run_dir: str | Path) -> LoadedRun:
    """Rebuild a trained network from its run folder (weights_only=True: no pickle)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: run folder not found")
    for name in (CHECKPOINT, RUN_INFO, "config.yaml"):
        if not (run_dir / name).is_file():
            raise InputError(f"{run_dir}: not a run folder (missing {name})")
    raw = read_yaml(run_dir / "config.yaml")
    cfg = TrainConfig.from_dict(raw, where=str(run_dir / "config.yaml"))
    if hasattr(cfg.options, "score") and "score" not in raw:  # a run from before `--score`: reconstruction error
        cfg.options = replace(cfg.options, score="recon")
    if hasattr(cfg.options, "pool") and "pool" not in raw:  # a run from before `--pool`: the mean
        cfg.options = replace(cfg.options, pool="mean")
    if hasattr(cfg.options, "average") and "average" not in raw:  # a GAN from before `--average`: none
        cfg.options = replace(cfg.options, average=0.0)
    if hasattr(cfg.options, "pack") and "pack" not in raw:  # a GAN from before `--pack`: unpacked
        cfg.options = replace(cfg.options, pack=1)
    if getattr(cfg.options, "augment", "") is None:  # an InfoGAN from before `--augment`: Q read images as drawn
        cfg.options = replace(cfg.options, augment="none")
    if getattr(cfg.options, "lr_decay", "") is None:  # a GAN from before its `--lr-decay`: a constant rate
        cfg.options = replace(cfg.options, lr_decay="none")
    try:
        info = json.loads((run_dir / RUN_INFO).read_text())
        run = RunInfo.read(info, str(run_dir / RUN_INFO))
        data = run.data
    except (json.JSONDecodeError, KeyError, TypeError, BundleError) as exc:
        raise InputError(f"{run_dir / RUN_INFO}: not a run description of this gen ({exc})") from None
    net, tuned = cfg.family.build(cfg.options, data), None
    try:
        state = torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=True)
        net.load_state_dict(state["state_dict"])
        if "discriminator_state_dict" in state and cfg.family.discriminator is not None:
            tuned = cfg.family.build(cfg.options, data)
            tuned.load_state_dict(state["discriminator_state_dict"])
            tuned.eval()
    except Exception as exc:  # torch raises many types for a damaged or foreign checkpoint
        raise InputError(f"{run_dir / CHECKPOINT}: cannot load the checkpoint "
                         f"({str(exc).splitlines()[0]})") from None
    return LoadedRun(cfg, info, data, net.eval(), tuned, run)


def run_summary(run_dir: str | Path, seconds: float | None = None) -> tuple[dict, list[str]]:
    """What `gen train` reports for a finished run folder: the JSON summary (run, config,
    metrics, seconds, model_choice) and its lines of text (the family chosen under model auto,
    the run folder and time, the budget's stop, the one-class AUROC or the completion RMSE).
    `seconds`: the whole run's wall time where the caller measured it."""
    run_dir = Path(run_dir)
    info = json.loads((run_dir / RUN_INFO).read_text())
    config = read_yaml(run_dir / "config.yaml")
    metrics = info["metrics"]
    evaluation = metrics.get("evaluation") or {}
    took = f"in {seconds:.1f} s, " if seconds is not None else ""
    lines = [f"run folder: {run_dir} ({info['family']}, {info['variant']}; trained on {metrics['device']} "
             f"{took}{metrics['train_seconds']:.1f} s {'of it ' if took else ''}fitting)"]
    if info.get("model_choice"):
        lines.insert(0, info["model_choice"])
    stopping = metrics.get("stopping") or {}
    if stopping.get("stopped") in ("patience", "ceiling") and stopping.get("patience"):
        lines.append(f"budget: kept epoch {stopping['kept_epoch']} of {metrics['epochs']} trained "
                     f"(ceiling {stopping['max_epochs']}, stopped by {stopping['stopped']}; see run.json "
                     "metrics.stopping)")
    if "auroc" in evaluation:
        lines.append(f"one-class AUROC (normal class {config.get('normal_class')}): {evaluation['auroc']:.4f}")
    if "rmse" in evaluation:
        lines.append(f"held-out test ratings ({evaluation['n_test']:,}): RMSE {evaluation['rmse']:.4f}, "
                     f"MAE {evaluation['mae']:.4f} (RMSE of the global mean {evaluation['rmse_global_mean']:.4f}, "
                     f"of the user/item bias baseline {evaluation['rmse_bias_baseline']:.4f})")
    summary = {"run": str(run_dir), "config": config, "metrics": metrics,
               "seconds": None if seconds is None else round(seconds, 3), "model_choice": info.get("model_choice")}
    return summary, lines
