"""Matrix completion on MovieLens-100K for bench/run.py (DESIGN.md, "Quality protocols").

For each split seed (the protocol's seed 0, and more seeds to show the spread) the ratings
are split by `completion_split` (RandomState(seed) permutation, first 90% train) and every
method is fitted on exactly the training triples and predicts exactly the test pairs:

- gen's completion families (those with a bench preset that train on ratings: AutoRec,
  item- and user-based), trained by the trainer, exported to a bundle and measured through
  the torch-free runtime: `model.complete` on the rows of the training ratings, read at the
  test pairs. A test pair whose user or item never appears in training gets the global mean
  (counted). The trainer's own figures (run.json) are recorded next to them.
- the global-mean and user/item-bias baselines of `gen.trainer.protocols.completion`;
- scikit-surprise's SVD and SVD++ (defaults, `random_state` = the split seed) and KNNBaseline
  (defaults: 40 neighbours, MSD similarity between users, ALS baselines; deterministic).

Figures: test RMSE and MAE, and the time to fit (and to predict).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

PROTOCOL_SEED = 0
# Orientations run besides a family's default, as variants: AutoRec's user-based one trains in
# seconds; GLocal-K's default alone (a fit takes about 15 minutes on one core).
OTHER_ORIENTATIONS = {"autorec": ("user",)}
# Keys of an AutoRec run's config.yaml that say where things go, not how it is trained.
PER_RUN_KEYS = ("model", "data", "out", "normal_class", "quiet", "label_column", "orientation", "seed")


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def default_movielens_path() -> Path:
    root = Path(os.environ.get("GEN_DATA") or Path.home() / ".cache" / "gen-datasets")
    return root / "ml-100k" / "u.data"


# -- pure helpers -------------------------------------------------------------------------------

def subset(table, idx: np.ndarray):
    """The triples of a RatingsTable at `idx`, as a RatingsTable."""
    from gen.runtime.ratings import RatingsTable

    return RatingsTable(table.users[idx], table.items[idx], table.ratings[idx], table.lines[idx],
                        table.id_type, table.source)


def unseen_pairs(train_users, train_items, test_users, test_items) -> np.ndarray:
    """True for each test pair whose user or item has no training rating."""
    users, items = set(np.asarray(train_users).tolist()), set(np.asarray(train_items).tolist())
    return np.array([u not in users or i not in items for u, i in zip(test_users, test_items)], dtype=bool)


def read_completed(rows: np.ndarray, row_ids: list[str], column_ids: list[str], test_rows, test_columns,
                   fallback: float) -> tuple[np.ndarray, np.ndarray]:
    """Predictions for test pairs read from completed rows (one row per id of `row_ids`, one
    column per id of `column_ids`): (pred, known); a pair whose row or column id is not
    listed gets `fallback` and known False."""
    row_pos = {rid: i for i, rid in enumerate(row_ids)}
    col_pos = {cid: j for j, cid in enumerate(column_ids)}
    i = np.fromiter((row_pos.get(v, -1) for v in test_rows), dtype=np.int64, count=len(test_rows))
    j = np.fromiter((col_pos.get(v, -1) for v in test_columns), dtype=np.int64, count=len(test_columns))
    known = (i >= 0) & (j >= 0)
    pred = np.full(len(i), float(fallback), dtype=np.float64)
    pred[known] = np.asarray(rows, dtype=np.float64)[i[known], j[known]]
    return pred, known


def spread(values: list[float]) -> dict | None:
    """Mean and sample standard deviation (ddof 1) of per-seed figures; std None for one seed."""
    values = [float(v) for v in values]
    if not values:
        return None
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else None,
            "n": len(values)}


# -- the methods --------------------------------------------------------------------------------

def completion_families(families: dict) -> dict:
    """The benchmarked families that train on ratings, each with the orientations to run: the
    family's default (what `gen train` gives), then those of OTHER_ORIENTATIONS as variants
    (`--orientation`, labelled so in the tables)."""
    from gen.trainer import registry

    chosen = {}
    for name, family in families.items():
        entry = registry.get(name)
        if not entry.accepts("ratings"):
            continue
        default = next((spec.default for spec in entry.option_specs() if spec.name == "orientation"), None)
        orientations = [default] if default is not None else [None]
        orientations += [o for o in OTHER_ORIENTATIONS.get(name, ()) if o not in orientations]
        chosen[name] = {**family, "orientations": orientations}
    return chosen


def runtime_predictions(bundle_dir: Path, train, test) -> tuple[np.ndarray, np.ndarray, float]:
    """The bundle's predictions for the test pairs (torch-free runtime): complete the rows of
    the training ratings, read the test pairs. Returns (pred, known, seconds)."""
    from gen.runtime import load
    from gen.runtime.ratings import rating_rows

    model = load(bundle_dir, device="cpu")
    start = time.perf_counter()
    r = model.manifest.data.ratings
    values, mask = rating_rows(train, r.orientation, r.row_ids, r.column_ids)
    rows = model.complete(values, mask)
    test_rows, test_columns = (test.items, test.users) if r.orientation == "item" else (test.users, test.items)
    pred, known = read_completed(rows, r.row_ids, r.column_ids, test_rows, test_columns, r.global_mean)
    return pred, known, time.perf_counter() - start


def run_gen(name: str, family: dict, orientation: str | None, data_path: Path, seed: int, threads: int,
            workdir: Path, train, test) -> tuple[dict, dict]:
    """Train -> export -> runtime predictions for one family, orientation and seed.
    Returns the figures and the run's resolved settings."""
    import yaml

    from gen.exporters import export_run
    from gen.runtime.errors import GenWarning
    from gen.trainer.config import TrainConfig
    from gen.trainer.protocols.completion import mae, rmse
    from gen.trainer.train import train as train_run

    tag = f"{name}-{orientation or 'rows'}-seed{seed}"
    options = dict(family["options"])
    if orientation is not None:
        options["orientation"] = orientation
    cfg = TrainConfig.make(model=name, data=str(data_path), epochs=family["epochs"], seed=seed, threads=threads,
                           device="cpu", quiet=True, out=str(workdir / "runs" / tag), **options)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", GenWarning)
        start = time.perf_counter()
        run_dir = Path(train_run(cfg))
        trained = time.perf_counter()
        manifest = export_run(run_dir, workdir / "bundles" / tag)
        exported = time.perf_counter()
    for w in caught:
        if not issubclass(w.category, GenWarning):
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    pred, known, predict_s = runtime_predictions(workdir / "bundles" / tag, train, test)
    info = json.loads((run_dir / "run.json").read_text())
    metrics, evaluation = info["metrics"], info["metrics"].get("evaluation") or {}
    figures = {
        "rmse": rmse(pred, test.ratings), "mae": mae(pred, test.ratings),
        "n_test": int(len(test)), "n_test_unseen": int((~known).sum()),
        "fit_s": float(metrics["train_seconds"]), "train_s": trained - start, "export_s": exported - trained,
        "predict_s": predict_s, "epochs": int(metrics["epochs"]),
        "trainer_rmse": evaluation.get("rmse"), "trainer_mae": evaluation.get("mae"),
        "trainer_n_test_unseen": evaluation.get("n_test_unseen"),
        "trainer_rmse_global_mean": evaluation.get("rmse_global_mean"),
        "trainer_rmse_bias_baseline": evaluation.get("rmse_bias_baseline"),
        "max_parity": float(manifest.parity.max_abs_diff), "parity_tolerance": float(manifest.parity.tolerance),
        "warnings": list(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, GenWarning))),
    }
    config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    resolved = {"variant": info.get("variant"),
                "config": {k: v for k, v in config.items() if k not in PER_RUN_KEYS}}
    return figures, resolved


