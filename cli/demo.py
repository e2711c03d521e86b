"""`gen demo`: the main job end to end, for every family that declares a demo preset:
sampling and anomaly scoring on the embedded sklearn digits first, then matrix completion on
the built-in synthetic ratings (`lowrank`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

# The demo's networks are small (batches of 64 rows, layers of at most 256 units): one torch
# thread runs them as fast as several, and on a busy machine several threads spin-wait on
# each other and make a fit many times slower (the GAN's 300 epochs: 20 s against minutes).
DEMO_THREADS = 1


def demo_plan() -> tuple[list[str], list[str]]:
    """(families that sample and score, completion families): the demo families in the order
    the demo trains them."""
    from gen.trainer import registry

    families = {n: f for n, f in registry.families().items() if f.demo is not None}
    completion = [n for n, f in families.items() if "complete" in f.capabilities]
    return [n for n in families if n not in completion], completion


def score_summary(scorer: str, n_digits: int, digits_flagged: int, n_noise: int, noise_flagged: int) -> str:
    """The demo's line on the batch it scored: how many of the held-out digits and of the noise
    rows the `scorer` bundle flagged."""
    from gen.cli.bundle import plural

    return (f"== scored {plural(n_digits + n_noise, 'row')} ({plural(n_digits, 'held-out digit')} + "
            f"{plural(n_noise, 'noise row')}) with the {scorer} bundle: {plural(digits_flagged, 'digit')} flagged, "
            f"{noise_flagged}/{n_noise} noise rows flagged")


def run_demo(out: Path, epochs: int | None = None, seed: int = 0, quiet: bool = False,
             echo: Callable[[str], None] = print) -> dict:
    """Train each demo family on its demo data and export it: first the families that sample
    (a PNG grid from each bundle), then score the held-out digits plus 20 rows of uniform
    noise with the first scoring family and write the `gen report` page of that batch, then
    the completion families (each user's top 5 unrated items). Returns the grids, the scores
    file, the report, the completion files and `order`, the families in the order they ran."""
    from gen.exporters import export_run
    from gen.runtime import load
    from gen.runtime.completion import Completer, write_predictions
    from gen.runtime.outputs import save_csv, save_samples
    from gen.runtime.report import write_report
    from gen.trainer import registry
    from gen.trainer.config import TrainConfig
    from gen.trainer.data import digits, load_dataset
    from gen.trainer.protocols.one_class import protocol_split
    from gen.trainer.train import train

    out = Path(out)
    imaging, completion = demo_plan()
    scorer = next(n for n in imaging if "score" in registry.get(n).capabilities)
    echo(f"== demo: train, export and sample {', '.join(imaging)}; score digits and noise with {scorer}"
         + (f"; then train, export and complete ratings with {', '.join(completion)}" if completion else ""))

    def bundle(name: str):
        family = registry.get(name)
        cfg = TrainConfig.make(model=name, data=family.demo.data, epochs=epochs or family.demo.epochs, seed=seed,
                               out=str(out / "runs" / name), quiet=quiet, threads=DEMO_THREADS,
                               **family.demo.options)
        path = out / "bundles" / name
        export_run(train(cfg), path, force=True)
        return load(path)

    grids, models = [], {}
    for name in imaging:
        echo(f"== {name}: train on {registry.get(name).demo.data}, export, sample")
        models[name] = model = bundle(name)
        if "sample" in model.capabilities:
            grids.append(save_samples(model.sample(64, seed=seed), model.manifest.data, out / f"{name}-samples.png"))

    data = digits()
    _, test = protocol_split(len(data.x), data.y)
    noise = np.random.default_rng(seed).uniform(0, 16, size=(20, *data.shape)).astype(np.float32)
    batch = np.concatenate([data.x[test], noise]).reshape(len(test) + 20, -1)
    batch_path = save_csv(batch, out / "score-batch.csv", header=[f"pixel{i}" for i in range(batch.shape[1])])
    scores_path = out / "scores.csv"
    models[scorer].score_file(batch_path, scores_path)
    flags = models[scorer].flag(batch)
    echo(score_summary(scorer, len(test), int(flags[:len(test)].sum()), len(noise), int(flags[len(test):].sum())))
    report = write_report(models[scorer], out / "report.html", batch_path, seed=seed)
    echo(f"== report on that batch: {report} (one HTML file; open it in a browser)")

    completions = []
    for name in completion:
        source = registry.get(name).demo.data
        echo(f"== {name}: train on {source} ratings, export, complete")
        model = bundle(name)
        top = Completer(model, load_dataset(source, seed=seed).table).top_k(5)
        completions.append(write_predictions(top, out / f"{name}-top5.csv"))
        ev = model.manifest.metrics.evaluation
        echo(f"== completed {source} ratings with the {name} bundle: held-out test RMSE "
             f"{ev['rmse']:.3f} (global mean {ev['rmse_global_mean']:.3f}, bias baseline "
             f"{ev['rmse_bias_baseline']:.3f}); top 5 unrated items of {len(set(top.users))} users")
    return {"grids": grids, "scores": scores_path, "report": report, "completions": completions,
            "order": imaging + completion}
