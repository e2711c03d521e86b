"""`gen complete` on a tiny triples file: the three ways of asking, the source column, and
bad ratings refused with exit code 2 and nothing written."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from gen.cli.main import app
from tests.memory import PEAK_MIB

runner = CliRunner()


def gen(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def autorec(bundles):
    """The contract's autorec bundle (item-based, trained on `lowrank`: users and items 1..)."""
    return bundles["autorec"]


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


KNOWN = "user,item,rating\n1,1,5\n1,2,4\n2,1,3\n2,3,2\n999,1,2\n"


def test_pairs_with_sources(autorec, tmp_path):
    (tmp_path / "known.csv").write_text(KNOWN)
    (tmp_path / "pairs.csv").write_text("user,item\n1,3\n999,2\n1,4\n12345,1\n")
    result = gen("complete", autorec, tmp_path / "known.csv", "--pairs", tmp_path / "pairs.csv",
                 "--out", tmp_path / "p.csv", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["rows"] == 4
    got = rows(tmp_path / "p.csv")
    assert list(got[0]) == ["user", "item", "prediction", "source"]
    # (1, 3): item 3 has a given rating -> the model; 999 is no user of the model -> their own mean;
    # item 4 has no given rating -> global mean; 12345 has no ratings at all -> global mean
    assert [r["source"] for r in got] == ["model", "user_mean", "global_mean", "global_mean"]
    assert float(got[1]["prediction"]) == 2.0
    assert all(1.0 <= float(r["prediction"]) <= 5.0 for r in got)


def test_all_and_top_k(autorec, tmp_path):
    (tmp_path / "known.csv").write_text(KNOWN)
    assert gen("complete", autorec, tmp_path / "known.csv", "--all", "--out", tmp_path / "a.csv").exit_code == 0
    every = rows(tmp_path / "a.csv")
    pairs = {(r["user"], r["item"]) for r in every}
    assert ("1", "1") not in pairs and ("1", "3") in pairs  # given ratings are not predicted
    assert {r["user"] for r in every} == {"1", "2", "999"}
    result = gen("complete", autorec, tmp_path / "known.csv", "--top-k", 1, "--out", tmp_path / "t.parquet")
    assert result.exit_code == 0, result.output
    import pyarrow.parquet as pq

    top = pq.read_table(tmp_path / "t.parquet").to_pydict()
    assert top["user"] == ["1", "2"] and set(top["source"]) == {"model"}
    best = {r["item"]: float(r["prediction"]) for r in every if r["user"] == "1" and r["source"] == "model"}
    assert top["item"][0] == max(best, key=best.get)


@pytest.mark.parametrize("known, message", [
    ("user,item,rating\n1,1,5\n1,2,9\n", "line 3, column rating: 9 is outside the model's rating range [1, 5]"),
    ("user,item,rating\n1,1,5\n1,1,4\n", "lines 2 and 3: user 1 rated item 1 twice, with different ratings"),
    ("user,item,rating\nu1,1,5\n", "line 2, column user: expected an integer id"),
    ("", "no ratings (the file is empty)"),
])
def test_bad_ratings_exit_2_and_write_nothing(autorec, tmp_path, known, message):
    (tmp_path / "known.csv").write_text(known)
    result = gen("complete", autorec, tmp_path / "known.csv", "--all", "--out", tmp_path / "a.csv")
    assert result.exit_code == 2 and message in result.output, result.output
    assert not list(tmp_path.glob("a.csv*")) and not list(tmp_path.glob(".a.csv*"))


def test_exactly_one_way_of_asking(autorec, tmp_path):
    (tmp_path / "known.csv").write_text(KNOWN)
    result = gen("complete", autorec, tmp_path / "known.csv", "--out", tmp_path / "a.csv")
    assert result.exit_code == 2 and "give exactly one of --all, --pairs FILE, --top-k K" in result.output
    result = gen("complete", autorec, tmp_path / "known.csv", "--all", "--top-k", 2, "--out", tmp_path / "a.csv")
    assert result.exit_code == 2 and "(got --all, --top-k)" in result.output


def test_complete_on_a_bundle_that_cannot(bundles, tmp_path):
    (tmp_path / "known.csv").write_text(KNOWN)
    result = gen("complete", bundles["ae"], tmp_path / "known.csv", "--all", "--out", tmp_path / "a.csv")
    assert result.exit_code == 2 and "model family 'ae' does not support 'complete'" in result.output
    assert not (tmp_path / "a.csv").exists()


def test_npy_output(autorec, tmp_path):
    (tmp_path / "known.csv").write_text(KNOWN)
    assert gen("complete", autorec, tmp_path / "known.csv", "--top-k", 2, "--out", tmp_path / "t.npy").exit_code == 0
    table = np.load(tmp_path / "t.npy")
    assert table.dtype.names == ("user", "item", "prediction", "source")
    # only items 1-3 have given ratings: user 1 has item 3 left to rank, user 2 item 2
    assert [(u, i) for u, i in zip(table["user"], table["item"])] == [("1", "3"), ("2", "2")]


STREAMED = PEAK_MIB + r"""
import sys
import gen.runtime.completion as completion
completion.PAIR_BLOCK = 4096  # small blocks, so the test's grids are many blocks long
from gen.cli.main import app
try:
    app(sys.argv[1:])
except SystemExit as exc:
    assert not exc.code, exc.code
print(peak_mib())
"""


def test_all_streams_in_memory_that_does_not_grow_with_the_pairs(autorec, tmp_path):
    """--all over 10x more (user, item) pairs holds the same peak memory: pairs are predicted and
    written block by block (here 4,096 at a time), never gathered."""
    import subprocess
    import sys

    peaks = {}
    for n_users in (500, 5000):  # new users, one rating each, over the model's 200 items
        known = tmp_path / f"known-{n_users}.csv"
        known.write_text("user,item,rating\n" + "".join(f"{10_000 + u},{1 + u % 200},4\n" for u in range(n_users)))
        out = tmp_path / f"all-{n_users}.npy"
        done = subprocess.run([sys.executable, "-c", STREAMED, "complete", str(autorec), str(known), "--all",
                               "--out", str(out)], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        peaks[n_users] = float(done.stdout.split()[-1])
        table = np.load(out)
        assert len(table) == n_users * 199 and set(table["source"]) == {"user_mean"}  # new users: their mean
    # 995,000 pairs against 99,500: gathered in memory they would take ~100 MiB more
    assert peaks[5000] - peaks[500] < 30, peaks


def test_top_k_beyond_the_catalogue_is_every_item(autorec, tmp_path):
    """A K larger than the items (even absurdly so) ranks every item, in bounded memory."""
    (tmp_path / "known.csv").write_text(KNOWN)
    for k in (200, 10**12):
        result = gen("complete", autorec, tmp_path / "known.csv", "--top-k", k, "--out", tmp_path / f"t{k}.csv")
        assert result.exit_code == 0, result.output
    assert (tmp_path / "t200.csv").read_bytes() == (tmp_path / f"t{10**12}.csv").read_bytes()
    # only items 1-3 have given ratings, so the model ranks user 1's item 3 and user 2's item 2
    assert [(r["user"], r["item"]) for r in rows(tmp_path / "t200.csv")] == [("1", "3"), ("2", "2")]
