"""Ratings files: (user, item, rating) triples in the public MovieLens layouts and a plain
triples CSV, read the same way by the trainer (to fit a completion model) and by
`gen complete` (the known ratings to complete from).

Layouts, told apart by their content:
- `u.data` (MovieLens-100K): `user<TAB>item<TAB>rating<TAB>timestamp`, no header;
- `ratings.dat` (MovieLens-1M/10M): `user::item::rating::timestamp`, no header;
- `ratings.csv` (ml-latest): header `userId,movieId,rating,timestamp`;
- a triples CSV: header `user,item,rating` (also `user_id`, `item_id`, `movie_id`), or
  three or more columns without a header, read as user, item, rating.

Ids are kept as strings (integers written without leading zeros, so `007` and `7` are one
id); `id_type` says whether every id was an integer. A (user, item) pair rated twice with the
same value counts once; with different values it is an error.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .readers import is_number

USER_COLUMNS = ("user", "userid", "user_id")
ITEM_COLUMNS = ("item", "itemid", "item_id", "movie", "movieid", "movie_id")
RATING_COLUMNS = ("rating", "ratings", "score", "value")


@dataclass
class RatingsTable:
    """Triples read from a file: ids as strings, ratings as float64, and the line each came
    from (1-based, for error messages)."""

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    lines: np.ndarray
    id_type: str
    source: str

    def __len__(self) -> int:
        return len(self.ratings)


def _normal_id(text: str) -> tuple[str, bool]:
    text = text.strip()
    try:
        return str(int(text)), True
    except ValueError:
        return text, False


def _split(line: str, sep: str | None) -> list[str]:
    if sep is None:
        return next(csv.reader([line]))
    return line.split(sep)


def _layout(first: str) -> tuple[str | None, str]:
    """(separator, layout name) from the first non-empty line."""
    if "::" in first:
        return "::", "ratings.dat (user::item::rating::timestamp)"
    if "\t" in first:
        return "\t", "u.data (user<TAB>item<TAB>rating<TAB>timestamp)"
    return None, "CSV (user,item,rating)"


def read_ratings(path: str | Path) -> RatingsTable:
    """Read a ratings file in any supported layout; one-line errors name the file, line and
    column."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: ratings file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = path.read_text(encoding="latin-1")
        except OSError as exc:
            raise InputError(f"{path}: cannot read ({exc})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None
    lines = text.splitlines()
    numbered = [(i + 1, line) for i, line in enumerate(lines) if line.strip()]
    if not numbered:
        raise InputError(f"{path}: no ratings (the file is empty)")
    sep, layout = _layout(numbered[0][1])
    cols = (0, 1, 2)
    first = [c.strip() for c in _split(numbered[0][1], sep)]
    if sep is None and not is_number(first[2] if len(first) > 2 else ""):
        names = [c.lower() for c in first]
        cols = tuple(_find(names, options, path) for options in (USER_COLUMNS, ITEM_COLUMNS, RATING_COLUMNS))
        numbered = numbered[1:]
        if not numbered:
            raise InputError(f"{path}: no ratings (only a header)")
    width = max(cols) + 1
    users, items, ratings, where = [], [], [], []
    all_int = True
    for number, line in numbered:
        cells = _split(line, sep)
        if len(cells) < width:
            raise InputError(f"{path}, line {number}: expected user, item and rating ({layout}), "
                             f"got {len(cells)} field{'s' if len(cells) != 1 else ''}")
        user, user_int = _normal_id(cells[cols[0]])
        item, item_int = _normal_id(cells[cols[1]])
        if not user or not item:
            raise InputError(f"{path}, line {number}: empty {'user' if not user else 'item'} id")
        all_int = all_int and user_int and item_int
        raw = cells[cols[2]].strip()
        try:
            value = float(raw)
        except ValueError:
            raise InputError(f"{path}, line {number}, column rating: expected a number, got {raw!r}") from None
        if not np.isfinite(value):
            raise InputError(f"{path}, line {number}, column rating: expected a finite number, got {raw!r}")
        users.append(user)
        items.append(item)
        ratings.append(value)
        where.append(number)
    table = RatingsTable(np.asarray(users, dtype=object), np.asarray(items, dtype=object),
                         np.asarray(ratings, dtype=np.float64), np.asarray(where, dtype=np.int64),
                         "int" if all_int else "str", str(path))
    return _deduplicate(table)


def _find(names: list[str], options: tuple[str, ...], path: Path) -> int:
    for option in options:
        if option in names:
            return names.index(option)
    raise InputError(f"{path}: header {names} has no {options[0]} column (expected one of {', '.join(options)})")


def _deduplicate(table: RatingsTable) -> RatingsTable:
    """One rating per (user, item): exact repeats are dropped, conflicting ones refused."""
    _, u = np.unique(table.users.astype(str), return_inverse=True)
    items, i = np.unique(table.items.astype(str), return_inverse=True)
    keys = u.astype(np.int64) * len(items) + i
    order = np.argsort(keys, kind="stable")
    same = keys[order][1:] == keys[order][:-1]
    if not same.any():
        return table
    first, second = order[:-1][same], order[1:][same]
    conflict = table.ratings[first] != table.ratings[second]
    if conflict.any():
        a, b = first[conflict][0], second[conflict][0]
        raise InputError(f"{table.source}, lines {table.lines[a]} and {table.lines[b]}: user {table.users[a]} "
                         f"rated item {table.items[a]} twice, with different ratings "
                         f"({table.ratings[a]:g} and {table.ratings[b]:g})")
    keep = np.ones(len(table), dtype=bool)
    keep[second] = False
    return RatingsTable(table.users[keep], table.items[keep], table.ratings[keep], table.lines[keep],
                        table.id_type, table.source)


def read_pairs(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(users, items) of a pairs file: a CSV with `user` and `item` columns (header names as
    for ratings), or two or more columns without a header read as user, item; tab- and
    `::`-separated lines as in the MovieLens layouts."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: pairs file not found")
    numbered = [(i + 1, line) for i, line in enumerate(path.read_text(encoding="utf-8-sig", errors="replace")
                                                       .splitlines()) if line.strip()]
    if not numbered:
        raise InputError(f"{path}: no pairs (the file is empty)")
    sep, _ = _layout(numbered[0][1])
    first = [c.strip().lower() for c in _split(numbered[0][1], sep)]
    cols = (0, 1)
    if any(name in USER_COLUMNS + ITEM_COLUMNS for name in first):
        cols = (_find(first, USER_COLUMNS, path), _find(first, ITEM_COLUMNS, path))
        numbered = numbered[1:]
    users, items = [], []
    for number, line in numbered:
        cells = _split(line, sep)
        if len(cells) <= max(cols):
            raise InputError(f"{path}, line {number}: expected a user and an item, got {len(cells)} field(s)")
        user, item = _normal_id(cells[cols[0]])[0], _normal_id(cells[cols[1]])[0]
        if not user or not item:
            raise InputError(f"{path}, line {number}: empty {'user' if not user else 'item'} id")
        users.append(user)
        items.append(item)
    if not users:
        raise InputError(f"{path}: no pairs (only a header)")
    return np.asarray(users, dtype=object), np.asarray(items, dtype=object)


def check_against(table: RatingsTable, id_type: str, rating_range: list[float]) -> None:
    """Refuse ratings a model cannot take: ratings outside its range, non-integer ids where
    the model's ids are integers."""
    lo, hi = rating_range
    bad = np.flatnonzero((table.ratings < lo) | (table.ratings > hi))
    if len(bad):
        i = bad[0]
        raise InputError(f"{table.source}, line {table.lines[i]}, column rating: {table.ratings[i]:g} is outside "
                         f"the model's rating range [{lo:g}, {hi:g}]")
    if id_type == "int" and table.id_type != "int":
        for column, ids in (("user", table.users), ("item", table.items)):
            for i, value in enumerate(ids):
                if not _normal_id(value)[1]:
                    raise InputError(f"{table.source}, line {table.lines[i]}, column {column}: expected an "
                                     f"integer id (the model's ids are integers), got {value!r}")


def rating_rows(table: RatingsTable, orientation: str, row_ids: list[str], column_ids: list[str]
                ) -> tuple[np.ndarray, np.ndarray]:
    """(values, mask), each (len(row_ids), len(column_ids)) float32: the ratings of `table`
    whose row and column ids are listed, laid out as rows (items for orientation `item`,
    users for `user`); mask 1 where a rating was given, values 0 elsewhere."""
    rows_of, cols_of = (table.items, table.users) if orientation == "item" else (table.users, table.items)
    row_pos = {rid: i for i, rid in enumerate(row_ids)}
    col_pos = {cid: j for j, cid in enumerate(column_ids)}
    r = np.fromiter((row_pos.get(v, -1) for v in rows_of), dtype=np.int64, count=len(table))
    c = np.fromiter((col_pos.get(v, -1) for v in cols_of), dtype=np.int64, count=len(table))
    known = (r >= 0) & (c >= 0)
    values = np.zeros((len(row_ids), len(column_ids)), dtype=np.float32)
    mask = np.zeros_like(values)
    values[r[known], c[known]] = table.ratings[known]
    mask[r[known], c[known]] = 1.0
    return values, mask
