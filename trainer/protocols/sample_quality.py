"""Sample quality on images: DESIGN.md's protocol ("Quality protocols").

A small classifier is trained on the real training split; generated samples are scored by
the Frechet distance between their features and the real test features in that
classifier's hidden layer (FID with a small, local network instead of Inception), and by
class coverage: how many classes the classifier finds among the samples and the KL of
their class histogram from uniform.

Callers scale images to [0, 1] and flatten them to rows before calling these functions.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

HIDDEN_UNITS = 64
MAX_ITER = 200
FRECHET_EPS = 1e-6
# Imaginary parts of sqrtm up to this size are rounding error (the pytorch-fid tolerance).
IMAGINARY_ATOL = 1e-3


def _features(name: str, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"{name} must be 2-D with at least 2 rows, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} has non-finite values")
    return x


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray,
                     eps: float = FRECHET_EPS) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (rows = samples).

    d = ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 sqrtm(S_a S_b)), S the unbiased covariance,
    as in the standard FID code: when sqrtm of the product is not finite (singular
    covariances), eps * I is added to both covariances; small imaginary parts from
    rounding are dropped, large ones raise ValueError. Tiny negative results from rounding
    are clipped to 0.
    """
    a = _features("features_a", features_a)
    b = _features("features_b", features_b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"features_a has {a.shape[1]} columns but features_b has {b.shape[1]}")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    s_a = np.atleast_2d(np.cov(a, rowvar=False))
    s_b = np.atleast_2d(np.cov(b, rowvar=False))
    # Dead ReLU units make the covariances singular; the standard code silences this
    # warning too (disp=False) and falls back to eps * I only on a non-finite result.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(s_a @ s_b)
    if not np.isfinite(covmean).all():
        offset = np.eye(len(s_a)) * eps
        covmean = linalg.sqrtm((s_a + offset) @ (s_b + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=IMAGINARY_ATOL):
            worst = float(np.max(np.abs(np.diagonal(covmean).imag)))
            raise ValueError(f"sqrtm of the covariance product has imaginary part {worst:.3g}")
        covmean = covmean.real
    diff = mu_a - mu_b
    d = float(diff @ diff + np.trace(s_a) + np.trace(s_b) - 2.0 * np.trace(covmean))
    return max(d, 0.0)


def class_coverage(predicted_labels: np.ndarray, n_classes: int) -> dict:
    """Class coverage of samples from the labels a classifier predicts for them.

    Returns {"classes_found": classes predicted at least once, "n_classes",
    "kl_from_uniform": KL(histogram || uniform) in nats with 0 * log 0 = 0 (0 for a
    uniform histogram, log(n_classes) when every sample falls in one class),
    "histogram": list of n_classes counts}.
    """
    if n_classes < 1:
        raise ValueError(f"n_classes must be at least 1, got {n_classes}")
    labels = np.asarray(predicted_labels)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(
            f"predicted_labels must be a non-empty 1-D array, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.asarray(labels, dtype=np.float64) % 1 == 0):
            raise ValueError(f"predicted_labels must be integers, got dtype {labels.dtype}")
        labels = labels.astype(np.int64)
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(
            f"predicted_labels must lie in 0..{n_classes - 1}, got range "
            f"{labels.min()}..{labels.max()}")
    hist = np.bincount(labels, minlength=n_classes)
    p = hist / hist.sum()
    nz = p > 0
    kl = float(np.sum(p[nz] * np.log(p[nz] * n_classes)))
    return {
        "classes_found": int(nz.sum()),
        "n_classes": int(n_classes),
        "kl_from_uniform": max(kl, 0.0),
        "histogram": hist.tolist(),
    }


def fit_feature_classifier(x_train: np.ndarray, y_train: np.ndarray,
                           seed: int = 0) -> MLPClassifier:
    """A one-hidden-layer (64 ReLU units) MLPClassifier fitted on flattened rows that the
    caller has scaled to [0, 1]; its hidden layer is the feature space of
    `classifier_features`. Deterministic for a given seed."""
    x = np.asarray(x_train, dtype=np.float64)
    y = np.asarray(y_train)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"x_train must be a non-empty 2-D array, got shape {x.shape}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"y_train must have shape ({x.shape[0]},), got {y.shape}")
    clf = MLPClassifier(hidden_layer_sizes=(HIDDEN_UNITS,), activation="relu",
                        early_stopping=False, max_iter=MAX_ITER, random_state=seed)
    # A budget of MAX_ITER epochs is the protocol; hitting it is not a failure.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x, y)
    return clf


def classifier_features(clf: MLPClassifier, x: np.ndarray) -> np.ndarray:
    """Hidden-layer activations relu(x @ W0 + b0) of a fitted `fit_feature_classifier`
    model, shape (n, hidden units)."""
    if not hasattr(clf, "coefs_"):
        raise ValueError(f"clf must be a fitted MLPClassifier, got {type(clf).__name__}")
    if getattr(clf, "activation", "relu") != "relu":
        raise ValueError(f"clf must use relu activation, got {clf.activation!r}")
    x = np.asarray(x, dtype=np.float64)
    w0, b0 = clf.coefs_[0], clf.intercepts_[0]
    if x.ndim != 2 or x.shape[1] != w0.shape[0]:
        raise ValueError(f"x must have shape (n, {w0.shape[0]}), got {x.shape}")
    return np.maximum(x @ w0 + b0, 0.0)
