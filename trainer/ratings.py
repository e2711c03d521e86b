"""Completion families' training data (DESIGN.md's completion protocol): the rating matrix of
the training ratings and its DataSpec, and the test RMSE/MAE of the `complete` graph next to the
global-mean and user/item-bias baselines."""

from __future__ import annotations

import numpy as np
import torch

from gen.runtime.errors import InputError
from gen.runtime.manifest import DataSpec, PreprocessSpec, RatingsSpec
from gen.runtime.ratings import RatingsTable, rating_rows

from .config import TrainConfig
from .data import RatingsData
from .protocols.completion import bias_baseline, completion_split, mae, rmse
from .torch_run import TorchRunner


def _sorted_ids(ids: np.ndarray, id_type: str) -> list[str]:
    unique = np.unique(ids.astype(str))
    return sorted(unique.tolist(), key=int) if id_type == "int" else unique.tolist()


def _subset(table: RatingsTable, idx: np.ndarray) -> RatingsTable:
    return RatingsTable(table.users[idx], table.items[idx], table.ratings[idx], table.lines[idx],
                        table.id_type, table.source)


def ratings_rows(cfg: TrainConfig, data: RatingsData) -> tuple[np.ndarray, DataSpec, np.ndarray]:
    """The rating matrix of the training ratings (rows: items or users, as the family says;
    NaN where no rating was observed), its DataSpec, and the test rating indices. The split
    is DESIGN.md's completion protocol: RandomState(seed) permutation, first 90% train."""
    table = data.table
    if len(table) < 10:
        raise InputError(f"{data.source}: only {len(table)} ratings; a completion model needs at least 10")
    train_idx, test_idx = completion_split(len(table), seed=cfg.run.seed)
    fit = _subset(table, train_idx)
    orientation = cfg.family.ratings_rows(cfg.options)
    users, items = _sorted_ids(fit.users, table.id_type), _sorted_ids(fit.items, table.id_type)
    ratings = RatingsSpec(orientation=orientation, users=users, items=items, id_type=table.id_type,
                          rating_range=[float(fit.ratings.min()), float(fit.ratings.max())],
                          global_mean=float(fit.ratings.mean()), n_ratings=int(len(fit)))
    values, mask = rating_rows(fit, orientation, ratings.row_ids, ratings.column_ids)
    rows = np.where(mask > 0, values, np.nan).astype(np.float32)
    spec = DataSpec(source=data.source, kind="ratings", shape=[len(ratings.column_ids)],
                    raw_range=list(ratings.rating_range),
                    preprocessing=PreprocessSpec(offset=ratings.global_mean, scale=1.0),
                    n_train=int(len(fit)), ratings=ratings)
    return rows, spec, test_idx


def completion_evaluation(graphs: dict, spec: DataSpec, rows: np.ndarray, table: RatingsTable,
                           test_idx: np.ndarray, device: torch.device) -> dict:
    """Test RMSE/MAE of the `complete` graph (in raw units, as the bundle serves it) on the
    held-out ratings, next to the global-mean and user/item-bias baselines on the same split.
    Test pairs whose user or item never appeared in training get the global mean."""
    r = spec.ratings
    mask = (~np.isnan(rows)).astype(np.float32)
    runner = TorchRunner(graphs["complete"], spec, device)
    pred = np.concatenate([runner.run({"x": np.nan_to_num(rows[i:i + 1024]), "mask": mask[i:i + 1024]},
                                      outputs=["completed"])["completed"] for i in range(0, len(rows), 1024)])
    test = _subset(table, test_idx)
    row_of, col_of = (test.items, test.users) if r.orientation == "item" else (test.users, test.items)
    row_pos = {v: i for i, v in enumerate(r.row_ids)}
    col_pos = {v: j for j, v in enumerate(r.column_ids)}
    i = np.array([row_pos.get(v, -1) for v in row_of])
    j = np.array([col_pos.get(v, -1) for v in col_of])
    known = (i >= 0) & (j >= 0)
    got = np.where(known, pred[np.maximum(i, 0), np.maximum(j, 0)], r.global_mean)
    train_idx = np.setdiff1d(np.arange(len(table)), test_idx)
    base = bias_baseline(table.users[train_idx], table.items[train_idx], table.ratings[train_idx],
                         test.users, test.items)
    return {"rmse": rmse(got, test.ratings), "mae": mae(got, test.ratings),
            "rmse_global_mean": rmse(np.full(len(test), r.global_mean), test.ratings),
            "rmse_bias_baseline": rmse(np.clip(base, *r.rating_range), test.ratings),
            "n_test": int(len(test)), "n_test_unseen": int((~known).sum())}
