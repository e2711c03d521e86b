"""`gen demo` (what `make demo` runs), shortened to 2 epochs a family: every output it
promises is there and well-formed."""

from __future__ import annotations

import csv
from collections import Counter


def test_demo_writes_grids_scores_and_completions(tmp_path):
    from gen.cli.demo import run_demo

    said: list[str] = []
    result = run_demo(tmp_path, epochs=2, quiet=True, echo=said.append)
    assert result["grids"] and all(p.read_bytes().startswith(b"\x89PNG") for p in result["grids"])
    with open(result["scores"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 380 and list(rows[0]) == ["index", "score", "normal_quantile", "flag"]
    (top,) = result["completions"]
    with open(top, newline="") as f:
        predictions = list(csv.DictReader(f))
    per_user = Counter(r["user"] for r in predictions)
    assert len(per_user) == 300 and max(per_user.values()) == 5
    assert {r["source"] for r in predictions} == {"model"}
    assert any("completed lowrank ratings with the autorec bundle" in line for line in said)
