"""`gen score` as a library call (gen.runtime.jobs): the option rules, the file and folder jobs
and their summaries, with no CLI in between."""

from __future__ import annotations

import numpy as np
import pytest

from gen.runtime import InputError, load
from gen.runtime.jobs import check_score_options, score_job, score_line


@pytest.mark.parametrize("source, options, message", [
    ("rows.csv", {"maps_rows": 4}, "--maps-rows applies only with --maps"),
    ("rows.csv", {"workers": 2}, "apply to a folder or glob input"),
    ("rows.csv", {"resume": True}, "apply to a folder or glob input"),
    ("rows.csv", {"engine": "ray"}, "apply to a folder or glob input"),
    ("parts/*.csv", {"address": "auto"}, "--address applies with --engine ray"),
    ("parts/*.csv", {"engine": "ray", "single": True}, "--single are the local engine's"),
    ("parts/*.csv", {"explain": 3}, "--explain and --maps score one file at a time"),
    ("parts/*.csv", {"engine": "spark"}, "--engine 'spark': expected one of local, ray"),
])
def test_options_that_do_not_combine_are_refused_by_the_library(source, options, message):
    with pytest.raises(InputError, match=message.replace("*", r"\*").replace("(", r"\(")):
        check_score_options(source, **options)


def test_check_score_options_tells_one_file_from_many(tmp_path):
    assert check_score_options(tmp_path / "rows.csv") is False
    assert check_score_options(str(tmp_path / "*.csv"), workers=2, resume=True) is True
    assert check_score_options(tmp_path, engine="ray", address="auto") is True  # a folder


@pytest.mark.filterwarnings("ignore::gen.runtime.errors.GenWarning")
def test_score_job_on_a_file_returns_the_summary_the_cli_prints(bundles, digits_rows, tmp_path):
    np.save(tmp_path / "rows.npy", digits_rows[:50])
    seen = []
    summary = score_job(bundles["ae"], tmp_path / "rows.npy", tmp_path / "s.csv", device="cpu", on_chunk=seen.append,
                        chunk_rows=20)
    model = load(bundles["ae"], device="cpu")
    assert summary["kind"] == "file" and summary["rows"] == 50 and seen == [20, 40, 50]
    assert summary["flagged"] == int((model.score(digits_rows[:50]) > model.threshold).sum())
    assert summary["threshold"] == model.threshold
    # the bundle knows one digit; these rows are all ten, so the drift test fires (and is in the summary)
    assert [d["share"] for d in summary["drift"]] == [summary["flagged"] / 50]
    assert score_line(summary) == (f"50 rows scored -> {tmp_path / 's.csv'} (threshold {model.threshold:.6g}, "
                                   "provider CPUExecutionProvider)")
    with_maps = score_job(model, tmp_path / "rows.npy", tmp_path / "t.csv", maps=tmp_path / "m.png", maps_rows=3)
    assert with_maps["maps"] == str(tmp_path / "m.png") and with_maps["maps_rows"] == 3
    assert (tmp_path / "m.png").is_file()


@pytest.mark.filterwarnings("ignore::gen.runtime.errors.GenWarning")
def test_score_job_on_a_folder_and_its_bad_files(bundles, digits_rows, tmp_path):
    parts = tmp_path / "parts"
    parts.mkdir()
    np.save(parts / "a.npy", digits_rows[:30])
    np.save(parts / "b.npy", digits_rows[30:70])
    summary = score_job(bundles["ae"], parts, tmp_path / "out", workers=1, device="cpu")
    assert summary["kind"] == "folder" and summary["files"] == 2 and summary["rows"] == 70
    assert sorted(p.name for p in (tmp_path / "out").glob("*.npy")) == ["a.npy", "b.npy"]
    assert summary["failed"] == [] and summary["errors"] is None
    assert score_line(summary).startswith(f"2 files, 70 rows scored -> {tmp_path / 'out'}/ (")
    again = score_job(bundles["ae"], parts, tmp_path / "out", workers=1, device="cpu", resume=True)
    assert again["resumed"] == 2 and score_line(again).startswith("nothing to score: 2 files already done")
    (parts / "c.npy").write_bytes(b"not an array")
    bad = score_job(bundles["ae"], parts, tmp_path / "out2", workers=1, device="cpu", skip_bad=True)
    assert len(bad["failed"]) == 1 and "c.npy" in bad["failed"][0]["error"] and bad["errors"]
    assert bad["rows"] == 70
