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

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .model import GenModel
from .outputs import atomic_path
from .ratings import RatingsTable, check_against

COMPLETION_FORMATS = (".csv", ".parquet", ".npy")


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
    def candidates(self) -> tuple[np.ndarray, np.ndarray]:
        """Every (user, item) pair without a given rating, for the users in the table and
        every item the model or the table knows."""
        spec, table = self.spec, self.table
        users = _ordered_ids(table.users, spec.id_type)
        items = list(dict.fromkeys([*spec.items, *_ordered_ids(table.items, spec.id_type)]))
        known = set(zip(table.users.tolist(), table.items.tolist()))
        grid_u = np.repeat(np.asarray(users, dtype=object), len(items))
        grid_i = np.tile(np.asarray(items, dtype=object), len(users))
        keep = np.fromiter(((u, i) not in known for u, i in zip(grid_u, grid_i)), dtype=bool, count=len(grid_u))
        return grid_u[keep], grid_i[keep]

    def all_missing(self) -> Predictions:
        return self.predict_pairs(*self.candidates())

    def top_k(self, k: int) -> Predictions:
        """The k unrated items with the highest model predictions for each user in the table
        (pairs the model cannot predict are not ranked), best first."""
        p = self.all_missing()
        keep = p.source == "model"
        users, items, pred = p.users[keep], p.items[keep], p.prediction[keep]
        ranked = {u: n for n, u in enumerate(_ordered_ids(users, self.spec.id_type))}
        user_rank = np.fromiter((ranked[u] for u in users), dtype=np.int64, count=len(users))
        order = np.lexsort((-pred, user_rank))
        users, items, pred, user_rank = users[order], items[order], pred[order], user_rank[order]
        position = np.arange(len(users)) - np.searchsorted(user_rank, user_rank)
        top = position < k
        return Predictions(users[top], items[top], pred[top], np.full(int(top.sum()), "model", dtype=object))


def write_predictions(p: Predictions, target: str | Path) -> Path:
    """user,item,prediction,source as CSV, Parquet or NPY (a structured array), atomically."""
    target = Path(target)
    kind = target.suffix.lower()
    if kind not in COMPLETION_FORMATS:
        raise InputError(f"{target}: unsupported output format {kind or '(none)'}; "
                         f"expected one of {', '.join(COMPLETION_FORMATS)}")
    with atomic_path(target) as tmp:
        if kind == ".csv":
            with open(tmp, "w", newline="") as f:
                f.write("user,item,prediction,source\n")
                f.writelines(f"{_cell(u)},{_cell(i)},{v:.6g},{s}\n"
                             for u, i, v, s in zip(p.users, p.items, p.prediction, p.source))
        elif kind == ".parquet":
            try:
                import pyarrow as pa
                import pyarrow.parquet as pq
            except ImportError:
                from .errors import MissingDependency
                raise MissingDependency("writing Parquet needs pyarrow: pip install 'gen[parquet]'") from None
            pq.write_table(pa.table({"user": p.users.astype(str), "item": p.items.astype(str),
                                     "prediction": p.prediction, "source": p.source.astype(str)}), tmp)
        else:
            width = max([1, *(len(str(v)) for v in (*p.users, *p.items))])
            table = np.empty(len(p), dtype=[("user", f"<U{width}"), ("item", f"<U{width}"),
                                            ("prediction", "<f8"), ("source", "<U11")])
            table["user"], table["item"] = p.users.astype(str), p.items.astype(str)
            table["prediction"], table["source"] = p.prediction, p.source.astype(str)
            with open(tmp, "wb") as f:
                np.save(f, table, allow_pickle=False)
    return target


def _cell(value: str) -> str:
    text = str(value)
    return '"' + text.replace('"', '""') + '"' if any(ch in text for ch in ',"\n') else text
