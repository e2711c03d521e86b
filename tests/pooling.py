"""A numpy/scipy reference of the reconstruction score (`pool`): the mean of the per-feature
squared errors, or for images (pool=smooth) the root mean square of each channel's error map
after scipy's Gaussian filter (zero beyond the border, truncated at 2 standard deviations of
max(1, shorter side / 16) pixels)."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter


def smoothed_energy(errors: np.ndarray) -> np.ndarray:
    """errors (n, C, H, W) -> (n,) float64."""
    errors = np.asarray(errors, dtype=np.float64)
    sigma = max(1.0, min(errors.shape[-2:]) / 16)
    blurred = gaussian_filter(errors, sigma=(0, 0, sigma, sigma), mode="constant", truncate=2.0)
    return np.sqrt((blurred ** 2).reshape(len(errors), -1).mean(axis=1))


def reference_score(errors: np.ndarray, pool: str) -> np.ndarray:
    """The reconstruction score of per-feature errors (n, *shape) under option `pool`."""
    if pool == "smooth":
        return smoothed_energy(errors)
    return np.asarray(errors, dtype=np.float64).reshape(len(errors), -1).mean(axis=1)
