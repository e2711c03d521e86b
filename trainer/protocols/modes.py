"""Mode collapse: DESIGN.md's ring-8 and grid-25 protocol ("Quality protocols").

Ring-8 is 8 Gaussians of std 0.02 on a circle of radius 2; grid-25 is 25 Gaussians of std
0.05 at (-4..4 step 2)^2. A generator draws 2,500 samples; a mode is captured when some
sample lies within 3 std of its centre (Euclidean distance), and the share of samples
within 3 std of any centre measures how many samples are of high quality.
"""

from __future__ import annotations

import numpy as np

RING8_RADIUS = 2.0
RING8_STD = 0.02
RING8_CENTRES = RING8_RADIUS * np.stack(
    [np.cos(2 * np.pi * np.arange(8) / 8), np.sin(2 * np.pi * np.arange(8) / 8)], axis=1)

GRID25_STD = 0.05
GRID25_CENTRES = np.array(
    [(x, y) for x in range(-4, 5, 2) for y in range(-4, 5, 2)], dtype=np.float64)

N_SAMPLES = 2500   # samples the protocol draws from a generator
N_STD = 3.0

# Bound on distances held at once: 2^22 float64 = 32 MiB.
_CHUNK_ELEMENTS = 1 << 22


def mode_coverage(samples: np.ndarray, centres: np.ndarray, std: float,
                  n_std: float = N_STD) -> dict:
    """Modes captured and high-quality share of `samples` (N, 2) against `centres` (K, 2).

    Returns {"modes": centres with at least one sample within n_std * std,
    "n_modes": K, "high_quality": share of samples within n_std * std of any centre,
    "n_samples": N, "per_mode": list of K counts of samples within n_std * std of each
    centre}. Non-finite samples count as far from every centre.
    """
    samples = np.asarray(samples, dtype=np.float64)
    centres = np.asarray(centres, dtype=np.float64)
    if samples.ndim != 2 or samples.shape[0] == 0:
        raise ValueError(f"samples must be a non-empty 2-D array, got shape {samples.shape}")
    if centres.ndim != 2 or centres.shape[0] == 0 or centres.shape[1] != samples.shape[1]:
        raise ValueError(
            f"centres must be (K, {samples.shape[1]}) with K >= 1, got shape {centres.shape}")
    if not std > 0:
        raise ValueError(f"std must be positive, got {std}")
    if not n_std > 0:
        raise ValueError(f"n_std must be positive, got {n_std}")
    n, k = len(samples), len(centres)
    radius2 = (n_std * std) ** 2
    per_mode = np.zeros(k, dtype=np.int64)
    near_any = 0
    step = max(1, _CHUNK_ELEMENTS // k)
    for start in range(0, n, step):
        block = samples[start:start + step]
        d2 = ((block[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
        # NaN distances compare False, so a non-finite sample is near nothing.
        near = d2 <= radius2
        per_mode += near.sum(axis=0)
        near_any += int(near.any(axis=1).sum())
    return {
        "modes": int((per_mode > 0).sum()),
        "n_modes": int(k),
        "high_quality": near_any / n,
        "n_samples": int(n),
        "per_mode": per_mode.tolist(),
    }


def ring8_coverage(samples: np.ndarray) -> dict:
    """`mode_coverage` against the ring-8 centres with std 0.02 and 3 std."""
    return mode_coverage(samples, RING8_CENTRES, RING8_STD)


def grid25_coverage(samples: np.ndarray) -> dict:
    """`mode_coverage` against the grid-25 centres with std 0.05 and 3 std."""
    return mode_coverage(samples, GRID25_CENTRES, GRID25_STD)
