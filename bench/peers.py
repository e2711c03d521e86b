"""Other libraries' methods that bench/run.py measures gen against, run in the same process on
the same rows: PyOD's one-class detectors and scikit-surprise's SVD and SVD++.

Each is used with its library's defaults, except what the benchmark has to fix: a random
seed, PyOD's progress output (off) and, in a quick smoke run, fewer epochs. What ran is
returned with the figures (`settings`), so the report states it. These libraries are the
`bench` extra of pyproject.toml; a missing one is reported, not fatal.
"""

from __future__ import annotations

import importlib
import json
import tempfile
import time
from pathlib import Path

import numpy as np

SEED = 0

# name in the report -> (module, class, arguments besides the library's defaults)
PYOD_DETECTORS = {
    "PyOD KNN": ("pyod.models.knn", "KNN", {}),
    "PyOD OCSVM": ("pyod.models.ocsvm", "OCSVM", {}),
    # 10 epochs is PyOD's default; measured at well under a second per class on MNIST-5k
    # (400 rows) with one thread, so there is no need to cut it.
    "PyOD AutoEncoder": ("pyod.models.auto_encoder", "AutoEncoder", {"verbose": 0, "random_state": SEED}),
}
SURPRISE_ALGORITHMS = {"surprise SVD": "SVD", "surprise SVD++": "SVDpp", "surprise KNNBaseline": "KNNBaseline"}
# Neighbourhood methods: no random state and no epochs (their baselines' ALS has its own).
SURPRISE_NEIGHBOURS = ("KNNBaseline",)


def _jsonable(value):
    try:
        json.dumps(value)
        return value
    except TypeError:
        return str(value)


def scale_like_gen(x: np.ndarray, raw_range: tuple[float, float] | list[float] | None) -> np.ndarray:
    """Rows flattened to (n, features), float64, mapped from the dataset's raw range to [0, 1]
    as gen's image preprocessing does (x/255 for MNIST, x/16 for sklearn digits); rows of a
    dataset without a known range are only flattened."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    if raw_range is None:
        return x
    low, high = float(raw_range[0]), float(raw_range[1])
    return (x - low) / (high - low)


# -- PyOD -------------------------------------------------------------------------------------

def pyod_version() -> str | None:
    try:
        return importlib.import_module("pyod").__version__
    except ImportError:
        return None


def pyod_detector(name: str):
    """A fresh, unfitted PyOD detector for a name of PYOD_DETECTORS."""
    module, cls, kwargs = PYOD_DETECTORS[name]
    return getattr(importlib.import_module(module), cls)(**kwargs)


def pyod_settings(name: str) -> dict:
    """Where the detector comes from and every parameter it runs with (`get_params()`)."""
    module, cls, kwargs = PYOD_DETECTORS[name]
    params = pyod_detector(name).get_params()
    return {"detector": f"{module}.{cls}", "set": {k: _jsonable(v) for k, v in kwargs.items()},
            "params": {k: _jsonable(v) for k, v in params.items()}}


def warm_up(name: str, dim: int) -> None:
    """One untimed fit on random rows, so a detector's one-off start-up cost (the first
    torch step of PyOD's AutoEncoder) is not charged to the first class."""
    rng = np.random.default_rng(SEED)
    pyod_detector(name).fit(rng.random((64, dim)))


def pyod_scores(name: str, x_fit: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Fit detector `name` on the normal rows, score the test rows (higher = more anomalous,
    `decision_function`). Returns (scores, fit seconds, scoring seconds)."""
    detector = pyod_detector(name)
    start = time.perf_counter()
    detector.fit(x_fit)
    fitted = time.perf_counter()
    scores = np.asarray(detector.decision_function(x_test), dtype=np.float64).reshape(-1)
    return scores, fitted - start, time.perf_counter() - fitted


# -- scikit-surprise --------------------------------------------------------------------------

def surprise_version() -> str | None:
    try:
        return importlib.import_module("surprise").__version__
    except ImportError:
        return None


def surprise_algorithm(name: str, seed: int, n_epochs: int | None = None):
    """A fresh surprise algorithm for a name of SURPRISE_ALGORITHMS: defaults, `random_state`
    fixed, and `n_epochs` only when given (quick runs)."""
    import surprise

    cls = SURPRISE_ALGORITHMS[name]
    if cls in SURPRISE_NEIGHBOURS:  # deterministic; verbose off only keeps its progress lines out of the log
        return getattr(surprise, cls)(verbose=False)
    kwargs = {"random_state": seed}
    if n_epochs is not None:
        kwargs["n_epochs"] = n_epochs
    return getattr(surprise, cls)(**kwargs)


def surprise_settings(algo) -> dict:
    """The hyper-parameters an algorithm runs with (its public attributes)."""
    keys = ("n_factors", "n_epochs", "biased", "init_mean", "init_std_dev", "lr_bu", "lr_bi", "lr_pu", "lr_qi",
            "lr_yj", "reg_bu", "reg_bi", "reg_pu", "reg_qi", "reg_yj", "random_state", "k", "min_k", "sim_options",
            "bsl_options")
    return {k: _jsonable(getattr(algo, k)) for k in keys if hasattr(algo, k)}


def surprise_predictions(name: str, users: np.ndarray, items: np.ndarray, ratings: np.ndarray,
                         test_users: np.ndarray, test_items: np.ndarray, rating_range: tuple[float, float],
                         seed: int, n_epochs: int | None = None) -> dict:
    """Fit a surprise algorithm on exactly these training triples (ids as strings) and
    predict the test pairs; surprise clips to `rating_range` and, for a user or item it never
    saw, predicts from what it knows (the global mean plus any known bias).
    Returns {pred, fit_s, predict_s, settings}."""
    from surprise import Dataset, Reader

    algo = surprise_algorithm(name, seed, n_epochs)
    # surprise reads triples from a file or a pandas frame; a file keeps pandas out.
    with tempfile.TemporaryDirectory(prefix="gen-bench-surprise-") as tmp:
        path = Path(tmp) / "train.tsv"
        path.write_text("".join(f"{u}\t{i}\t{float(r)!r}\n" for u, i, r in zip(users, items, ratings)))
        reader = Reader(line_format="user item rating", sep="\t", rating_scale=tuple(float(v) for v in rating_range))
        trainset = Dataset.load_from_file(str(path), reader).build_full_trainset()
    start = time.perf_counter()
    algo.fit(trainset)
    fitted = time.perf_counter()
    pred = np.fromiter((algo.predict(str(u), str(i)).est for u, i in zip(test_users, test_items)),
                       dtype=np.float64, count=len(test_users))
    return {"pred": pred, "fit_s": fitted - start, "predict_s": time.perf_counter() - fitted,
            "settings": surprise_settings(algo)}
