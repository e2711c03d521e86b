"""Rating predictions from a completion bundle (`gen complete`): known ratings in, predicted
(user, item) pairs out, each marked with where its value came from.

The bundle's `complete` graph completes rows (items for an item-based model, users for a
user-based one) from their observed entries. A row the model never saw (a new item, or a
new user for user-based) is simply a row with some observed entries: it is folded in from the
given ratings without retraining. What the graph cannot do is place a column it was not
trained with (a new user of an item-based model), nor predict for a row with no known
rating; those pairs fall back to a mean, and the `source` column says which:

- `model`: the graph's prediction (clipped to the rating range);
- `user_mean` / `item_mean`: the column entity is unknown to the model; the mean of its
  given ratings;
- `global_mean`: nothing is known to predict from (no given rating of the row, or an
  unknown column with no ratings); the training mean.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .model import GenModel
from .outputs import StreamWriter
from .ratings import RatingsTable, check_against

COMPLETION_FORMATS = (".csv", ".parquet", ".npy")
# `--all` and `--top-k` hold about this many predicted pairs at a time, whatever the grid's size
PAIR_BLOCK = 1 << 16
SOURCES = np.array(["model", "user_mean", "item_mean", "global_mean"], dtype=object)
MODEL, USER_MEAN, ITEM_MEAN, GLOBAL = range(4)


@dataclass
class Predictions:
    """Predicted pairs: user and item ids, the predicted rating and its source."""

    users: np.ndarray
    items: np.ndarray
    prediction: np.ndarray
    source: np.ndarray

    def __len__(self) -> int:
        return len(self.prediction)


def _ordered_ids(ids: np.ndarray, id_type: str) -> list[str]:
    unique = np.unique(ids.astype(str)).tolist()
    return sorted(unique, key=int) if id_type == "int" else unique


class Completer:
    """Predictions of a completion bundle from a table of known ratings."""

    def __init__(self, model: GenModel, table: RatingsTable):
        model.require("complete")
        self.model = model
        self.spec = spec = model.manifest.data.ratings
        check_against(table, spec.id_type, spec.rating_range)
        self.table = table
        self.item_based = spec.orientation == "item"
        rows_of, cols_of = (table.items, table.users) if self.item_based else (table.users, table.items)
        known_rows = set(spec.row_ids)
        new_rows = [r for r in _ordered_ids(rows_of, spec.id_type) if r not in known_rows]
        self.row_ids = [*spec.row_ids, *new_rows]  # rows the model never saw are folded in
        self.row_pos = {r: i for i, r in enumerate(self.row_ids)}
        self.col_pos = {c: j for j, c in enumerate(spec.column_ids)}
        r = np.fromiter((self.row_pos[v] for v in rows_of), dtype=np.int64, count=len(table))
        c = np.fromiter((self.col_pos.get(v, -1) for v in cols_of), dtype=np.int64, count=len(table))
        placed = c >= 0
        order = np.argsort(r[placed], kind="stable")
        self._r, self._c = r[placed][order], c[placed][order]
        self._v = table.ratings[placed][order].astype(np.float32)
        self._start = np.searchsorted(self._r, np.arange(len(self.row_ids) + 1))
        # Means of the column entities' given ratings, for columns the model cannot place.
        col_ids, inverse = np.unique(cols_of.astype(str), return_inverse=True)
        sums = np.bincount(inverse, weights=table.ratings)
        counts = np.bincount(inverse)
        self.col_mean = dict(zip(col_ids.tolist(), (sums / counts).tolist()))

    # -- the graph on blocks of rows -------------------------------------------------------
    def _block(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n_cols = len(self.spec.column_ids)
        values = np.zeros((len(rows), n_cols), dtype=np.float32)
        mask = np.zeros_like(values)
        for k, row in enumerate(rows):
            a, b = self._start[row], self._start[row + 1]
            values[k, self._c[a:b]] = self._v[a:b]
            mask[k, self._c[a:b]] = 1.0
        return values, mask

    def observed(self, rows: np.ndarray) -> np.ndarray:
        """How many given ratings each row has on the model's columns."""
        return self._start[rows + 1] - self._start[rows]

    def predict_pairs(self, users: np.ndarray, items: np.ndarray) -> Predictions:
        """Predictions for the (user, item) pairs listed (ids as strings)."""
        users, items = np.asarray(users, dtype=object), np.asarray(items, dtype=object)
        row_of, col_of = (items, users) if self.item_based else (users, items)
        r = np.fromiter((self.row_pos.get(v, -1) for v in row_of), dtype=np.int64, count=len(users))
        c = np.fromiter((self.col_pos.get(v, -1) for v in col_of), dtype=np.int64, count=len(users))
        pred = np.full(len(users), self.spec.global_mean, dtype=np.float64)
        source = np.full(len(users), "global_mean", dtype=object)
        usable = (r >= 0) & (c >= 0)
        usable[usable] = self.observed(r[usable]) > 0
        rows = np.unique(r[usable])
        step = self.model.batch_size
        for i in range(0, len(rows), step):
            block = rows[i:i + step]
            completed = self.model.complete(*self._block(block))
            hit = usable & np.isin(r, block)
            pred[hit] = completed[np.searchsorted(block, r[hit]), c[hit]]
        source[usable] = "model"
        unplaced = c < 0
        fallback = "user_mean" if self.item_based else "item_mean"
        for k in np.flatnonzero(unplaced):
            mean = self.col_mean.get(col_of[k])
            if mean is not None:
                pred[k], source[k] = mean, fallback
        lo, hi = self.spec.rating_range
        return Predictions(users, items, np.clip(pred, lo, hi), source)

    # -- the three ways of asking ------------------------------------------------------------
    def entities(self) -> tuple[list[str], list[str]]:
        """The users of the table, and every item the model or the table knows, in order."""
        spec, table = self.spec, self.table
        users = _ordered_ids(table.users, spec.id_type)
        items = list(dict.fromkeys([*spec.items, *_ordered_ids(table.items, spec.id_type)]))
        return users, items

    @property
    def id_width(self) -> int:
        """Characters of the longest user or item id (the NPY output's text columns)."""
        users, items = self.entities()
        return max([1, *map(len, users), *map(len, items)])

    def candidates(self) -> tuple[np.ndarray, np.ndarray]:
        """Every (user, item) pair without a given rating, for the users in the table and
        every item the model or the table knows, user by user (in memory; `iter_missing` streams
        them with their predictions)."""
        users, items = self.entities()
        known = set(zip(self.table.users.astype(str).tolist(), self.table.items.astype(str).tolist()))
        grid_u = np.repeat(np.asarray(users, dtype=object), len(items))
        grid_i = np.tile(np.asarray(items, dtype=object), len(users))
        keep = np.fromiter(((u, i) not in known for u, i in zip(grid_u, grid_i)), dtype=bool, count=len(grid_u))
        return grid_u[keep], grid_i[keep]

    def _grid(self):
        """The (user, item) grid block by block of model rows (items for an item-based model,
        users for a user-based one), at most about PAIR_BLOCK pairs each: yields (indices of
        the block's row entities, predictions (r, C), source codes (r, C), whether each pair
        lacks a given rating (r, C)), C the other entities. Rows with a given rating go through
        the graph; other pairs get the fallbacks of `predict_pairs`."""
        users, items = self.entities()
        rows_ent, cols_ent = (items, users) if self.item_based else (users, items)
        row_pos = np.fromiter((self.row_pos[e] for e in rows_ent), dtype=np.int64, count=len(rows_ent))
        col_pos = np.fromiter((self.col_pos.get(e, -1) for e in cols_ent), dtype=np.int64, count=len(cols_ent))
        placed = np.flatnonzero(col_pos >= 0)
        means = np.array([self.col_mean.get(e, np.nan) for e in cols_ent], dtype=np.float64)
        fallback = (col_pos < 0) & ~np.isnan(means)
        # given pairs as (row entity, column entity) indices, grouped by row entity
        row_index = {e: k for k, e in enumerate(rows_ent)}
        col_index = {e: k for k, e in enumerate(cols_ent)}
        given_rows, given_cols = ((self.table.items, self.table.users) if self.item_based
                                  else (self.table.users, self.table.items))
        kr = np.fromiter((row_index[e] for e in given_rows.astype(str)), dtype=np.int64, count=len(self.table))
        kc = np.fromiter((col_index[e] for e in given_cols.astype(str)), dtype=np.int64, count=len(self.table))
        order = np.argsort(kr, kind="stable")
        kr, kc = kr[order], kc[order]
        starts = np.searchsorted(kr, np.arange(len(rows_ent) + 1))
        lo, hi = self.spec.rating_range
        step = max(1, min(self.model.batch_size, PAIR_BLOCK // max(1, len(cols_ent))))
        for a in range(0, len(rows_ent), step):
            idx = np.arange(a, min(a + step, len(rows_ent)))
            pred = np.full((len(idx), len(cols_ent)), self.spec.global_mean, dtype=np.float64)
            source = np.full(pred.shape, GLOBAL, dtype=np.int8)
            seen = np.flatnonzero(self.observed(row_pos[idx]) > 0)
            if len(seen) and len(placed):
                completed = self.model.complete(*self._block(row_pos[idx][seen]))
                pred[np.ix_(seen, placed)] = completed[:, col_pos[placed]]
                source[np.ix_(seen, placed)] = MODEL
            pred[:, fallback] = means[fallback]
            source[:, fallback] = USER_MEAN if self.item_based else ITEM_MEAN
            missing = np.ones(pred.shape, dtype=bool)
            for k, r in enumerate(idx):
                missing[k, kc[starts[r]:starts[r + 1]]] = False
            yield idx, np.clip(pred, lo, hi), source, missing

    def iter_missing(self) -> Iterator[Predictions]:
        """Every (user, item) pair without a given rating (see `candidates`), predicted, block by
        block so memory stays bounded by PAIR_BLOCK pairs whatever the grid's size: by user for
        a user-based model, by item for an item-based one (its rows)."""
        users, items = (np.asarray(e, dtype=object) for e in self.entities())
        rows_ent, cols_ent = (items, users) if self.item_based else (users, items)
        for idx, pred, source, missing in self._grid():
            r, c = np.nonzero(missing)
            row_names, col_names = rows_ent[idx][r], cols_ent[c]
            yield Predictions(*((col_names, row_names) if self.item_based else (row_names, col_names)),
                              pred[r, c], SOURCES[source[r, c]])

    def all_missing(self) -> Predictions:
        """`iter_missing`'s blocks as one Predictions (in memory)."""
        return concat(list(self.iter_missing()))

    def top_k(self, k: int) -> Predictions:
        """The k unrated items with the highest model predictions for each user in the table
        (pairs the model cannot predict are not ranked), best first; ties go to the item listed
        first. Streams the grid, keeping k candidates per user."""
        users, items = self.entities()
        k = min(k, len(items))  # no user has more items to rank (a huge --top-k means "all of them")
        best = np.full((len(users), k), -np.inf)
        best_item = np.full((len(users), k), len(items), dtype=np.int64)
        everyone, every_item = np.arange(len(users)), np.arange(len(items))
        for idx, pred, source, missing in self._grid():
            values = np.where(missing & (source == MODEL), pred, -np.inf)
            who, which = (everyone, idx) if self.item_based else (idx, every_item)
            if self.item_based:
                # items come in increasing order, so a block's item beats a kept one only by a
                # strictly higher prediction (ties go to the earlier item): merge only those users
                values = values.T
                better = (values > best[:, -1:]).any(axis=1)
                who, values = who[better], values[better]
            merged = np.concatenate([best[who], values], axis=1)
            merged_item = np.concatenate([best_item[who], np.broadcast_to(which, values.shape)], axis=1)
            order = np.lexsort((merged_item, -merged), axis=1)[:, :k]
            best[who] = np.take_along_axis(merged, order, axis=1)
            best_item[who] = np.take_along_axis(merged_item, order, axis=1)
        ranked = np.isfinite(best)
        user_of = np.broadcast_to(np.arange(len(users))[:, None], best.shape)[ranked]
        return Predictions(np.asarray(users, dtype=object)[user_of], np.asarray(items, dtype=object)[best_item[ranked]],
                           best[ranked], np.full(int(ranked.sum()), "model", dtype=object))


def concat(parts: list[Predictions]) -> Predictions:
    """Predictions blocks as one."""
    if not parts:
        empty = np.zeros(0, dtype=object)
        return Predictions(empty, empty, np.zeros(0), empty)
    return Predictions(*(np.concatenate([getattr(p, f) for p in parts])
                         for f in ("users", "items", "prediction", "source")))


class PredictionWriter(StreamWriter):
    """Streams predictions (user, item, prediction, source) to CSV, Parquet or NPY (a structured
    array whose id columns hold `id_width` characters), atomically (StreamWriter)."""

    formats = COMPLETION_FORMATS

    def __init__(self, target: str | Path, id_width: int):
        super().__init__(target)
        self.dtype = np.dtype([("user", f"<U{max(1, id_width)}"), ("item", f"<U{max(1, id_width)}"),
                               ("prediction", "<f8"), ("source", "<U11")])
        if self.kind == ".csv":
            self._file.write("user,item,prediction,source\n")

    def npy_layout(self) -> tuple[np.dtype, tuple[int, ...]]:
        return self.dtype, (self.rows,)

    def write(self, p: Predictions) -> None:
        if self.kind == ".csv":
            self._file.writelines(f"{_cell(u)},{_cell(i)},{v:.6g},{s}\n"
                                  for u, i, v, s in zip(p.users, p.items, p.prediction, p.source))
        elif self.kind == ".parquet":
            self._parquet_write(self._columns(p))
        else:
            table = np.empty(len(p), dtype=self.dtype)
            for name, values in self._columns(p).items():
                table[name] = values
            self._file.write(table.tobytes())
        self.rows += len(p)

    @staticmethod
    def _columns(p: Predictions) -> dict:
        return {"user": p.users.astype(str), "item": p.items.astype(str), "prediction": p.prediction.astype(np.float64),
                "source": p.source.astype(str)}

    def close(self) -> Path:
        if self.kind == ".parquet" and self._parquet is None:  # no pair at all: an empty table, typed
            empty = np.zeros(0, dtype=object)
            self._parquet_write({k: v.astype(str) if k != "prediction" else v for k, v in
                                 self._columns(Predictions(empty, empty, np.zeros(0), empty)).items()})
        return super().close()


def write_predictions(p: Predictions | Iterable[Predictions], target: str | Path, id_width: int | None = None) -> Path:
    """user,item,prediction,source as CSV, Parquet or NPY (a structured array), atomically:
    one Predictions, or blocks of them (streamed; then give `id_width` for NPY's id columns)."""
    blocks = [p] if isinstance(p, Predictions) else p
    if id_width is None:
        blocks = list(blocks)
        id_width = max([1, *(len(str(v)) for b in blocks for v in (*b.users, *b.items))])
    writer = PredictionWriter(target, id_width)
    try:
        for block in blocks:
            writer.write(block)
        return writer.close()
    except BaseException:
        writer.abort()
        raise


def _cell(value: str) -> str:
    text = str(value)
    return '"' + text.replace('"', '""') + '"' if any(ch in text for ch in ',"\n') else text
