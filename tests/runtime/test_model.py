"""Runtime verbs: sampling determinism, scoring semantics, thresholds and flags."""

import numpy as np
import pytest

from gen.runtime import InputError, NotSupported, load
from tests.pooling import smoothed_energy


def test_samples_do_not_depend_on_batch_size(bundles):
    a = load(bundles["gan"], batch_size=3).sample(10, seed=1)
    b = load(bundles["gan"], batch_size=1024).sample(10, seed=1)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_samples_are_in_raw_units(bundles):
    # digits are 0..16 raw; the models work on [0, 1]; sigmoid outputs map back to 0..16.
    samples = load(bundles["vae"]).sample(20, seed=0)
    assert samples.min() >= 0.0 and samples.max() <= 16.0 and samples.max() > 1.0


def test_ae_samples_through_fitted_gaussian(bundles):
    model = load(bundles["ae"])
    latent = model.manifest.latent
    assert latent.prior == "gaussian" and len(latent.mean) == latent.dim == 4
    codes = model.encode(model.sample(1, seed=0))  # smoke of the decoder path's shape
    assert codes.shape == (1, 4)


def test_score_matches_training_calibration(bundles, digits_rows):
    model = load(bundles["ae"])
    scores = model.score(digits_rows[:40])
    assert scores.shape == (40,) and scores.dtype == np.float64 and np.all(scores >= 0)
    spec = model.manifest.scoring
    assert spec.threshold == pytest.approx(np.interp(0.99, spec.quantile_levels, spec.quantile_values))


def test_flag_is_score_above_threshold(bundles, digits_rows):
    model = load(bundles["vae"])
    scores = model.score(digits_rows)
    np.testing.assert_array_equal(model.flag(digits_rows), scores > model.threshold)
    quantiles = model.normal_quantile(scores)
    assert np.all((quantiles >= 0) & (quantiles <= 1))
    order = np.argsort(scores)
    assert np.all(np.diff(quantiles[order]) >= 0)


def test_noise_scores_higher_than_digits(bundles, digits_rows):
    model = load(bundles["ae"])
    noise = np.random.default_rng(0).uniform(0, 16, size=(50, 64)).astype(np.float32)
    assert model.score(noise).min() > np.median(model.score(digits_rows))
    assert model.flag(noise).all()


def test_reconstruct_and_encode(bundles, digits_rows):
    model = load(bundles["vae"])
    recon = model.reconstruct(digits_rows[:5])
    assert recon.shape == (5, 1, 8, 8) and recon.min() >= 0 and recon.max() <= 16
    assert model.encode(digits_rows[:5]).shape == (5, 4)


def test_accepts_image_shaped_rows(bundles, digits_rows):
    model = load(bundles["ae"])
    np.testing.assert_allclose(model.score(digits_rows[:3].reshape(3, 1, 8, 8)), model.score(digits_rows[:3]))


def test_not_supported_names_the_family_and_verbs(bundles, digits_rows):
    model = load(bundles["gan"])
    with pytest.raises(NotSupported, match="'gan' does not support 'encode'; it supports: sample, score"):
        model.encode(digits_rows[:2])
    with pytest.raises(NotSupported, match="reconstruct"):
        model.reconstruct(digits_rows[:2])


def test_bad_arrays(bundles, digits_rows):
    model = load(bundles["ae"])
    with pytest.raises(InputError, match=r"expected rows of shape \(N, 64\) or \(N, 1, 8, 8\), got array of shape \(3, 63\)"):
        model.score(digits_rows[:3, :63])
    bad = digits_rows[:3].copy()
    bad[2, 5] = np.nan
    with pytest.raises(InputError, match="row 3, column 6: value is nan"):
        model.score(bad)
    with pytest.raises(InputError, match="single row"):
        model.score(digits_rows[0])
    with pytest.raises(InputError, match="n must be an integer >= 1, got 0"):
        model.sample(0)


def test_threads_option(bundles, digits_rows):
    one = load(bundles["ae"], device="cpu", threads=1)
    many = load(bundles["ae"], device="cpu")
    np.testing.assert_allclose(one.score(digits_rows[:20]), many.score(digits_rows[:20]), rtol=1e-6)
    with pytest.raises(InputError, match="threads must be >= 1"):
        load(bundles["ae"], threads=0)


# -- per-feature errors, explanations, anomaly maps, streaming encode ------------------------

def test_ae_errors_pool_to_the_score(bundles, digits_rows):
    model = load(bundles["ae"])
    assert model.manifest.scoring.errors == "errors"
    errors = model.errors(digits_rows[:30])
    assert errors.shape == (30, 1, 8, 8) and np.all(errors >= 0)
    # digits are images: pool=auto is smooth (the errors' smoothed energy, not their mean)
    np.testing.assert_allclose(model.score(digits_rows[:30]), smoothed_energy(errors), rtol=1e-4)


