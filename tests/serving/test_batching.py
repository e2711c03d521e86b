"""AdaptiveBatcher: concurrent requests gathered into fewer calls, each request getting
exactly its own rows' results; a failing batch fails each of its requests; off means one call
per request. And the verb layer's checks (gen.serving.verbs), without a server."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from gen.runtime import InputError, load
from gen.serving.batching import AdaptiveBatcher
from gen.serving.verbs import rows_of, run_rows, sample_options, served_verbs, signature


def doubled(rows: np.ndarray) -> dict[str, np.ndarray]:
    return {"y": rows[:, 0] * 2, "rows": np.full(len(rows), len(rows))}


async def gather(batcher, sizes):
    requests = [np.arange(i * 100, i * 100 + n, dtype=np.float64).reshape(n, 1) for i, n in enumerate(sizes)]
    results = await asyncio.gather(*(batcher.submit(r) for r in requests))
    return requests, results


def test_concurrent_requests_share_calls_and_get_their_own_rows():
    batcher = AdaptiveBatcher(doubled, max_rows=64, max_delay=0.5)  # a wide window: calls == 1 on a busy machine too
    requests, results = asyncio.run(gather(batcher, [3, 5, 1, 7, 2]))
    for rows, out in zip(requests, results):
        assert np.array_equal(out["y"], rows[:, 0] * 2)
    assert batcher.calls == 1 and batcher.rows == 18
    assert all(out["rows"][0] == 18 for out in results)


def test_the_row_limit_splits_batches_and_a_big_request_runs_alone():
    batcher = AdaptiveBatcher(doubled, max_rows=8, max_delay=0.05)
    requests, results = asyncio.run(gather(batcher, [5, 5, 5, 20]))
    for rows, out in zip(requests, results):
        assert np.array_equal(out["y"], rows[:, 0] * 2)
    assert batcher.calls == 4 and max(int(out["rows"][0]) for out in results[:3]) <= 8


def test_off_means_one_call_per_request():
    batcher = AdaptiveBatcher(doubled, max_rows=0, max_delay=0)
    asyncio.run(gather(batcher, [2, 2, 2]))
    assert batcher.calls == 3


def test_a_failing_batch_fails_each_request():
    def broken(rows):
        raise RuntimeError("onnxruntime failed")

    batcher = AdaptiveBatcher(broken, max_rows=64, max_delay=0.02)

    async def run():
        return await asyncio.gather(batcher.submit(np.zeros((2, 1))), batcher.submit(np.zeros((3, 1))),
                                    return_exceptions=True)

    assert [str(e) for e in asyncio.run(run())] == ["onnxruntime failed"] * 2


def test_batched_scores_equal_the_runtime(bundles, digits_rows):
    model = load(bundles["ae"], device="cpu")
    batcher = AdaptiveBatcher(lambda rows: run_rows(model, "score", rows), max_rows=4096, max_delay=0.5)

    async def run():
        parts = [digits_rows[i:i + n] for i, n in ((0, 1), (1, 7), (8, 64), (72, 3))]
        return parts, await asyncio.gather(*(batcher.submit(rows_of(model, {"x": p}, 1000)) for p in parts))

    parts, outs = asyncio.run(run())
    assert batcher.calls == 1
    for part, out in zip(parts, outs):
        np.testing.assert_allclose(out["score"], model.score(part), rtol=1e-6)
        assert np.array_equal(out["flag"], model.flag(part))


@pytest.mark.parametrize("io_binding", [False, True])
def test_uint8_requests_stay_bytes_and_score_like_float_ones(bundles, digits_rows, io_binding):
    """UINT8 rows (pixels as bytes) are kept as bytes by rows_of(narrow=True): a batch of them
    is widened where the graphs run (the bundle's widen graph under IOBinding), a batch mixing
    them with FP32 rows on the host; the answers are those of the same values in float32."""
    model = load(bundles["vae"], device="cpu", io_binding=io_binding)
    assert model.widen is not None
    pixels = digits_rows[:40].astype(np.uint8)
    assert rows_of(model, {"x": pixels}, 1000, narrow=True).dtype == np.uint8
    assert rows_of(model, {"x": pixels}, 1000).dtype == np.float32
    for verb in ("score", "encode", "reconstruct"):
        want = run_rows(model, verb, rows_of(model, {"x": pixels.astype(np.float32)}, 1000))
        for parts in ((pixels[:13], pixels[13:]), (pixels[:13], pixels[13:].astype(np.float32))):  # bytes; mixed
            batcher = AdaptiveBatcher(lambda rows: run_rows(model, verb, rows), max_rows=4096, max_delay=0.5)

            async def run():
                return await asyncio.gather(*(batcher.submit(rows_of(model, {"x": p}, 1000, narrow=True))
                                              for p in parts))

            outs = asyncio.run(run())
            assert batcher.calls == 1
            for name, value in want.items():
                assert np.array_equal(np.concatenate([o[name] for o in outs]), value), (verb, parts[1].dtype, name)


def test_verb_signatures_and_checks(bundles, digits_rows):
    model = load(bundles["vae"], device="cpu")
    assert served_verbs(model)[0] == "score" and "sample" in served_verbs(model)
    inputs, outputs = signature(model, "score")
    assert inputs[0].as_dict() == {"name": "x", "datatype": "FP32", "shape": [-1, 1, 8, 8]}
    assert [t.name for t in outputs][:3] == ["score", "normal_quantile", "flag"]
    assert signature(model, "encode")[1][0].shape[0] == -1
    rows = digits_rows[:2].copy()
    rows[1, 3] = np.nan
    with pytest.raises(InputError, match=r"input 'x': row 2, column 4: value is nan"):
        rows_of(model, {"x": rows}, 10)
    with pytest.raises(InputError, match="more than the 1 a request may hold"):
        rows_of(model, {"x": digits_rows[:2]}, 1)
    with pytest.raises(InputError, match="'y': not an input"):
        rows_of(model, {"x": digits_rows[:2], "y": digits_rows[:2]}, 10)
    assert sample_options({}, {"n": 3, "seed": 7}, 10) == (3, 7)
    assert sample_options({}, {"n": 4}, 10, row_values=64, max_bytes=1024) == (4, 0)  # 4 x 64 x 4 bytes: fits
    with pytest.raises(InputError, match="over the response limit .* ask for at most 4 per request"):
        sample_options({}, {"n": 5}, 10, row_values=64, max_bytes=1024)
    assert sample_options({"n": np.array([4]), "seed": np.array([1])}, {}, 10) == (4, 1)
    for params, message in (({"n": 0}, "'n': expected 1..10"), ({"n": "a"}, "expected an integer"),
                            ({"seed": -1}, "'seed': expected 0..")):
        with pytest.raises(InputError, match=message):
            sample_options({}, params, 10)


def test_complete_requests_batch_values_with_their_mask(bundles, family_rows):
    model = load(bundles["autorec"], device="cpu")
    assert "complete" in served_verbs(model)
    rows = family_rows["autorec"][:6].astype(np.float32)
    mask = (rows > 0).astype(np.float32)
    noisy = np.where(mask > 0, rows, np.nan)  # unobserved entries may hold anything
    batcher = AdaptiveBatcher(lambda r: run_rows(model, "complete", r), max_rows=64, max_delay=0.5)
    from gen.serving.verbs import completion_rows

    async def run():
        return await asyncio.gather(batcher.submit(completion_rows(model, {"x": noisy[:2], "mask": mask[:2]}, 10)),
                                    batcher.submit(completion_rows(model, {"x": rows[2:], "mask": mask[2:]}, 10)))

    first, second = asyncio.run(run())
    assert batcher.calls == 1
    np.testing.assert_allclose(np.concatenate([first["completed"], second["completed"]]),
                               model.complete(rows, mask), rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match="'mask': missing"):
        completion_rows(model, {"x": rows}, 10)
    with pytest.raises(InputError, match="'mask': expected 0 or 1"):
        completion_rows(model, {"x": rows, "mask": mask * 2}, 10)
