"""Discriminator-guided sampling (DRS, MH-GAN): the sample count, the seed, and the target
they move the proposals towards, on a case with a known density ratio."""

from types import SimpleNamespace

import numpy as np
import pytest

from gen.runtime import NotSupported, load
from gen.runtime.errors import InputError
from gen.runtime.manifest import RefineSpec
from gen.runtime.samplers import refine


def toy(scale=1.0, offset=0.0):
    """Proposals U(0, 1) on one feature; D's value log(2x), so exp(logit) = p_data / p_model for
    the data density 2x (mean 2/3)."""
    spec = RefineSpec(graph="discriminator", output="logit", scale=scale, offset=offset, max_logit=np.log(2.0),
                      accuracy=0.6, n_real=100, n_fake=100)
    calls = []

    def run_batched(role, feeds, output):
        calls.append(len(feeds["x"]))
        return np.log(2 * np.maximum(feeds["x"][:, 0], 1e-12)).astype(np.float32)

    model = SimpleNamespace(manifest=SimpleNamespace(refine=spec, family="toy"), run_batched=run_batched)
    return model, calls


def proposer(rng):
    return lambda m: rng.random((m, 1)).astype(np.float32)


def test_mh_converges_to_the_target():
    model, _ = toy()
    rng = np.random.default_rng(0)
    x = refine.mh(model, 4000, rng, proposer(rng), steps=100)
    assert x.shape == (4000, 1)
    assert abs(x.mean() - 2 / 3) < 0.02 and abs((x ** 2).mean() - 0.5) < 0.02  # E x^2 = 1/2 under 2x


def test_drs_keeps_n_and_moves_towards_the_target():
    model, calls = toy()
    rng = np.random.default_rng(0)
    x = refine.drs(model, 3000, rng, proposer(rng))
    assert x.shape == (3000, 1) and x.mean() > 0.6
    assert len(calls) > 1  # several rounds of proposals were needed


def test_calibration_is_applied():
    """offset -inf-like: every proposal looks fake; the ratios still order the rows the same,
    so MH's result does not change, but a flat scale 0 leaves the proposals as they are."""
    model, _ = toy(scale=0.0)
    rng = np.random.default_rng(0)
    x = refine.mh(model, 4000, rng, proposer(rng), steps=20)
    assert abs(x.mean() - 0.5) < 0.02


@pytest.mark.parametrize("method", ["drs", "mh"])
def test_same_seed_same_samples(method):
    def run(seed):
        model, _ = toy()
        rng = np.random.default_rng(seed)
        return refine.sample(model, 500, rng, method, proposer(rng))

    assert np.array_equal(run(1), run(1)) and not np.array_equal(run(1), run(2))


def test_bad_options_are_refused():
    model, _ = toy()
    rng = np.random.default_rng(0)
    with pytest.raises(InputError, match="refine must be one of drs, mh"):
        refine.sample(model, 5, rng, "nope", proposer(rng))
    with pytest.raises(InputError, match="steps is an option of --refine mh"):
        refine.sample(model, 5, rng, "drs", proposer(rng), steps=3)
    with pytest.raises(InputError, match="quantile is an option of --refine drs"):
        refine.sample(model, 5, rng, "mh", proposer(rng), quantile=0.5)
    with pytest.raises(InputError, match="quantile must be in"):
        refine.sample(model, 5, rng, "drs", proposer(rng), quantile=1.5)


@pytest.mark.parametrize("family", ["gan", "adagan"])
@pytest.mark.parametrize("method", ["drs", "mh"])
def test_bundles_refine_with_their_calibrated_discriminator(bundles, family, method):
    model = load(bundles[family], batch_size=7)  # batching does not change what a seed gives
    r = model.manifest.refine
    assert r is not None and r.n_real >= 2 and 0.0 <= r.accuracy <= 1.0
    a = model.sample(40, seed=3, refine=method)
    b = load(bundles[family]).sample(40, seed=3, refine=method)
    assert a.shape == (40, *model.manifest.data.shape) and np.array_equal(a, b)
    assert not np.array_equal(a, model.sample(40, seed=3))


def test_refine_is_refused_where_it_does_not_apply(bundles):
    with pytest.raises(NotSupported, match="no calibrated discriminator"):
        load(bundles["vae"]).sample(4, refine="drs")
    with pytest.raises(InputError, match="not Gibbs chains"):
        load(bundles["rbm"]).sample(4, refine="mh")
    with pytest.raises(InputError, match="go with refine"):
        load(bundles["gan"]).sample(4, refine_steps=3)