def test_vae_errors_plus_weighted_kl_sum_to_the_score(bundles, digits_rows):
    model = load(bundles["vae"])
    rows = digits_rows[:30].reshape(30, 1, 8, 8)
    kl = model.runners["score"].run({"x": rows}, outputs=["kl"])["kl"]
    nll = model.errors(rows).reshape(30, -1).sum(axis=1, dtype=np.float64)
    total = nll + model.manifest.config["kl_weight"] * kl
    np.testing.assert_allclose(total, model.score(rows), rtol=1e-5)


def test_explain_finds_a_corrupted_pixel(bundles, digits_rows):
    from sklearn.datasets import load_digits

    model = load(bundles["ae"])  # trained on digits of class 0
    rows = digits_rows[load_digits().target == 0][:4].copy()
    corners = [0, 7, 56, 63]
    assert np.all(rows[:, corners] == 0)  # no 0 has ink in a corner
    rows[np.arange(4), corners] = 16.0  # ... until we put some there, one corner per row
    result = model.explain(rows, k=3)
    assert result.features.shape == result.indices.shape == result.errors.shape == (4, 3)
    assert list(result.indices[:, 0]) == corners
    assert list(result.features[:, 0]) == ["c0_y0_x0", "c0_y0_x7", "c0_y7_x0", "c0_y7_x7"]
    assert np.all(np.diff(result.errors, axis=1) <= 0)  # largest first
    errors = model.errors(rows).reshape(4, -1)
    np.testing.assert_array_equal(result.errors, np.take_along_axis(errors, result.indices, axis=1))
    np.testing.assert_array_equal(result.errors[:, 0], errors.max(axis=1))
    assert model.feature_names[:2] == ["c0_y0_x0", "c0_y0_x1"] and model.feature_names[-1] == "c0_y7_x7"


def test_explain_k_is_checked(bundles, digits_rows):
    model = load(bundles["ae"])
    for k in (0, 65, 2.5):
        with pytest.raises(InputError, match="k must be an integer from 1 to the 64 features"):
            model.explain(digits_rows[:2], k=k)
    assert model.explain(digits_rows[:2], k=64).indices.shape == (2, 64)


def test_explain_and_maps_need_per_feature_errors(bundles, digits_rows, tmp_path):
    model = load(bundles["rbm"])
    for call in (lambda: model.errors(digits_rows[:2]), lambda: model.explain(digits_rows[:2], 2),
                 lambda: model.score_file(tmp_path / "rows.npy", tmp_path / "s.csv", explain=2),
                 lambda: model.score_file(tmp_path / "rows.npy", tmp_path / "s.csv", maps=tmp_path / "m.png")):
        with pytest.raises(NotSupported, match="'rbm' gives one score per row and no per-feature errors"):
            call()
    with pytest.raises(NotSupported, match="'dbm' does not support 'score'|'dbm' gives one score"):
        load(bundles["dbm"]).explain(digits_rows[:2], 2)
    assert list(tmp_path.iterdir()) == []


