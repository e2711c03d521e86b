"""`Detector`: gen's anomaly families as a scikit-learn estimator with PyOD's attributes
(issue 24). `fit(X)` trains through `gen.fit` (the same path as `gen train`),
exports a bundle and serves it with the runtime; every method after that is onnxruntime only.

    from gen import Detector
    det = Detector(model="ae", contamination=0.05).fit(X_train)
    det.decision_function(X)     # anomaly scores, higher = more anomalous (PyOD's convention)
    det.predict(X)               # 1 = anomaly, 0 = normal (PyOD's convention)
    det.save("artifacts/det")    # a bundle: Detector.load(path) or gen.runtime.load(path), torch-free

Conventions, as PyOD's `BaseDetector`: `decision_scores_`, `threshold_`, `labels_` after
`fit`; `predict` gives 0/1; `score_samples` is the negated score (scikit-learn's convention:
higher = more normal). One difference: `threshold_` is the bundle's threshold, the
(1 - contamination) quantile of the scores of held-out training rows gen calibrates on (the
rows the model did not fit), not of the rows it fitted, whose scores are optimistically low.
`fit` ignores `y` (unsupervised, as PyOD's detectors; train on normal rows).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted, validate_data


class Detector(BaseEstimator):
    """An anomaly detector: model (`auto` or a family that scores, `gen models`),
    contamination (the share of normal rows the threshold flags), epochs (None: gen's budget
    from the data), seed, device (training and serving), options (the family's options, e.g.
    {"latent_dim": 8})."""

    def __init__(self, model: str = "auto", contamination: float = 0.01, epochs: int | None = None, seed: int = 0,
                 device: str = "cpu", options: dict | None = None):
        self.model = model
        self.contamination = contamination
        self.epochs = epochs
        self.seed = seed
        self.device = device
        self.options = options

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        tags.target_tags.required = False
        return tags

    # -- fitting -----------------------------------------------------------------------------
    def fit(self, X, y=None):
        """Train on rows X (y is ignored); then `decision_scores_`, `threshold_`, `labels_`."""
        from .fitting import fit

        X = validate_data(self, X, dtype=np.float32, ensure_min_samples=2)
        if self.model != "auto":  # a family without an anomaly score is refused before any training
            from gen.runtime.errors import ConfigError
            from gen.trainer import registry

            family = registry.get(self.model)
            if family.score_kind is None:
                scoring = [f.name for f in registry.families().values() if f.score_kind is not None]
                raise ConfigError(f"Detector(model={self.model!r}): {self.model} gives no anomaly score; "
                                  f"families that do: {', '.join(scoring)}")
        folder = Path(tempfile.mkdtemp(prefix="gen-detector-"))
        try:
            run = fit(X, model=self.model, out=folder / "run", epochs=self.epochs, seed=self.seed,
                      contamination=self.contamination, device=self.device, threads=None, **(self.options or {}))
            run.export(folder / "bundle")
            shutil.rmtree(folder / "run", ignore_errors=True)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        self._attach(folder)
        self.decision_scores_ = self.model_.score(X)
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(int)
        return self

    def _attach(self, folder: Path) -> None:
        """Serve the bundle in `folder`/bundle (owned by this detector, removed with it)."""
        from gen.runtime import load

        import weakref

        previous = self.__dict__.get("_cleanup")
        if previous is not None:  # a refit: the last fit's bundle goes now, not with the detector
            previous()
        self._folder = folder
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(folder), True)
        self.model_ = load(folder / "bundle", device=self.device)
        self.threshold_ = float(self.model_.threshold)
        self.family_ = self.model_.family

    # -- scoring -----------------------------------------------------------------------------
    def _rows(self, X) -> np.ndarray:
        check_is_fitted(self, "model_")
        return validate_data(self, X, dtype=np.float32, reset=False)

    def decision_function(self, X) -> np.ndarray:
        """Anomaly scores of rows X (higher = more anomalous), float64, from the bundle."""
        rows = self._rows(X)  # first: NotFittedError before any attribute of a fit is read
        return self.model_.score(rows)

    def score_samples(self, X) -> np.ndarray:
        """scikit-learn's convention: higher = more normal (the negated `decision_function`)."""
        return -self.decision_function(X)

    def predict(self, X) -> np.ndarray:
        """1 where the score is above `threshold_` (an anomaly), else 0, as PyOD's detectors."""
        return (self.decision_function(X) > self.threshold_).astype(int)

    def fit_predict(self, X, y=None) -> np.ndarray:
        return self.fit(X).labels_

    def predict_proba(self, X) -> np.ndarray:
        """(n, 2): [P(normal), P(anomaly)] read as the row's quantile among held-out normal
        scores (the bundle's calibration): 0.99 anomaly means above 99% of normal rows."""
        scores = self.decision_function(X)  # first: NotFittedError before any attribute of a fit is read
        q = self.model_.normal_quantile(scores)
        return np.column_stack([1.0 - q, q])

    # -- saving ------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Copy the fitted detector's bundle to `path` (a new folder): serve it with
        `Detector.load` or `gen.runtime.load`, with no torch."""
        check_is_fitted(self, "model_")
        shutil.copytree(self._folder / "bundle", path)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> Detector:
        """A fitted detector from a bundle (saved by `save` or made by `gen export`), torch-free.
        It scores and predicts; `decision_scores_` and `labels_` belong to a fit and are absent."""
        from gen.runtime import load

        model = load(path, device=device)
        model.require("score")
        det = cls(model=model.family, contamination=model.manifest.scoring.contamination, device=device)
        folder = Path(tempfile.mkdtemp(prefix="gen-detector-"))
        shutil.copytree(path, folder / "bundle")
        det._attach(folder)
        det.n_features_in_ = int(model.manifest.data.size)
        return det

    # -- pickling (scikit-learn's clone, joblib and GridSearchCV copy fitted estimators) -------
    def __getstate__(self):
        state = {k: v for k, v in self.__dict__.items() if k not in ("model_", "_folder", "_cleanup")}
        if "_folder" in self.__dict__:  # the bundle's files travel as bytes; their hashes are checked on load
            bundle = self._folder / "bundle"
            state["_bundle_files"] = {str(p.relative_to(bundle)): p.read_bytes()
                                      for p in sorted(bundle.rglob("*")) if p.is_file()}
        return state

    def __setstate__(self, state):
        files = state.pop("_bundle_files", None)
        self.__dict__.update(state)
        if files is not None:
            folder = Path(tempfile.mkdtemp(prefix="gen-detector-"))
            for name, data in files.items():
                target = folder / "bundle" / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            self._attach(folder)
