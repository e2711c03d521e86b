"""gen.pipelines.arrow.Scorer: the batch function Ray, Spark and Dask call. Same scores as
the runtime on the same rows, whatever the batch kind; the bundle shipped as bytes is
verified where it lands; bad batches are one line naming the row and column."""

from __future__ import annotations

import pickle

import numpy as np
import pyarrow as pa
import pytest

from gen.pipelines.arrow import Scorer, pack_bundle, unpack_bundle
from gen.runtime import BundleError, InputError, load

FEATURES = [f"p{i}" for i in range(64)]


def table_of(rows: np.ndarray) -> pa.Table:
    return pa.table({"id": np.arange(len(rows)) * 10, **{n: rows[:, i] for i, n in enumerate(FEATURES)}})


@pytest.fixture
def expected(bundles, digits_rows):
    model = load(bundles["ae"], device="cpu")
    scores = model.score(digits_rows[:50])
    return scores, model.normal_quantile(scores), scores > model.threshold


def check(columns: dict, expected) -> None:
    scores, quantiles, flags = expected
    assert list(columns["id"]) == list(range(0, 500, 10))
    np.testing.assert_allclose(np.asarray(columns["score"]), scores, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(columns["normal_quantile"]), quantiles, rtol=1e-6)
    assert np.array_equal(np.asarray(columns["flag"]), flags)


def test_every_batch_kind_gives_the_runtime_scores(bundles, digits_rows, expected):
    scorer = Scorer(bundles["ae"], keep_columns=["id"], device="cpu")
    table = table_of(digits_rows[:50])
    out = scorer(table)
    assert isinstance(out, pa.Table) and out.column_names == ["id", "score", "normal_quantile", "flag"]
    check(out.to_pydict(), expected)
    batch = scorer(table.to_batches()[0])
    assert isinstance(batch, pa.RecordBatch)
    check(batch.to_pydict(), expected)
    frame = scorer(table.to_pandas())
    assert type(frame).__name__ == "DataFrame"
    check({c: frame[c].to_numpy() for c in frame.columns}, expected)
    arrays = scorer({n: table.column(n).to_numpy() for n in table.column_names})
    check(arrays, expected)
    spark = list(scorer.map_arrow(iter(table.to_batches(max_chunksize=20))))
    assert [b.num_rows for b in spark] == [20, 20, 10]
    check(pa.Table.from_batches(spark).to_pydict(), expected)


def test_the_scorer_pickles_without_its_model(bundles, digits_rows):
    scorer = Scorer(bundles["ae"], keep_columns="id", device="cpu")
    scorer(table_of(digits_rows[:3]))
    assert scorer._model is not None
    copy = pickle.loads(pickle.dumps(scorer))
    assert copy._model is None and copy.selection == scorer.selection
    assert copy(table_of(digits_rows[:3])).equals(scorer(table_of(digits_rows[:3])))


def test_a_shipped_bundle_is_verified_where_it_lands(bundles, digits_rows, expected, tmp_path):
    files = pack_bundle(bundles["ae"])
    assert "manifest.json" in files and "SHA256SUMS" in files
    check(Scorer(files, keep_columns=["id"], device="cpu")(table_of(digits_rows[:50])).to_pydict(), expected)
    graph = next(name for name in files if name.endswith(".onnx"))
    tampered = {**files, graph: files[graph][:-1] + bytes([files[graph][-1] ^ 1])}
    with pytest.raises(BundleError, match=graph):
        Scorer(tampered, keep_columns=["id"], device="cpu")(table_of(digits_rows[:2]))
    with pytest.raises(BundleError, match="not a plain file name"):
        unpack_bundle({"../evil": b"x"}, tmp_path / "b")


def test_bad_batches_name_the_row_and_column(bundles, digits_rows):
    scorer = Scorer(bundles["ae"], keep_columns=["id"], device="cpu")
    rows = digits_rows[:5].copy()
    rows[3, 2] = np.nan
    with pytest.raises(InputError, match=r"row 4, column 4 \(p2\): value is nan"):
        scorer(table_of(rows))
    nulls = table_of(digits_rows[:5]).set_column(1, "p0", pa.array([1.0, None, 1.0, 1.0, 1.0]))
    with pytest.raises(InputError, match=r"row 2, column 2 \(p0\): missing value"):
        scorer(nulls)
    text = table_of(digits_rows[:5]).set_column(1, "p0", pa.array(list("abcde")))
    with pytest.raises(InputError, match=r"column 2 \(p0\): expected numbers, got string"):
        scorer(text)
    with pytest.raises(InputError, match="expected 64 feature columns, got 63"):
        scorer(table_of(digits_rows[:5]).drop(["p5"]))
    with pytest.raises(InputError, match="got list"):
        scorer([1, 2])


def test_dask_map_partitions_example(bundles, digits_rows, expected):
    """README's Dask example, as written there."""
    dd = pytest.importorskip("dask.dataframe")
    import pandas as pd

    frame = table_of(digits_rows[:50]).to_pandas()
    scorer = Scorer(bundles["ae"], keep_columns=["id"], device="cpu")
    meta = pd.DataFrame({"id": pd.Series(dtype="int64"), "score": pd.Series(dtype="float64"),
                         "normal_quantile": pd.Series(dtype="float64"), "flag": pd.Series(dtype="bool")})
    scores = dd.from_pandas(frame, npartitions=3).map_partitions(scorer, meta=meta).compute(scheduler="processes")
    check({c: scores[c].to_numpy() for c in scores.columns}, expected)
