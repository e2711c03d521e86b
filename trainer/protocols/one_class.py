"""One-class anomaly detection: the fixed split, calibration of thresholds, AUROC."""

from __future__ import annotations

import numpy as np

QUANTILE_LEVELS = np.linspace(0.0, 1.0, 101)
MIN_CALIBRATION_ROWS = 200   # held out even past calibration_fraction, up to MAX_CALIBRATION_SHARE
MAX_CALIBRATION_SHARE = 0.25


def calibration_size(n_train: int, fraction: float) -> int:
    """Rows to hold out for calibration: `fraction` of the training rows, raised towards
    MIN_CALIBRATION_ROWS (but never above MAX_CALIBRATION_SHARE of them) on small data,
    since a 99th percentile estimated from a dozen rows is just their maximum."""
    floor = min(MIN_CALIBRATION_ROWS, int(MAX_CALIBRATION_SHARE * n_train))
    return max(2, int(round(fraction * n_train)), floor)


def protocol_split(n: int, y: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """DESIGN.md's fixed split: 80/20, stratified by label when there are labels, random_state=0."""
    index = np.arange(n)
    stratify = y if y is not None and np.unique(y, return_counts=True)[1].min() >= 2 else None
    from sklearn.model_selection import train_test_split  # here: scikit-learn and scipy weigh ~140 MB resident

    train, test = train_test_split(index, test_size=0.2, stratify=stratify, random_state=0)
    return np.sort(train), np.sort(test)


def calibrate(scores: np.ndarray, contamination: float) -> dict:
    """Threshold = the (1 - contamination) quantile of held-out normal scores, plus the
    101 percentiles the runtime interpolates to turn a score into a normal-quantile."""
    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    # A fresh normal row exceeds the max of n exchangeable scores with probability 1/(n+1).
    floor = 1.0 / (n + 1)
    return {
        "threshold": float(np.quantile(scores, 1.0 - contamination)),
        "expected_false_alarm_rate": max(contamination, floor),
        "contamination": contamination,
        "n_calibration": int(len(scores)),
        "quantile_levels": QUANTILE_LEVELS.round(4).tolist(),
        "quantile_values": np.quantile(scores, QUANTILE_LEVELS).tolist(),
    }


def one_class_auroc(scores: np.ndarray, y: np.ndarray, normal_class: int) -> float:
    """AUROC of `scores` for anomaly = (label != normal_class)."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score((y != normal_class).astype(int), scores))
