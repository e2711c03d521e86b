"""`gen demo` (what `make demo` runs), shortened to 2 epochs a family: every output it
promises is there and well-formed."""

from __future__ import annotations

import csv
import re
from collections import Counter


def test_demo_writes_grids_scores_and_completions(tmp_path):
    from gen.cli.demo import run_demo

    said: list[str] = []
    result = run_demo(tmp_path, epochs=2, quiet=True, echo=said.append)
    assert result["grids"] and all(p.read_bytes().startswith(b"\x89PNG") for p in result["grids"])
    with open(result["scores"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 380 and list(rows[0]) == ["index", "score", "normal_quantile", "flag"]
    flagged = sum(r["flag"] in ("1", "True", "true") for r in rows)
    page = result["report"].read_text()
    assert f'<strong id="flagged-count">{flagged:,}</strong> of 380 rows flagged' in page
    (top,) = result["completions"]
    with open(top, newline="") as f:
        predictions = list(csv.DictReader(f))
    per_user = Counter(r["user"] for r in predictions)
    assert len(per_user) == 300 and max(per_user.values()) == 5
    assert {r["source"] for r in predictions} == {"model"}
    assert any("completed lowrank ratings with the autorec bundle" in line for line in said)
    # it runs in the order it announces first: the families that sample (the README's ae, vae,
    # gan), the scoring, then completion (autorec)
    ran = [line.split(":")[0][3:] for line in said if line.startswith("== ") and ": train on " in line]
    assert ran == result["order"] == ["ae", "vae", "gan", "autorec"]
    assert said[0].startswith("== demo: ")
    assert list(dict.fromkeys(w for w in re.findall(r"[\w-]+", said[0]) if w in ran)) == ran
    scored = next(i for i, line in enumerate(said) if line.startswith("== scored "))
    assert said.index("== gan: train on digits, export, sample") < scored < said.index(
        "== autorec: train on lowrank ratings, export, complete")
    assert re.search(r"with the ae bundle: (1 digit|\d+ digits) flagged, \d+/20 noise rows flagged$", said[scored])
