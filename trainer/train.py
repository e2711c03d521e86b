"""The training loop shared by every family: data -> split -> fit -> calibrate -> run folder.

The run folder holds everything the exporter needs and nothing the runtime loads:
checkpoint.pt (state dict, read back with weights_only=True), config.yaml (every option with
the value used), run.json (data spec, sampler and latent, calibration, metrics),
metrics.jsonl (one line per epoch), probe.npy (held-out raw rows for the export parity
check) and preview.png (64 samples drawn by the runtime's own sampler, for image and 2-D
data).
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F

from gen.runtime import samplers
from gen.runtime.errors import BundleError, ConfigError, DeviceError, GenWarning, InputError
from gen.runtime.manifest import (DataSpec, LatentSpec, MetricsSpec, PreprocessSpec, RatingsSpec, RefineSpec,
                                  parse)
from gen.runtime.ratings import RatingsTable, rating_rows
from gen.runtime.outputs import sample_image, save_png, staged_folder
from gen.runtime.version import gen_version

from . import budget, registry
from .config import TrainConfig, read_yaml
from .data import Dataset, RatingsData, load_dataset
from .graphs import GraphDef, Preprocess, RawUnits
from .progress import phase, reporting, start
from .protocols.completion import bias_baseline, completion_split, mae, rmse
from .protocols.one_class import calibrate, calibration_size, one_class_auroc, protocol_split

CHECKPOINT = "checkpoint.pt"
RUN_INFO = "run.json"
PROBE = "probe.npy"
PREVIEW = "preview.png"
PREVIEW_N = 64
PROBE_ROWS = 32


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
        std = fit_rows.std(axis=0)
        return PreprocessSpec(fit_rows.mean(axis=0).tolist(), np.where(std > 1e-8, std, 1.0).tolist())
    return PreprocessSpec()


@torch.no_grad()
def batched(module, x: torch.Tensor, batch: int = 1024) -> np.ndarray:
    """Run `module` on model-space rows in batches; numpy float64 out."""
    outs = [module(x[i:i + batch]).detach().cpu().numpy() for i in range(0, len(x), batch)]
    return np.concatenate(outs, axis=0).astype(np.float64)


def train(cfg: TrainConfig) -> Path:
    """Train `cfg.family` on `cfg.run.data` and write the run folder `cfg.run.out`; return its path.

    The folder appears whole at the end (it is written beside it and renamed), replacing an
    earlier run folder of the same name; a failed run leaves nothing behind. Each phase (a
    family's pretraining, the epochs, log Z, calibration) shows its progress on stderr unless
    the run is quiet (gen.trainer.progress).
    """
    out = Path(cfg.run.out)
    with reporting(cfg.run.quiet), staged_folder(out, RUN_INFO, "run folder", error=InputError) as staging:
        _train_into(cfg, staging)
    return out


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


def _train_into(cfg: TrainConfig, out: Path) -> None:
    run, family = cfg.run, cfg.family
    device = resolve_device(run.device)
    if run.threads is not None:
        torch.set_num_threads(run.threads)
    torch.manual_seed(run.seed)
    rng = np.random.default_rng(run.seed)
    data = load_dataset(run.data, run.label_column, seed=run.seed)
    if not family.accepts(data.kind):
        kinds = family.data_kinds or ("image", "tabular", "points")
        raise ConfigError(f"model {family.name} trains on {' or '.join(kinds)} data; {data.source} holds "
                          f"{data.kind} data" + ("; use a completion family (autorec)" if data.kind == "ratings" else ""))
    if isinstance(data, RatingsData):
        if run.normal_class is not None:
            raise InputError(f"--normal-class {run.normal_class}: {data.source} holds ratings, which have no labels")
        rows, spec, test = _ratings_rows(cfg, data)
        fit_idx, cal_idx, test_idx = np.arange(len(rows)), np.arange(0), test
        cfg.options = family.resolve(cfg.options, spec)
    else:
        rows = data.x
        fit_idx, cal_idx, test_idx = split_rows(cfg, data, rng)
        spec = DataSpec(source=data.source, kind=data.kind, shape=data.shape,
                        raw_range=list(data.raw_range) if data.raw_range else
                        [float(data.x[fit_idx].min()), float(data.x[fit_idx].max())],
                        preprocessing=preprocessing(data, data.x[fit_idx]), feature_names=data.names,
                        n_train=int(len(fit_idx)), normal_class=run.normal_class)
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
    validate = None
    if family.stops_early and len(cal_idx) and (run.epochs is None or run.patience is not None):
        # The held-out normal rows that calibrate the threshold also pick the epoch (README,
        # "How a model is trained by default"): their mean score is the validation loss.
        val_score = _output(family.graphs(net, spec), *family.score_graph)
        val_idx = cal_idx if len(cal_idx) <= budget.MAX_VALIDATION_ROWS else np.sort(
            np.random.default_rng(run.seed + 4).choice(cal_idx, budget.MAX_VALIDATION_ROWS, replace=False))
        x_val = model_rows(val_idx)

        def validate() -> float:
            net.eval()
            return float(batched(val_score, x_val).mean())

    history, seconds, stopping = _fit(cfg, net, trainer, x_fit, rng, Path(data.source).name, out, validate)
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
        score = _output(graphs, *family.score_graph)
        x_cal = model_rows(cal_idx)
        kind = family.score_kind_of(cfg.options) if family.score_kind_of else family.score_kind
        scoring = {"kind": kind, **calibrate(batched(score, x_cal), run.contamination),
                   "calibration": f"{len(cal_idx)} held-out normal training rows, not used for fitting",
                   "graph": family.score_graph[0], "output": family.score_graph[1]}
        if family.log_partition is not None:
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
        evaluation = _completion_evaluation(graphs, spec, rows, data.table, test_idx, device)
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
    metrics = MetricsSpec(epochs=len(history), stopping=stopping, n_fit=int(len(fit_idx)), n_calibration=int(len(cal_idx)),
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


def _sorted_ids(ids: np.ndarray, id_type: str) -> list[str]:
    unique = np.unique(ids.astype(str))
    return sorted(unique.tolist(), key=int) if id_type == "int" else unique.tolist()


def _subset(table: RatingsTable, idx: np.ndarray) -> RatingsTable:
    return RatingsTable(table.users[idx], table.items[idx], table.ratings[idx], table.lines[idx],
                        table.id_type, table.source)


def _ratings_rows(cfg: TrainConfig, data: RatingsData) -> tuple[np.ndarray, DataSpec, np.ndarray]:
    """The rating matrix of the training ratings (rows: items or users, as the family says;
    NaN where no rating was observed), its DataSpec, and the test rating indices. The split
    is DESIGN.md's completion protocol: RandomState(seed) permutation, first 90% train."""
    table = data.table
    if len(table) < 10:
        raise InputError(f"{data.source}: only {len(table)} ratings; a completion model needs at least 10")
    train_idx, test_idx = completion_split(len(table), seed=cfg.run.seed)
    fit = _subset(table, train_idx)
    orientation = cfg.family.ratings_rows(cfg.options)
    users, items = _sorted_ids(fit.users, table.id_type), _sorted_ids(fit.items, table.id_type)
    ratings = RatingsSpec(orientation=orientation, users=users, items=items, id_type=table.id_type,
                          rating_range=[float(fit.ratings.min()), float(fit.ratings.max())],
                          global_mean=float(fit.ratings.mean()), n_ratings=int(len(fit)))
    values, mask = rating_rows(fit, orientation, ratings.row_ids, ratings.column_ids)
    rows = np.where(mask > 0, values, np.nan).astype(np.float32)
    spec = DataSpec(source=data.source, kind="ratings", shape=[len(ratings.column_ids)],
                    raw_range=list(ratings.rating_range),
                    preprocessing=PreprocessSpec(offset=ratings.global_mean, scale=1.0),
                    n_train=int(len(fit)), ratings=ratings)
    return rows, spec, test_idx


def _completion_evaluation(graphs: dict, spec: DataSpec, rows: np.ndarray, table: RatingsTable,
                           test_idx: np.ndarray, device: torch.device) -> dict:
    """Test RMSE/MAE of the `complete` graph (in raw units, as the bundle serves it) on the
    held-out ratings, next to the global-mean and user/item-bias baselines on the same split.
    Test pairs whose user or item never appeared in training get the global mean."""
    r = spec.ratings
    mask = (~np.isnan(rows)).astype(np.float32)
    runner = _TorchRunner(graphs["complete"], spec, device)
    pred = np.concatenate([runner.run({"x": np.nan_to_num(rows[i:i + 1024]), "mask": mask[i:i + 1024]},
                                      outputs=["completed"])["completed"] for i in range(0, len(rows), 1024)])
    test = _subset(table, test_idx)
    row_of, col_of = (test.items, test.users) if r.orientation == "item" else (test.users, test.items)
    row_pos = {v: i for i, v in enumerate(r.row_ids)}
    col_pos = {v: j for j, v in enumerate(r.column_ids)}
    i = np.array([row_pos.get(v, -1) for v in row_of])
    j = np.array([col_pos.get(v, -1) for v in col_of])
    known = (i >= 0) & (j >= 0)
    got = np.where(known, pred[np.maximum(i, 0), np.maximum(j, 0)], r.global_mean)
    train_idx = np.setdiff1d(np.arange(len(table)), test_idx)
    base = bias_baseline(table.users[train_idx], table.items[train_idx], table.ratings[train_idx],
                         test.users, test.items)
    return {"rmse": rmse(got, test.ratings), "mae": mae(got, test.ratings),
            "rmse_global_mean": rmse(np.full(len(test), r.global_mean), test.ratings),
            "rmse_bias_baseline": rmse(np.clip(base, *r.rating_range), test.ratings),
            "n_test": int(len(test)), "n_test_unseen": int((~known).sum())}


def _output(graphs: dict, role: str, name: str):
    """A callable giving output `name` of graph `role` (model space in, like the graph's module)."""
    graph = graphs[role]
    index = [p.name for p in graph.outputs].index(name)

    def run(*inputs):
        out = graph.module(*inputs)
        return out[index] if isinstance(out, tuple) else out

    return run


def _fit(cfg: TrainConfig, net, trainer, x_fit: torch.Tensor, rng: np.random.Generator, name: str,
         out: Path, validate=None) -> tuple[list[dict], float, dict]:
    """Train; (per-epoch records, seconds, how training stopped). With `validate` (the mean
    score of held-out normal rows) and a patience, training stops once it has not improved
    for that many epochs and the best epoch's weights are restored (trainer/budget.py)."""
    rows_per_step = cfg.run.batch_size * getattr(trainer, "batches_per_step", 1)
    plan = budget.plan(len(x_fit), rows_per_step, cfg.run.epochs, cfg.run.patience,
                       cfg.family.stops_early and validate is not None, cfg.family.trains_by_steps)
    history = []
    start_all = time.perf_counter()
    if hasattr(trainer, "fit"):  # its own schedule: closed form (PCA, one record) or AdaGAN's sequence
        figures = trainer.fit(x_fit, epochs=plan.max_epochs, batch_size=cfg.run.batch_size, rng=rng)
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
    if hasattr(trainer, "fit_start"):  # e.g. a DBM's greedy layer-wise pretraining, before joint training
        trainer.fit_start(x_fit, cfg.run.batch_size)
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
    codes = batched(_output(graphs, "encoder", "z"), x_fit)
    return LatentSpec(dim=dim, prior="gaussian", mean=codes.mean(axis=0).tolist(),
                      cov=np.atleast_2d(np.cov(codes, rowvar=False)).tolist())


class _TorchRunner:
    """A graph run by torch in raw units, with the runtime's GraphRunner interface (plain
    runs: `device` None, nothing kept on a device)."""

    device = None

    def __init__(self, graph: GraphDef, data: DataSpec, device: torch.device):
        self.module = RawUnits(graph, data.preprocessing, data.shape).to(device).eval()
        self.device_ = device
        self.input_names = [p.name for p in graph.inputs]
        self.output_names = [p.name for p in graph.outputs]

    @torch.no_grad()
    def run(self, feeds: dict, outputs: list[str] | None = None, keep_on_device: bool = False) -> dict:
        out = self.module(*(torch.as_tensor(np.asarray(feeds[n])).to(self.device_) for n in self.input_names))
        values = dict(zip(self.output_names, out if isinstance(out, tuple) else (out,)))
        return {n: values[n].cpu().numpy() for n in (outputs or self.output_names)}


def draw_with_torch(graphs: dict, data: DataSpec, sampler, latent: LatentSpec | None, n: int, seed: int,
                    device: torch.device) -> np.ndarray:
    """n samples drawn by the runtime's own sampler over the torch graphs (wrapped in raw
    units), so they are what the exported bundle gives for `seed`, up to float rounding."""
    runners = {role: _TorchRunner(graph, data, device) for role, graph in graphs.items()}

    def run_batched(role: str, feeds: dict, output: str) -> np.ndarray:
        return runners[role].run(feeds, outputs=[output])[output]

    def port_shape(role: str, name: str) -> list[int]:
        return next(p.shape for p in graphs[role].inputs if p.name == name)

    host = SimpleNamespace(manifest=SimpleNamespace(latent=latent, sampler=sampler), batch_size=1024,
                           runners=runners, run_batched=run_batched, port_shape=port_shape)
    return samplers.draw(host, n, np.random.default_rng(seed))


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
    runner = _TorchRunner(graphs[role], data, device)

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


def load_run(run_dir: str | Path) -> tuple[TrainConfig, dict, DataSpec, torch.nn.Module]:
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
    try:
        info = json.loads((run_dir / RUN_INFO).read_text())
        data = parse(DataSpec, info["data"], str(run_dir / RUN_INFO), "data")
    except (json.JSONDecodeError, KeyError, TypeError, BundleError) as exc:
        raise InputError(f"{run_dir / RUN_INFO}: not a run description of this gen ({exc})") from None
    net = cfg.family.build(cfg.options, data)
    try:
        state = torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=True)
        net.load_state_dict(state["state_dict"])
        if "discriminator_state_dict" in state and cfg.family.discriminator is not None:
            tuned = cfg.family.build(cfg.options, data)
            tuned.load_state_dict(state["discriminator_state_dict"])
            net.__dict__["tuned_discriminator"] = tuned.eval()  # not a submodule: kept out of net's state
    except Exception as exc:  # torch raises many types for a damaged or foreign checkpoint
        raise InputError(f"{run_dir / CHECKPOINT}: cannot load the checkpoint "
                         f"({str(exc).splitlines()[0]})") from None
    return cfg, info, data, net.eval()

