"""A training run, for every family: data -> split -> fit -> calibrate -> run folder. The
parts have modules of their own: the epoch loop (loop.py), the ratings path (ratings.py), the
discriminator's tuning and calibration (refine.py), graphs run by torch (torch_run.py), the
run folder's names and `load_run` (run_folder.py).

The run folder holds everything the exporter needs and nothing the runtime loads:
checkpoint.pt (state dict, read back with weights_only=True), config.yaml (every option with
the value used), run.json (data spec, sampler and latent, calibration, metrics),
metrics.jsonl (one line per epoch), probe.npy (held-out raw rows for the export parity
check) and preview.png (64 samples drawn by the runtime's own sampler, for image and 2-D
data).
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import warnings
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from gen.runtime.errors import ConfigError, DeviceError, GenWarning, InputError
from gen.runtime.manifest import DataSpec, LatentSpec, MetricsSpec, PreprocessSpec
from gen.runtime.outputs import sample_image, save_png, staged_folder
from gen.runtime.version import gen_version

from . import budget, registry
from .config import TrainConfig
from .data import Dataset, RatingsData, load_dataset, streamed_files
from .distributed import Group, join, leave, lost_peer
from .graphs import Preprocess
from .loop import fit_epochs
from .progress import reporting, start
from .protocols.one_class import calibrate, calibration_size, one_class_auroc, protocol_split
from .ratings import completion_evaluation, ratings_rows
from .refine import calibrate_discriminator, tune_discriminator
from .run_folder import CHECKPOINT, PREVIEW, PREVIEW_N, PROBE, PROBE_ROWS, RUN_INFO
from .torch_run import batched, draw_with_torch, output

def resolve_device(device: str) -> torch.device:
    """`auto` takes CUDA when torch sees it; `cuda` without CUDA is an error, not a fallback."""
    if device == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device 'cuda' was asked for but torch sees no CUDA device; use --device cpu")
    if device in ("cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def preprocessing(data: Dataset, fit_rows: np.ndarray) -> PreprocessSpec:
    """Images to [0, 1] by their known range, tabular rows z-scored on the fitting rows, 2-D
    points left as they are."""
    if data.kind == "image":
        lo, hi = data.raw_range
        return PreprocessSpec(float(lo), float(hi - lo) if hi > lo else 1.0, [0.0, 1.0])
    if data.kind == "tabular":
        mean, std = data.moments if data.moments is not None else (fit_rows.mean(axis=0), fit_rows.std(axis=0))
        return PreprocessSpec(np.asarray(mean, np.float64).tolist(), np.where(std > 1e-8, std, 1.0).tolist())
    return PreprocessSpec()


def train(cfg: TrainConfig, group: Group | None = None) -> Path | None:
    """Train `cfg.family` on `cfg.run.data` and write the run folder `cfg.run.out`; return its path.

    The folder appears whole at the end (it is written beside it and renamed), replacing an
    earlier run folder of the same name; a failed run leaves nothing behind. Each phase (a
    family's pretraining, the epochs, log Z, calibration) shows its progress on stderr unless
    the run is quiet (gen.trainer.progress).

    In a process group (torchrun's environment, or Ray Train's workers: `group`, else joined
    here) every process trains its share of the rows and only rank 0 calibrates and writes the
    folder; the others return None.
    """
    out = Path(cfg.run.out)
    group = group if group is not None else join(resolve_device(cfg.run.device))
    if cfg.run.nproc > 1 and group.world == 1:
        raise ConfigError(f"nproc {cfg.run.nproc}: this process is not one of a group; `gen train --nproc "
                          f"{cfg.run.nproc}` (or torchrun) starts the processes (gen.fit trains in this process)")
    cfg.run.nproc = group.world  # what ran (torchrun's --nproc-per-node), in config.yaml and the manifest
    try:
        if not group.leader:
            with reporting(True), tempfile.TemporaryDirectory(prefix="gen-rank-") as scratch:
                _train_into(cfg, Path(scratch), group)
            return None
        with reporting(cfg.run.quiet), staged_folder(out, RUN_INFO, "run folder", error=InputError) as staging:
            _train_into(cfg, staging, group)
    finally:
        leave(group)
    return out


def training_rows(cfg: TrainConfig, rng: np.random.Generator):
    """(data, stream, fit, calibration, test indices) of a run on rows (not ratings): the
    file's rows and the protocol split (`split_rows`), or, for a stream (a folder, a glob,
    --stream), the rows `gen.trainer.stream.scan` holds and their indices (stream None else)."""
    run, family = cfg.run, cfg.family
    files = streamed_files(run.data, run.stream)
    if files is None:
        data = load_dataset(run.data, run.label_column, seed=run.seed)
        if isinstance(data, RatingsData):
            return data, None, None, None, None
        return (data, None, *split_rows(cfg, data, rng))
    from .stream import scan

    held_out = family.score_kind or family.discriminator
    stream = scan(files, run.data, run.seed, run.label_column, run.normal_class,
                  run.calibration_fraction if held_out else 0.0)
    data, (fit_idx, cal_idx, test_idx) = stream.dataset()
    if held_out and len(cal_idx) < 2:
        raise InputError(f"{run.data}: {len(cal_idx)} rows fell to calibration; too few rows to fit and calibrate")
    return data, stream, fit_idx, cal_idx, test_idx


def split_rows(cfg: TrainConfig, data: Dataset, rng: np.random.Generator):
    """(fit, calibration, test) row indices: the fixed protocol split, the normal class only
    when asked, and a calibration slice of the training rows when the family scores. `rng` is
    the run's Generator (default_rng(seed)) before anything else drew from it, so a benchmark
    can find the rows a run was fitted on."""
    run = cfg.run
    if len(data.x) < 2:
        raise InputError(f"{data.source}: only {len(data.x)} row; training needs at least 2 (a fifth of the "
                         "rows is held out for testing)")
    train_idx, test_idx = protocol_split(len(data.x), data.y)
    if run.normal_class is not None:
        if data.y is None:
            raise InputError(f"--normal-class {run.normal_class} needs labelled data; {data.source} has no labels")
        if run.normal_class not in set(data.y.tolist()):
            raise InputError(f"--normal-class {run.normal_class}: no such label in {data.source} "
                             f"(labels: {sorted(set(data.y.tolist()))})")
        train_idx = train_idx[data.y[train_idx] == run.normal_class]
    train_idx = rng.permutation(train_idx)
    held_out = cfg.family.score_kind or cfg.family.discriminator
    n_cal = calibration_size(len(train_idx), run.calibration_fraction) if held_out else 0
    if len(train_idx) - n_cal < 2:
        raise InputError(f"{data.source}: too few training rows ({len(train_idx)}) to fit and calibrate")
    return np.sort(train_idx[n_cal:]), np.sort(train_idx[:n_cal]), test_idx


def blas_threads(threads: int | None):
    """A context in which numpy's BLAS uses at most `threads` threads (None: its own choice).
    Several runs side by side on a small machine were 2.5-4x slower in their AIS without it."""
    if threads is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits  # scikit-learn's dependency, in the train extra

    return threadpool_limits(limits=threads, user_api="blas")


def _train_into(cfg: TrainConfig, out: Path, group: Group = Group()) -> None:
    run, family = cfg.run, cfg.family
    device = resolve_device(run.device)
    if run.threads is not None:
        torch.set_num_threads(run.threads)
    torch.manual_seed(run.seed)
    rng = np.random.default_rng(run.seed)
    data, stream, fit_idx, cal_idx, test_idx = training_rows(cfg, rng)
    if not family.accepts(data.kind):
        kinds = family.data_kinds or ("image", "tabular", "points")
        raise ConfigError(f"model {family.name} trains on {' or '.join(kinds)} data; {data.source} holds "
                          f"{data.kind} data" + ("; use a completion family (autorec)" if data.kind == "ratings" else ""))
    if isinstance(data, RatingsData):
        if run.normal_class is not None:
            raise InputError(f"--normal-class {run.normal_class}: {data.source} holds ratings, which have no labels")
        rows, spec, test = ratings_rows(cfg, data)
        fit_idx, cal_idx, test_idx = np.arange(len(rows)), np.arange(0), test
        n_fit = len(fit_idx)
        cfg.options = family.resolve(cfg.options, spec)
    else:
        rows = data.x
        n_fit = stream.n_fit if stream is not None else len(fit_idx)
        spec = DataSpec(source=data.source, kind=data.kind, shape=data.shape,
                        raw_range=list(data.raw_range) if data.raw_range else
                        [float(data.x[fit_idx].min()), float(data.x[fit_idx].max())],
                        preprocessing=preprocessing(data, data.x[fit_idx]), feature_names=data.names,
                        n_train=int(n_fit), normal_class=run.normal_class)
        cfg.options = family.resolve(cfg.options, spec)
        if family.prepare is not None:
            spec = family.prepare(cfg.options, spec, data.x[fit_idx])
    pre = Preprocess(spec.preprocessing, spec.shape).to(device)

    def model_rows(idx: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            return pre.to_model(torch.from_numpy(rows[idx]).to(device))

    x_fit = model_rows(fit_idx)
    if family.fit_options is not None and not isinstance(data, RatingsData):
        cfg.options = family.fit_options(cfg.options, spec, x_fit.flatten(1).cpu().double().numpy())
    try:
        net = family.build(cfg.options, spec).to(device)
    except (RuntimeError, MemoryError) as exc:  # e.g. torch cannot allocate a layer that large
        raise ConfigError(f"cannot build the {family.name} network with these options "
                          f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    trainer = family.trainer(net, cfg.options)
    if registry.hooks(trainer).fit is not None and (stream is not None or group.world > 1):
        raise ConfigError(f"model {family.name} fits on all its rows at once (its own schedule), in one process; "
                          f"it cannot train " + ("from a stream of files (a folder, a glob, --stream)"
                                                 if stream is not None else f"in {group.world} processes")
                          + "; use ae, vae or conv_ae, or one file in one process")
    validate = None
    # The held-out normal rows that calibrate the threshold also pick the epoch (README, "How a
    # model is trained by default"): at most MAX_VALIDATION_ROWS of them.
    val_idx = cal_idx if len(cal_idx) <= budget.MAX_VALIDATION_ROWS else np.sort(
        np.random.default_rng(run.seed + 4).choice(cal_idx, budget.MAX_VALIDATION_ROWS, replace=False))
    if family.stops_early and len(cal_idx) and (run.epochs is None or run.patience is not None):
        # Their mean score is the validation loss, and training stops once it stops improving.
        val_score = output(family.graphs(net, spec), *family.score_graph)
        x_val = model_rows(val_idx)

        def validate() -> float:
            net.eval()
            return float(batched(val_score, x_val).mean())
    elif family.keep_best is not None and len(cal_idx) and run.epochs is None:
        # The default budget in full, keeping the epoch the family's own check likes best.
        validate = family.keep_best(net, cfg.options, spec, model_rows(val_idx), run.seed + 5)

    min_steps = family.min_steps(cfg.options, spec) if family.min_steps is not None else None
    try:
        history, seconds, stopping = fit_epochs(cfg, net, trainer, x_fit, rng, Path(data.source).name, out,
                                                validate, min_steps, stream, pre, group)
    except RuntimeError as exc:  # a collective whose peer has gone: one line, not torch's traceback
        lost = lost_peer(exc, group)
        if lost is None:
            raise
        raise lost from None
    if not group.leader:  # rank 0 calibrates and writes the run folder
        return
    net.eval()
    score_fitted = {}
    if family.fit_score is not None:
        score_fitted = family.fit_score(net, cfg.options, x_fit, model_rows(cal_idx),
                                        np.random.default_rng(run.seed + 3))
    graphs = family.graphs(net, spec)
    wants_preview = family.sampler is not None and (spec.kind == "image" or spec.size == 2)
    after = start(f"{family.name}: calibration", sum([bool(family.score_kind), isinstance(data, RatingsData),
                                                      family.discriminator is not None, True, wants_preview]))

    scoring, evaluation = None, {}
    if family.score_kind:
        score = output(graphs, *family.score_graph)
        x_cal = model_rows(cal_idx)
        kind = family.score_kind_of(cfg.options) if family.score_kind_of else family.score_kind
        scoring = {"kind": kind, **calibrate(batched(score, x_cal), run.contamination),
                   "calibration": f"{len(cal_idx)} held-out normal training rows, not used for fitting",
                   "graph": family.score_graph[0], "output": family.score_graph[1]}
        if family.log_partition is not None:
            with blas_threads(run.threads):  # AIS is numpy: --threads holds for its BLAS too
                log_z = family.log_partition(net, cfg.options, x_fit, spec)
            scoring["log_partition"] = asdict(log_z) if log_z is not None else None
        if scoring["expected_false_alarm_rate"] > run.contamination:
            warnings.warn(f"only {len(cal_idx)} calibration rows: the {1 - run.contamination:.0%} threshold is "
                          f"near their maximum, so expect about {scoring['expected_false_alarm_rate']:.1%} of "
                          f"normal rows to be flagged, not {run.contamination:.1%}", GenWarning, stacklevel=2)
        test_scores = batched(score, model_rows(test_idx))
        if run.normal_class is not None:
            labels = data.y[test_idx]
            normal = labels == run.normal_class
            evaluation = {"auroc": one_class_auroc(test_scores, labels, run.normal_class),
                          "test_normal_mean_score": float(test_scores[normal].mean()),
                          "test_flag_rate_normal": float((test_scores[normal] > scoring["threshold"]).mean())}
        else:
            evaluation = {"test_mean_score": float(test_scores.mean())}
        errors = [p.name for p in graphs[family.score_graph[0]].outputs if p.name == "errors"]
        scoring["errors"] = errors[0] if errors else None
        after.advance(info="threshold, test scores")
    if isinstance(data, RatingsData):
        evaluation = completion_evaluation(graphs, spec, rows, data.table, test_idx, device)
        after.advance(info="test RMSE, MAE")

    sampler = family.sampler(net, cfg.options) if family.sampler else None
    latent = _latent(family, sampler, graphs, x_fit, net) if sampler is not None else None
    refine, tuned = None, None
    if family.discriminator is not None:
        tuned = tune_discriminator(family, net, graphs, spec, sampler, latent, data.x[fit_idx], run, device)
        if tuned is not None:
            graphs = {**graphs, family.discriminator[0]: family.graphs(tuned, spec)[family.discriminator[0]]}
        refine = calibrate_discriminator(graphs, family.discriminator, spec, sampler, latent,
                                         data.x[cal_idx], run.seed, device)
        after.advance(info="discriminator")
    metrics = MetricsSpec(epochs=len(history), stopping=stopping, n_fit=int(n_fit), n_calibration=int(len(cal_idx)),
                          n_test=int(len(test_idx)), device=str(device), train_seconds=round(seconds, 3),
                          torch_version=torch.__version__,
                          trained_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                          final={k: v for k, v in history[-1].items() if k not in ("epoch", "seconds")},
                          evaluation=evaluation)
    run_info = {"family": family.name, "variant": family.variant(cfg.options), "gen_version": gen_version(),
                "model_choice": cfg.chosen,
                "capabilities": list(family.capabilities), "data": asdict(spec),
                "sampler": asdict(sampler) if sampler else None,
                "latent": asdict(latent) if latent else None, "scoring": scoring, "metrics": asdict(metrics),
                "fitted": {**(family.fitted(net, cfg.options) if family.fitted else {}), **score_fitted},
                "refine": asdict(refine) if refine else None}

    checkpoint = {"state_dict": {k: v.cpu() for k, v in net.state_dict().items()}}
    if tuned is not None:  # the fine-tuned copy that the exported discriminator graph is made from
        checkpoint["discriminator_state_dict"] = {k: v.cpu() for k, v in tuned.state_dict().items()}
    torch.save(checkpoint, out / CHECKPOINT)
    cfg.write_yaml(out / "config.yaml")
    (out / RUN_INFO).write_text(json.dumps(run_info, indent=2) + "\n")
    if isinstance(data, RatingsData):  # rows of ratings: missing entries as the mean, the mask is drawn
        probe = np.nan_to_num(rows[:PROBE_ROWS], nan=spec.ratings.global_mean)
    else:
        probe_idx = cal_idx if len(cal_idx) else test_idx if len(test_idx) else fit_idx
        probe = data.x[probe_idx[:PROBE_ROWS]]
    np.save(out / PROBE, probe, allow_pickle=False)
    after.advance(info="run folder")
    if wants_preview:
        preview = draw_with_torch(graphs, spec, sampler, latent, PREVIEW_N, run.seed, device)
        save_png(sample_image(preview, spec), out / PREVIEW)
        after.advance(info="preview")
    after.end()


def _latent(family: registry.Family, sampler, graphs: dict, x_fit: torch.Tensor, net) -> LatentSpec | None:
    """The latent prior for ancestral/mixture samplers: its dimension from the sampler's graph,
    for a `gaussian` prior the mean and covariance of the training codes, and InfoGAN's codes
    (the network's `codes`, a list of CodeSpec)."""
    if not hasattr(sampler, "input"):
        return None
    role = sampler.graph if hasattr(sampler, "graph") else sampler.graphs[0]
    dim = next(p for p in graphs[role].inputs if p.name == sampler.input).shape[0]
    if family.latent_prior != "gaussian":
        return LatentSpec(dim=dim, prior="normal", codes=getattr(net, "codes", None))
    codes = batched(output(graphs, "encoder", "z"), x_fit)
    return LatentSpec(dim=dim, prior="gaussian", mean=codes.mean(axis=0).tolist(),
                      cov=np.atleast_2d(np.cov(codes, rowvar=False)).tolist())