def png_size(path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    import struct

    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_score_file_maps_show_the_highest_scoring_rows(bundles, digits_rows, tmp_path):
    PIL = pytest.importorskip("PIL.Image")
    model = load(bundles["ae"])
    rows = digits_rows[:40].copy()
    rows[[5, 33], :] = 16.0 - rows[[5, 33], :]  # two negatives: the most anomalous rows
    np.save(tmp_path / "rows.npy", rows)
    n = model.score_file(tmp_path / "rows.npy", tmp_path / "s.npy", chunk_rows=7, maps=tmp_path / "m.png", maps_rows=5)
    assert n == 40
    # 5 lines of input, reconstruction, heat map; 8x8 tiles, 1-pixel padding, zoom 8
    assert png_size(tmp_path / "m.png") == ((3 * 9 + 1) * 8, (5 * 9 + 1) * 8)
    picture = np.asarray(PIL.open(tmp_path / "m.png"))
    scores = np.load(tmp_path / "s.npy")["score"]
    assert set(np.argsort(-scores)[:2]) == {5, 33}
    first_input = picture[8:72, 8:72, 0]  # the top line's input tile, in grey levels
    best = rows[np.argmax(scores)].reshape(8, 8)
    np.testing.assert_array_equal(first_input[::8, ::8], np.round(best / 16 * 255).astype(np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.png", "rows.npy", "s.npy"]


def test_top_rows_keeps_the_best_in_bounded_memory():
    from gen.runtime.model import TopRows

    rng = np.random.default_rng(0)
    scores = rng.permutation(100).astype(np.float64)
    scores[[10, 60]] = 99.0  # a tie: the earlier row first
    rows = np.arange(100, dtype=np.float32).reshape(100, 1, 1, 1)
    top = TopRows(4)
    for start in range(0, 100, 9):
        top.add(start, scores[start:start + 9], rows[start:start + 9], rows[start:start + 9] * 2)
        assert len(top.rows) <= 4
    want = np.lexsort((np.arange(100), -scores))[:4]
    np.testing.assert_array_equal(top.index, want)
    np.testing.assert_array_equal(top.rows.reshape(-1), want)
    np.testing.assert_array_equal(top.errors.reshape(-1), 2 * want)


def test_maps_refused_before_any_work(bundles, tmp_path):
    model = load(bundles["ae"])
    for maps, message in ((tmp_path / "m.jpg", "written as .png"), (tmp_path / "no" / "m.png", "does not exist")):
        with pytest.raises(InputError, match=message):
            model.score_file(tmp_path / "missing.npy", tmp_path / "s.csv", maps=maps)
    assert list(tmp_path.iterdir()) == []


def test_encode_file_streams_the_same_codes(bundles, digits_rows, tmp_path):
    model = load(bundles["vae"], batch_size=2)
    np.save(tmp_path / "rows.npy", digits_rows[:10])
    assert model.encode_file(tmp_path / "rows.npy", tmp_path / "c.npy", chunk_rows=3) == 10
    codes = np.load(tmp_path / "c.npy")
    assert codes.dtype == np.float32 and codes.shape == (10, 4)
    np.testing.assert_array_equal(codes, model.encode(digits_rows[:10]))
    model.encode_file(tmp_path / "rows.npy", tmp_path / "c.csv", chunk_rows=3)
    table = np.loadtxt(tmp_path / "c.csv", delimiter=",", skiprows=1, dtype=np.float32)
    np.testing.assert_array_equal(table, codes)  # CSV keeps float32 codes exactly
    assert (tmp_path / "c.csv").read_text().splitlines()[0] == "z0,z1,z2,z3"


@pytest.mark.parametrize("io_binding", [False, True])
def test_one_model_used_from_many_threads_equals_serial_use(bundles, digits_rows, io_binding):
    """onnxruntime sessions are shared by every thread; gen keeps no per-call state on the
    model, so concurrent calls (scores, codes, seeded samples) give the serial answers."""
    from concurrent.futures import ThreadPoolExecutor

    model = load(bundles["vae"], device="cpu", batch_size=7, io_binding=io_binding)
    parts = [digits_rows[i * 13:(i + 1) * 13 + i] for i in range(24)]
    serial = [(model.score(p), model.encode(p), model.sample(5, seed=i)) for i, p in enumerate(parts)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        threaded = list(pool.map(lambda ip: (model.score(ip[1]), model.encode(ip[1]), model.sample(5, seed=ip[0])),
                                 enumerate(parts)))
    for (s1, e1, x1), (s2, e2, x2) in zip(serial, threaded):
        assert np.array_equal(s1, s2) and np.array_equal(e1, e2) and np.array_equal(x1, x2)


@pytest.mark.parametrize("family", ["ae", "vae", "rbm"])
def test_batched_and_chunked_scoring_equals_one_batch(bundles, digits_rows, tmp_path, family):
    """Scores do not depend on how rows are cut: batches of 7 rows, the default batch size, and
    a file read in chunks of 13 rows all give the scores of one batch of every row."""
    rows = digits_rows[:300]
    whole = load(bundles[family], device="cpu", batch_size=len(rows)).score(rows)
    np.testing.assert_allclose(load(bundles[family], device="cpu", batch_size=7).score(rows), whole, rtol=1e-6)
    np.testing.assert_allclose(load(bundles[family], device="cpu").score(rows), whole, rtol=1e-6)
    np.save(tmp_path / "rows.npy", rows)
    load(bundles[family], device="cpu", batch_size=5).score_file(tmp_path / "rows.npy", tmp_path / "s.npy",
                                                                 chunk_rows=13)
    np.testing.assert_allclose(np.load(tmp_path / "s.npy")["score"], whole, rtol=1e-6)


def test_odd_arrays_take_the_checked_path(bundles, digits_rows, tmp_path):
    """What the float32 fast path does not take is checked as before: a 0-d array is refused in
    one line, and an ndarray subclass (a memory map) scores like a plain array."""
    model = load(bundles["ae"], device="cpu")
    with pytest.raises(InputError, match=r"got array of shape \(\)"):
        model.score(np.array(1.0, np.float32))
    mapped = np.lib.format.open_memmap(tmp_path / "rows.npy", mode="w+", dtype=np.float32, shape=(20, 64))
    mapped[:] = digits_rows[:20]
    expected = model.score(digits_rows[:20])
    np.testing.assert_array_equal(model.score(mapped), expected)
    np.testing.assert_array_equal(model.run_batched("score", {"x": mapped.reshape(20, 1, 8, 8)}, "score").reshape(-1),
                                  expected.astype(np.float32))
