"""`gen demo`: the main job end to end, for every family that declares a demo preset: sampling
and anomaly scoring on the embedded sklearn digits, matrix completion on the built-in
synthetic ratings (`lowrank`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np


def run_demo(out: Path, epochs: int | None = None, seed: int = 0, quiet: bool = False,
             echo: Callable[[str], None] = print) -> dict:
    """Train each demo family on its demo data, export it, sample a PNG grid from each bundle
    that samples, score the held-out digits plus 20 rows of uniform noise with the first
    scoring family, and predict each user's top 5 unrated items with each completion family."""
    from gen.exporters import export_run
    from gen.runtime import load
    from gen.runtime.outputs import save_csv, save_samples
    from gen.trainer import registry
    from gen.trainer.config import TrainConfig
    from gen.trainer.data import digits
    from gen.trainer.protocols.one_class import protocol_split
    from gen.trainer.train import train

    out = Path(out)
    grids, bundles = [], {}
    for name, family in registry.families().items():
        if family.demo is None:
            continue
        echo(f"== {name}: train, export, sample")
        cfg = TrainConfig.make(model=name, data=family.demo.data, epochs=epochs or family.demo.epochs, seed=seed,
                               out=str(out / "runs" / name), quiet=quiet, **family.demo.options)
        bundles[name] = out / "bundles" / name
        export_run(train(cfg), bundles[name], force=True)
        model = load(bundles[name])
        if "sample" in model.capabilities:
            grids.append(save_samples(model.sample(64, seed=seed), model.manifest.data, out / f"{name}-samples.png"))

    data = digits()
    _, test = protocol_split(len(data.x), data.y)
    noise = np.random.default_rng(seed).uniform(0, 16, size=(20, *data.shape)).astype(np.float32)
    batch = np.concatenate([data.x[test], noise]).reshape(len(test) + 20, -1)
    batch_path = save_csv(batch, out / "score-batch.csv", header=[f"pixel{i}" for i in range(batch.shape[1])])
    scorer = next(n for n, f in registry.families().items() if f.demo and "score" in f.capabilities)
    model = load(bundles[scorer])
    scores_path = out / "scores.csv"
    model.score_file(batch_path, scores_path)
    flags = model.flag(batch)
    echo(f"== scored {len(batch)} rows ({len(test)} held-out digits + 20 noise rows) with the {scorer} bundle: "
         f"{int(flags[:len(test)].sum())} digits flagged, {int(flags[len(test):].sum())}/20 noise rows flagged")
    completions = []
    for name, path in bundles.items():
        model = load(path)
        if "complete" not in model.capabilities:
            continue
        from gen.runtime.completion import Completer, write_predictions
        from gen.trainer.data import load_dataset

        ratings = load_dataset(registry.get(name).demo.data, seed=seed).table
        top = Completer(model, ratings).top_k(5)
        completions.append(write_predictions(top, out / f"{name}-top5.csv"))
        ev = model.manifest.metrics.evaluation
        echo(f"== completed {registry.get(name).demo.data} ratings with the {name} bundle: held-out test RMSE "
             f"{ev['rmse']:.3f} (global mean {ev['rmse_global_mean']:.3f}, bias baseline "
             f"{ev['rmse_bias_baseline']:.3f}); top 5 unrated items of {len(set(top.users))} users")
    return {"grids": grids, "scores": scores_path, "completions": completions}
