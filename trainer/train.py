"""The training loop shared by every family: data -> split -> fit -> calibrate -> run folder.

The run folder holds everything the exporter needs and nothing the runtime loads:
checkpoint.pt (state dict, read back with weights_only=True), config.yaml (the resolved
config), run.json (data spec, latent fit, calibration, metrics), metrics.jsonl (one line per
epoch), probe.npy (held-out rows for the export parity check) and preview.png for images.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
import warnings
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import torch

from .config import TrainConfig
from .data import Dataset, load_dataset
from .errors import TrainError, TrainWarning
from .evaluate import calibrate, calibration_size, one_class_auroc, protocol_split
from .models import family_module

CHECKPOINT = "checkpoint.pt"
RUN_INFO = "run.json"


def gen_version() -> str:
    try:
        return version("gen")
    except PackageNotFoundError:  # pragma: no cover - source tree without install
        return "0.0.0"


def resolve_device(device: str) -> torch.device:
    """`auto` takes CUDA when torch sees it; `cuda` without CUDA is an error, not a fallback."""
    if device == "cuda" and not torch.cuda.is_available():
        raise TrainError("device 'cuda' was asked for but torch sees no CUDA device; use --device cpu")
    if device in ("cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def preprocessing(data: Dataset, fit_rows: np.ndarray) -> tuple[object, object, list[float] | None]:
    """offset, scale and the model-space range: images to [0, 1], tabular rows z-scored on
    the fitting rows, 2-D points left as they are."""
    if data.kind == "image":
        lo, hi = data.raw_range
        return float(lo), float(hi - lo) if hi > lo else 1.0, [0.0, 1.0]
    if data.kind == "tabular":
        std = fit_rows.std(axis=0)
        return fit_rows.mean(axis=0).tolist(), np.where(std > 1e-8, std, 1.0).tolist(), None
    return 0.0, 1.0, None


def _to_model(x: np.ndarray, offset, scale) -> np.ndarray:
    return ((x - np.asarray(offset, np.float32)) / np.asarray(scale, np.float32)).astype(np.float32)


@torch.no_grad()
def _batched(fn, x: np.ndarray, device: torch.device, batch: int = 1024) -> np.ndarray:
    outs = [fn(torch.from_numpy(x[i:i + batch]).to(device)).cpu().numpy() for i in range(0, len(x), batch)]
    return np.concatenate(outs, axis=0)


def _progress(quiet: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("{task.fields[losses]}"), disable=quiet, transient=False)


@contextlib.contextmanager
def staged_folder(out: Path, marker: str, what: str, replace: bool = True):
    """Yield an empty staging folder beside `out`; on success it replaces `out` in one rename.

    A failure leaves `out` as it was. An existing `out` is replaced only when it is empty or
    holds `marker` (one of our own folders), never an arbitrary folder of the user's.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not (out / marker).is_file():
            raise TrainError(f"{out}: exists and is not a gen {what}; choose another --out")
        if not replace:
            raise TrainError(f"{out}: {what} exists ({what}s are immutable; pass --force to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent))
    try:
        yield staging
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def train(cfg: TrainConfig) -> Path:
    """Train `cfg.model` on `cfg.data` and write the run folder `cfg.out`; return its path.

    The folder appears whole at the end (it is written beside it and renamed), replacing an
    earlier run folder of the same name; a failed run leaves nothing behind.
    """
    cfg.validate()
    with staged_folder(Path(cfg.out), RUN_INFO, "run folder") as staging:
        _train_into(cfg, staging)
    return Path(cfg.out)


def _train_into(cfg: TrainConfig, out: Path) -> None:
    device = resolve_device(cfg.device)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    data = load_dataset(cfg.data, cfg.label_column, seed=cfg.seed)
    family = family_module(cfg.model)

    train_idx, test_idx = protocol_split(len(data.x), data.y)
    if cfg.normal_class is not None:
        if data.y is None:
            raise TrainError(f"--normal-class {cfg.normal_class} needs labelled data; {data.source} has no labels")
        if cfg.normal_class not in set(data.y.tolist()):
            raise TrainError(f"--normal-class {cfg.normal_class}: no such label in {data.source} "
                             f"(labels: {sorted(set(data.y.tolist()))})")
        train_idx = train_idx[data.y[train_idx] == cfg.normal_class]
    train_idx = rng.permutation(train_idx)
    n_cal = calibration_size(len(train_idx), cfg.calibration_fraction)
    if len(train_idx) - n_cal < 2:
        raise TrainError(f"{data.source}: too few training rows ({len(train_idx)}) to fit and calibrate")
    cal_idx, fit_idx = np.sort(train_idx[:n_cal]), np.sort(train_idx[n_cal:])

    offset, scale, model_range = preprocessing(data, data.x[fit_idx])
    x_fit = _to_model(data.x[fit_idx], offset, scale)
    x_cal = _to_model(data.x[cal_idx], offset, scale)
    x_test = _to_model(data.x[test_idx], offset, scale)
    dim = x_fit.shape[1]
    unit_range = model_range == [0.0, 1.0]

    net = family.build(cfg, dim, unit_range).to(device)
    trainer = family.Trainer(net, cfg)
    rows_per_step = cfg.batch_size * trainer.batches_per_step
    history = []
    x_fit_t = torch.from_numpy(x_fit).to(device)
    with _progress(cfg.quiet) as progress, open(out / "metrics.jsonl", "w") as log:
        task = progress.add_task(f"{cfg.model} on {Path(data.source).name}", total=cfg.epochs, losses="")
        for epoch in range(1, cfg.epochs + 1):
            net.train()
            start = time.perf_counter()
            order = torch.from_numpy(rng.permutation(len(x_fit)))
            sums: dict[str, float] = {}
            steps = 0
            for i in range(0, len(order), rows_per_step):
                losses = trainer.step(x_fit_t[order[i:i + rows_per_step]])
                for key, value in losses.items():
                    sums[key] = sums.get(key, 0.0) + value
                steps += 1
            record = {"epoch": epoch, **{k: v / steps for k, v in sums.items()},
                      "seconds": round(time.perf_counter() - start, 4)}
            history.append(record)
            log.write(json.dumps(record) + "\n")
            progress.update(task, advance=1, losses="  ".join(f"{k} {v / steps:.4f}" for k, v in sums.items()))
    net.eval()

    cal_scores = _batched(net.anomaly_score, x_cal, device)
    scoring = {"kind": _score_kind(cfg.model), **calibrate(cal_scores, cfg.contamination),
               "calibration": f"{len(cal_idx)} held-out normal training rows, not used for fitting"}
    if scoring["expected_false_alarm_rate"] > cfg.contamination:
        warnings.warn(f"only {len(cal_idx)} calibration rows: the {1 - cfg.contamination:.0%} threshold is "
                      f"near their maximum, so expect about {scoring['expected_false_alarm_rate']:.1%} of "
                      f"normal rows to be flagged, not {cfg.contamination:.1%}", TrainWarning, stacklevel=2)
    latent = {"dim": net.latent_dim, "prior": family.LATENT_PRIOR}
    if family.LATENT_PRIOR == "gaussian":
        codes = _batched(net.encode, x_fit, device).astype(np.float64)
        latent["mean"] = codes.mean(axis=0).tolist()
        latent["cov"] = np.atleast_2d(np.cov(codes, rowvar=False)).tolist()

    metrics = {"epochs": cfg.epochs, "final": history[-1], "n_fit": int(len(fit_idx)),
               "n_calibration": int(len(cal_idx)), "n_test": int(len(test_idx)),
               "device": str(device)}
    test_scores = _batched(net.anomaly_score, x_test, device)
    if cfg.normal_class is not None:
        labels = data.y[test_idx]
        metrics["auroc"] = one_class_auroc(test_scores, labels, cfg.normal_class)
        normal = labels == cfg.normal_class
        metrics["test_normal_mean_score"] = float(test_scores[normal].mean())
        metrics["test_flag_rate_normal"] = float((test_scores[normal] > scoring["threshold"]).mean())
    else:
        metrics["test_mean_score"] = float(test_scores.mean())

    data_spec = {"source": data.source, "shape": [dim], "dtype": "float32",
                 "raw_range": list(data.raw_range) if data.raw_range else
                 [float(data.x[fit_idx].min()), float(data.x[fit_idx].max())],
                 "model_range": model_range, "offset": offset, "scale": scale,
                 "image_shape": data.image_shape, "n_train": int(len(fit_idx)),
                 "normal_class": cfg.normal_class}
    run_info = {"family": cfg.model, "gen_version": gen_version(), "torch_version": torch.__version__,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "build": {"dim": dim, "unit_range": unit_range}, "capabilities": family.CAPABILITIES,
                "data": data_spec, "latent": latent, "scoring": scoring, "metrics": metrics}

    torch.save({"state_dict": {k: v.cpu() for k, v in net.state_dict().items()}}, out / CHECKPOINT)
    cfg.write_yaml(out / "config.yaml")
    (out / RUN_INFO).write_text(json.dumps(run_info, indent=2) + "\n")
    np.save(out / "probe.npy", x_cal[:32], allow_pickle=False)
    if data.kind == "image" and "sample" in family.CAPABILITIES:
        _write_preview(net, latent, data.image_shape, out / "preview.png", cfg.seed, device)


def _score_kind(model: str) -> str:
    return {"vae": "negative_elbo", "gan": "negative_discriminator_logit"}.get(model, "reconstruction_mse")


@torch.no_grad()
def _write_preview(net, latent: dict, image_shape: list[int], path: Path, seed: int, device) -> None:
    """A grid of 64 samples, so a user sees what the model learned without exporting it."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    z = rng.standard_normal((64, latent["dim"]))
    if latent["prior"] == "gaussian":
        cov = np.asarray(latent["cov"]) + 1e-6 * np.eye(latent["dim"])
        z = np.asarray(latent["mean"]) + z @ np.linalg.cholesky(cov).T
    decode = net.generate if hasattr(net, "generate") else net.decode
    x = decode(torch.from_numpy(z.astype(np.float32)).to(device)).cpu().numpy()
    c, h, w = image_shape
    x = np.clip(x.reshape(8, 8, c, h, w), 0, 1)
    grid = (x.transpose(0, 3, 1, 4, 2).reshape(8 * h, 8 * w, c) * 255).round().astype(np.uint8)
    image = Image.fromarray(grid[..., 0] if c == 1 else grid)
    image.resize((8 * w * max(1, 64 // w), 8 * h * max(1, 64 // h)), Image.NEAREST).save(path)


def load_checkpoint(run_dir: Path) -> tuple[TrainConfig, dict, torch.nn.Module]:
    """Rebuild a trained network from its run folder (weights_only=True: no pickle)."""
    run_dir = Path(run_dir)
    for name in (CHECKPOINT, RUN_INFO, "config.yaml"):
        if not (run_dir / name).is_file():
            raise TrainError(f"{run_dir}: not a run folder (missing {name})")
    cfg = TrainConfig.from_yaml(run_dir / "config.yaml")
    info = json.loads((run_dir / RUN_INFO).read_text())
    net = family_module(cfg.model).build(cfg, **info["build"])
    state = torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=True)
    net.load_state_dict(state["state_dict"])
    return cfg, info, net.eval()