def baseline_predictions(train, test, rating_range) -> dict[str, tuple[np.ndarray, float]]:
    """{name: (predictions, seconds to fit and predict)} of the protocol's two baselines; the
    bias baseline is clipped to the rating range, as the trainer reports it."""
    from gen.trainer.protocols.completion import bias_baseline, global_mean_baseline

    out = {}
    for name, fn in (("global mean", global_mean_baseline), ("user/item bias baseline", bias_baseline)):
        start = time.perf_counter()
        pred = np.clip(fn(train.users, train.items, train.ratings, test.users, test.items), *rating_range)
        out[name] = (pred, time.perf_counter() - start)
    return out


# -- the section --------------------------------------------------------------------------------

def completion_benchmark(data_path: Path, families: dict, seeds: list[int], threads: int, workdir: Path,
                         quick: bool = False) -> dict:
    """Every method on every split seed; failures and skipped parts are recorded, not hidden."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import peers
    from gen.runtime.ratings import read_ratings
    from gen.trainer.protocols.completion import completion_split, mae, rmse

    started = time.perf_counter()
    table = read_ratings(data_path)
    gen_families = completion_families(families)
    surprise_epochs = 5 if quick else None
    result = {"label": "MovieLens-100K", "data": str(data_path), "n_ratings": int(len(table)),
              "n_users": int(len(np.unique(table.users.astype(str)))),
              "n_items": int(len(np.unique(table.items.astype(str)))),
              "ratings": sorted({float(r) for r in np.unique(table.ratings)}),
              "protocol_seed": PROTOCOL_SEED, "seeds": [int(s) for s in seeds], "splits": {},
              "families": {}, "methods": [], "skipped": [], "failures": [], "seconds": None,
              "surprise_epochs_override": surprise_epochs}
    methods: dict[str, dict] = {}

    def entry(name: str, kind: str, **extra) -> dict:
        return methods.setdefault(name, {"name": name, "kind": kind, "runs": {}, **extra})

    for name, family in gen_families.items():
        result["families"][name] = {"epochs": family["epochs"], "options": family["options"],
                                    "orientations": family["orientations"], "variants": {}, "config": None}
        for orientation in family["orientations"]:
            label = f"{name} {orientation}-based" if orientation else name
            entry(f"{label} (runtime bundle)", "model", family=name, orientation=orientation)
    if not gen_families:
        result["skipped"].append("gen: no family with a bench preset trains on ratings (registry families: "
                                 + ", ".join(_registry_names()) + ")")
    surprise_ok = peers.surprise_version() is not None
    if not surprise_ok:
        result["skipped"].append("scikit-surprise is not installed (pip install -e '.[bench]')")

    for seed in seeds:
        train_idx, test_idx = completion_split(len(table), seed=seed)
        train, test = subset(table, train_idx), subset(table, test_idx)
        rating_range = (float(train.ratings.min()), float(train.ratings.max()))
        unseen = unseen_pairs(train.users, train.items, test.users, test.items)
        result["splits"][str(seed)] = {"n_train": int(len(train)), "n_test": int(len(test)),
                                       "n_test_unseen": int(unseen.sum()), "global_mean": float(train.ratings.mean()),
                                       "rating_range": list(rating_range)}
        for name, (pred, seconds) in baseline_predictions(train, test, rating_range).items():
            entry(name, "baseline")["runs"][str(seed)] = {
                "rmse": rmse(pred, test.ratings), "mae": mae(pred, test.ratings), "fit_s": seconds,
                "n_test": int(len(test))}
        if surprise_ok:
            for name in peers.SURPRISE_ALGORITHMS:
                try:
                    got = peers.surprise_predictions(name, train.users, train.items, train.ratings, test.users,
                                                     test.items, rating_range, seed, surprise_epochs)
                except Exception as exc:
                    result["failures"].append(f"{name}, seed {seed}: {type(exc).__name__}: {_first_line(exc)}")
                    _log(f"completion {result['failures'][-1]}")
                    continue
                method = entry(name, "peer", settings=got["settings"])
                method["runs"][str(seed)] = {"rmse": rmse(got["pred"], test.ratings),
                                             "mae": mae(got["pred"], test.ratings), "fit_s": got["fit_s"],
                                             "predict_s": got["predict_s"], "n_test": int(len(test))}
                _log(f"completion seed {seed} {name}: RMSE {method['runs'][str(seed)]['rmse']:.4f}, "
                     f"fit {got['fit_s']:.1f}s")
        for name, family in gen_families.items():
            for orientation in family["orientations"]:
                label = f"{name} {orientation}-based" if orientation else name
                try:
                    figures, resolved = run_gen(name, family, orientation, data_path, seed, threads,
                                                workdir / "completion", train, test)
                except Exception as exc:  # report the failure instead of stopping
                    result["failures"].append(f"{label}, seed {seed}: {type(exc).__name__}: {_first_line(exc)}")
                    _log(f"completion {result['failures'][-1]}")
                    continue
                methods[f"{label} (runtime bundle)"]["runs"][str(seed)] = figures
                record = result["families"][name]
                record["variants"][orientation or ""] = resolved["variant"]
                if record["config"] is None:
                    record["config"] = resolved["config"]
                record.setdefault("trained_epochs", figures["epochs"])
                _log(f"completion seed {seed} {label}: runtime RMSE {figures['rmse']:.4f} (trainer "
                     f"{_fmt(figures['trainer_rmse'])}), fit {figures['fit_s']:.1f}s, export {figures['export_s']:.1f}s")

    for method in methods.values():
        runs = [method["runs"][str(s)] for s in seeds if str(s) in method["runs"]]
        method["spread"] = {k: spread([r[k] for r in runs]) for k in ("rmse", "mae", "fit_s")} if runs else None
    result["methods"] = list(methods.values())
    result["seconds"] = time.perf_counter() - started
    return result


def _registry_names() -> list[str]:
    from gen.trainer import registry

    return registry.names()


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [""])[0]


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"
