"""`gen demo`: the main job end to end on the embedded sklearn digits."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np


DEMO_EPOCHS = {"ae": 100, "vae": 100, "gan": 300}


def run_demo(out: Path, epochs: int | None = None, seed: int = 0, quiet: bool = False,
             echo: Callable[[str], None] = print) -> dict:
    """Train ae, vae and gan on digits, export each, sample a PNG grid from each, and score
    the held-out digits plus 20 rows of uniform noise with the autoencoder."""
    from gen.exporters import export_run
    from gen.runtime import load
    from gen.runtime.outputs import save_csv, save_samples
    from gen.trainer.config import TrainConfig
    from gen.trainer.data import digits
    from gen.trainer.evaluate import protocol_split
    from gen.trainer.train import train

    out = Path(out)
    grids = []
    for family in ("ae", "vae", "gan"):
        echo(f"== {family}: train, export, sample")
        run = train(TrainConfig(model=family, data="digits", epochs=epochs or DEMO_EPOCHS[family], seed=seed,
                                out=str(out / "runs" / family), quiet=quiet))
        bundle = out / "bundles" / family
        export_run(run, bundle, force=True)
        model = load(bundle)
        grids.append(save_samples(model.sample(64, seed=seed), model.manifest.data, out / f"{family}-samples.png"))

    data = digits()
    _, test = protocol_split(len(data.x), data.y)
    noise = np.random.default_rng(seed).uniform(0, 16, size=(20, data.x.shape[1])).astype(np.float32)
    batch = np.concatenate([data.x[test], noise])
    batch_path = save_csv(batch, out / "score-batch.csv", header=[f"pixel{i}" for i in range(batch.shape[1])])
    model = load(out / "bundles" / "ae")
    scores_path = out / "scores.csv"
    model.score_file(batch_path, scores_path)
    flags = model.flag(batch)
    echo(f"== scored {len(batch)} rows ({len(test)} held-out digits + 20 noise rows) with the ae bundle: "
         f"{int(flags[:len(test)].sum())} digits flagged, {int(flags[len(test):].sum())}/20 noise rows flagged")
    return {"grids": grids, "scores": scores_path}
