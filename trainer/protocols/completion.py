"""Matrix completion: DESIGN.md's MovieLens protocol ("Quality protocols").

The ratings are permuted with `numpy.random.RandomState(0)`; the first 90% of the
permutation is the training set and the rest the test set; the figures are RMSE and MAE on
the test ratings. Two reference predictors sit beside the split so that every completion
model is reported next to what a trivial one scores: the global mean, and the classic
baseline of global mean + regularised user bias + regularised item bias.
"""

from __future__ import annotations

import numpy as np

DEFAULT_SEED = 0
DEFAULT_TRAIN_SHARE = 0.9


def completion_split(
    n_ratings: int, seed: int = DEFAULT_SEED, train_share: float = DEFAULT_TRAIN_SHARE
) -> tuple[np.ndarray, np.ndarray]:
    """Train and test row indices of the MovieLens protocol.

    `perm = numpy.random.RandomState(seed).permutation(n_ratings)`; the training indices
    are `perm[:n_train]` and the test indices `perm[n_train:]`, in permutation order, with
    `n_train = int(train_share * n_ratings)`, i.e. rounded DOWN (100,000 ratings give
    90,000 / 10,000; 15 ratings give 13 / 2).
    """
    if isinstance(n_ratings, (bool, np.bool_)) or not isinstance(n_ratings, (int, np.integer)):
        raise ValueError(f"n_ratings must be an integer, got {n_ratings!r}")
    if n_ratings < 2:
        raise ValueError(f"n_ratings must be at least 2, got {n_ratings}")
    if not 0.0 < train_share < 1.0:
        raise ValueError(f"train_share must lie strictly between 0 and 1, got {train_share}")
    n_train = int(train_share * n_ratings)
    if n_train == 0 or n_train == n_ratings:
        raise ValueError(
            f"train_share={train_share} leaves an empty split of n_ratings={n_ratings}")
    perm = np.random.RandomState(seed).permutation(int(n_ratings))
    return perm[:n_train], perm[n_train:]


def _paired(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    if pred.shape != true.shape:
        raise ValueError(f"pred has shape {pred.shape} but true has shape {true.shape}")
    if pred.size == 0:
        raise ValueError(f"pred and true are empty (shape {pred.shape})")
    return pred, true


def rmse(pred: np.ndarray, true: np.ndarray) -> float:
    """Root mean squared error, computed in float64."""
    pred, true = _paired(pred, true)
    return float(np.sqrt(np.mean((pred - true) ** 2)))


def mae(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean absolute error, computed in float64."""
    pred, true = _paired(pred, true)
    return float(np.mean(np.abs(pred - true)))


def _check_ratings(users: np.ndarray, items: np.ndarray, ratings: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    users, items = np.asarray(users), np.asarray(items)
    ratings = np.asarray(ratings, dtype=np.float64)
    if not (users.ndim == items.ndim == ratings.ndim == 1):
        raise ValueError(
            f"users, items and ratings must be 1-D, got shapes {users.shape}, "
            f"{items.shape}, {ratings.shape}")
    if not (len(users) == len(items) == len(ratings)) or len(ratings) == 0:
        raise ValueError(
            f"users, items and ratings must have the same non-zero length, got "
            f"{len(users)}, {len(items)}, {len(ratings)}")
    return users, items, ratings


def _check_test(users_test: np.ndarray, items_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    users_test, items_test = np.asarray(users_test), np.asarray(items_test)
    if users_test.ndim != 1 or users_test.shape != items_test.shape:
        raise ValueError(
            f"users_test and items_test must be 1-D of one length, got shapes "
            f"{users_test.shape} and {items_test.shape}")
    return users_test, items_test


def global_mean_baseline(
    users_train: np.ndarray, items_train: np.ndarray, ratings_train: np.ndarray,
    users_test: np.ndarray, items_test: np.ndarray,
) -> np.ndarray:
    """Predict the mean training rating for every test pair (same signature as
    `bias_baseline`, so the two are interchangeable)."""
    _, _, ratings_train = _check_ratings(users_train, items_train, ratings_train)
    users_test, _ = _check_test(users_test, items_test)
    return np.full(len(users_test), ratings_train.mean(), dtype=np.float64)


def _lookup(train_ids: np.ndarray, bias: np.ndarray, test_ids: np.ndarray) -> np.ndarray:
    # train_ids is sorted (np.unique); an id it lacks gets bias 0, the prior mean.
    pos = np.clip(np.searchsorted(train_ids, test_ids), 0, len(train_ids) - 1)
    known = train_ids[pos] == test_ids
    return np.where(known, bias[pos], 0.0)


def bias_baseline(
    users_train: np.ndarray, items_train: np.ndarray, ratings_train: np.ndarray,
    users_test: np.ndarray, items_test: np.ndarray,
    reg: float = 10.0, n_passes: int = 5,
) -> np.ndarray:
    """Predict mu + b_user + b_item, the classic collaborative-filtering baseline.

    mu is the mean training rating; the biases minimise the squared error plus
    `reg * (sum b_u^2 + sum b_i^2)` by `n_passes` alternating exact updates
    (b_u = sum(r - mu - b_i) / (reg + n_u), then likewise for b_i). Users or items absent
    from the training set get bias 0. Ids may be any sortable values, not only 0..n-1.
    """
    users_train, items_train, ratings_train = _check_ratings(
        users_train, items_train, ratings_train)
    users_test, items_test = _check_test(users_test, items_test)
    if not reg >= 0.0:
        raise ValueError(f"reg must be non-negative, got {reg}")
    if n_passes < 1:
        raise ValueError(f"n_passes must be at least 1, got {n_passes}")
    user_ids, u = np.unique(users_train, return_inverse=True)
    item_ids, i = np.unique(items_train, return_inverse=True)
    mu = ratings_train.mean()
    n_u = np.bincount(u, minlength=len(user_ids)).astype(np.float64)
    n_i = np.bincount(i, minlength=len(item_ids)).astype(np.float64)
    b_u = np.zeros(len(user_ids))
    b_i = np.zeros(len(item_ids))
    resid = ratings_train - mu
    for _ in range(n_passes):
        b_u = np.bincount(u, weights=resid - b_i[i], minlength=len(user_ids)) / (reg + n_u)
        b_i = np.bincount(i, weights=resid - b_u[u], minlength=len(item_ids)) / (reg + n_i)
    return mu + _lookup(user_ids, b_u, users_test) + _lookup(item_ids, b_i, items_test)
