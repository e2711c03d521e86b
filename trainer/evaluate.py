"""Calibration of anomaly thresholds and the one-class evaluation protocol."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

QUANTILE_LEVELS = np.linspace(0.0, 1.0, 101)


def protocol_split(n: int, y: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """DESIGN.md's fixed split: 80/20, stratified by label when there are labels, random_state=0."""
    index = np.arange(n)
    stratify = y if y is not None and np.bincount(y - y.min()).min() >= 2 else None
    train, test = train_test_split(index, test_size=0.2, stratify=stratify, random_state=0)
    return np.sort(train), np.sort(test)


def calibrate(scores: np.ndarray, contamination: float) -> dict:
    """Threshold = the (1 - contamination) quantile of held-out normal scores, plus the
    101 percentiles the runtime interpolates to turn a score into a normal-quantile."""
    scores = np.asarray(scores, dtype=np.float64)
    return {
        "threshold": float(np.quantile(scores, 1.0 - contamination)),
        "contamination": contamination,
        "n_calibration": int(len(scores)),
        "quantile_levels": QUANTILE_LEVELS.round(4).tolist(),
        "quantile_values": np.quantile(scores, QUANTILE_LEVELS).tolist(),
    }


def one_class_auroc(scores: np.ndarray, y: np.ndarray, normal_class: int) -> float:
    """AUROC of `scores` for anomaly = (label != normal_class)."""
    return float(roc_auc_score((y != normal_class).astype(int), scores))
