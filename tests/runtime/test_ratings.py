"""Ratings files in the public layouts, read the same way for training and `gen complete`."""

from __future__ import annotations

import numpy as np
import pytest

from gen.runtime import InputError
from gen.runtime.ratings import check_against, rating_rows, read_pairs, read_ratings

LAYOUTS = {
    "u.data": "1\t10\t4\t881250949\n2\t10\t3\t891717742\n1\t20\t5\t878887116\n",
    "ratings.dat": "1::10::4::978300760\n2::10::3::978302109\n1::20::5::978301968\n",
    "ratings.csv": "userId,movieId,rating,timestamp\n1,10,4.0,964982703\n2,10,3.0,964981247\n1,20,5.0,964982224\n",
    "triples.csv": "user,item,rating\n1,10,4\n2,10,3\n1,20,5\n",
    "plain.csv": "1,10,4\n2,10,3\n1,20,5\n",
}


@pytest.mark.parametrize("name", LAYOUTS)
def test_every_layout_reads_the_same_triples(name, tmp_path):
    path = tmp_path / name
    path.write_text(LAYOUTS[name])
    table = read_ratings(path)
    assert table.users.tolist() == ["1", "2", "1"] and table.items.tolist() == ["10", "10", "20"]
    np.testing.assert_array_equal(table.ratings, [4, 3, 5])
    assert table.id_type == "int"


def test_string_ids_and_header_aliases(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("item_id,rating,user_id\nbook-1,2.5,alice\nbook-2,4,bob\n")
    table = read_ratings(path)
    assert table.users.tolist() == ["alice", "bob"] and table.items.tolist() == ["book-1", "book-2"]
    assert table.id_type == "str" and table.ratings.tolist() == [2.5, 4.0]


def test_integer_ids_are_normalised_and_exact_repeats_count_once(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating\n007,1,3\n7,1,3\n7,2,4\n")
    table = read_ratings(path)
    assert len(table) == 2 and table.users.tolist() == ["7", "7"]


@pytest.mark.parametrize("text, message", [
    ("", r"no ratings \(the file is empty\)"),
    ("user,item,rating\n", r"no ratings \(only a header\)"),
    ("user,item,rating\n1,2,3\n1,2,4\n", r"lines 2 and 3: user 1 rated item 2 twice, with different ratings \(3 and 4\)"),
    ("user,item,rating\n1,2,abc\n", r"line 2, column rating: expected a number, got 'abc'"),
    ("user,item,rating\n1,2,nan\n", r"line 2, column rating: expected a finite number"),
    ("user,item,rating\n1,2\n", r"line 2: expected user, item and rating"),
    ("name,title,stars\n1,2,3\n", r"header \['name', 'title', 'stars'\] has no user column"),
])
def test_bad_files_get_one_line_errors(text, message, tmp_path):
    path = tmp_path / "r.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        read_ratings(path)


def test_checked_against_a_model(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating\n1,2,3\n1,3,6\n")
    with pytest.raises(InputError, match=r"line 3, column rating: 6 is outside the model's rating range \[1, 5\]"):
        check_against(read_ratings(path), "int", [1.0, 5.0])
    path.write_text("user,item,rating\n1,2,3\nu9,3,4\n")
    with pytest.raises(InputError, match=r"line 3, column user: expected an integer id .* got 'u9'"):
        check_against(read_ratings(path), "int", [1.0, 5.0])
    check_against(read_ratings(path), "str", [1.0, 5.0])  # string-id models take any id


def test_rating_rows_lay_out_items_or_users(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text(LAYOUTS["triples.csv"])
    table = read_ratings(path)
    values, mask = rating_rows(table, "item", ["10", "20"], ["1", "2", "3"])
    np.testing.assert_array_equal(values, [[4, 3, 0], [5, 0, 0]])
    np.testing.assert_array_equal(mask, [[1, 1, 0], [1, 0, 0]])
    values, mask = rating_rows(table, "user", ["1", "2"], ["10", "20"])
    np.testing.assert_array_equal(values, [[4, 5], [3, 0]])


def test_pairs_files(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("item,user\n10,1\n20,02\n")
    users, items = read_pairs(path)
    assert users.tolist() == ["1", "2"] and items.tolist() == ["10", "20"]
    path.write_text("1\t10\n")
    assert read_pairs(path)[1].tolist() == ["10"]
    path.write_text("user,item\n")
    with pytest.raises(InputError, match="no pairs"):
        read_pairs(path)
