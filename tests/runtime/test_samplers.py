"""The samplers (ancestral, Gibbs, mixture) over real onnxruntime sessions of tiny graphs.

The graphs are built in memory with `onnx.helper`, so these tests need no trained bundle:
a 3-visible / 2-hidden Bernoulli RBM whose exact visible marginal is known in closed form,
two shifted generators for the mixture, and a doubling decoder for the ancestral sampler.
The model is a small test double offering the few members the samplers use.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from scipy import stats

from gen.runtime import samplers
from gen.runtime.errors import InputError
from gen.runtime.execution import GraphRunner
from gen.runtime.manifest import AncestralSampler, GibbsSampler, LatentSpec, MixtureSampler, NoiseSpec
from gen.runtime.samplers import ancestral, gibbs, mixture

OPSET = 18
FLOAT = TensorProto.FLOAT


# -- graph building ---------------------------------------------------------------------------

def _port(name: str, width: int) -> onnx.ValueInfoProto:
    """A float32 port [batch, width] with a dynamic batch dimension."""
    return helper.make_tensor_value_info(name, FLOAT, ["batch", width])


def _const(name: str, value) -> onnx.TensorProto:
    """A float32 initializer."""
    return numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)


def _model(nodes, inputs, outputs, initializers, name: str) -> onnx.ModelProto:
    """A checked opset-18 model."""
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8  # readable by any onnxruntime that runs opset 18
    onnx.checker.check_model(model)
    return model


def rbm_gibbs_step(W: np.ndarray, b: np.ndarray, c: np.ndarray) -> onnx.ModelProto:
    """One Bernoulli-RBM Gibbs step v -> h -> v' with the uniforms as inputs:
    p_h = sigmoid(v W + c), h = [u_h < p_h], v_prob = sigmoid(h W^T + b), v_next = [u_v < v_prob]."""
    n_v, n_h = W.shape
    nodes = [
        helper.make_node("MatMul", ["v", "W"], ["vW"]),
        helper.make_node("Add", ["vW", "c"], ["a_h"]),
        helper.make_node("Sigmoid", ["a_h"], ["p_h"]),
        helper.make_node("Less", ["u_h", "p_h"], ["h_bool"]),
        helper.make_node("Cast", ["h_bool"], ["h"], to=FLOAT),
        helper.make_node("MatMul", ["h", "WT"], ["hWT"]),
        helper.make_node("Add", ["hWT", "b"], ["a_v"]),
        helper.make_node("Sigmoid", ["a_v"], ["v_prob"]),
        helper.make_node("Less", ["u_v", "v_prob"], ["v_bool"]),
        helper.make_node("Cast", ["v_bool"], ["v_next"], to=FLOAT),
    ]
    return _model(nodes, [_port("v", n_v), _port("u_h", n_h), _port("u_v", n_v)],
                  [_port("v_next", n_v), _port("v_prob", n_v)],
                  [_const("W", W), _const("WT", W.T), _const("b", b), _const("c", c)], "gibbs_step")


def shift_generator(shift: float, width: int = 2) -> onnx.ModelProto:
    """x = z + shift."""
    nodes = [helper.make_node("Add", ["z", "shift"], ["x"])]
    return _model(nodes, [_port("z", width)], [_port("x", width)], [_const("shift", [shift])], "generator")


def doubling_decoder(width: int = 3) -> onnx.ModelProto:
    """x = 2 z."""
    nodes = [helper.make_node("Mul", ["z", "two"], ["x"])]
    return _model(nodes, [_port("z", width)], [_port("x", width)], [_const("two", [2.0])], "decoder")


# -- the model double -------------------------------------------------------------------------

class TinyModel:
    """The members the samplers use (`manifest.latent`, `manifest.sampler`, `batch_size`,
    `runners`, `port_shape`, `run_batched`) over real CPU onnxruntime sessions."""

    def __init__(self, graphs: dict[str, onnx.ModelProto], sampler, latent: LatentSpec | None = None,
                 batch_size: int = 1000, device: str | None = None):
        self.manifest = SimpleNamespace(sampler=sampler, latent=latent)
        self.batch_size = batch_size
        self.sessions = {role: ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
                         for role, model in graphs.items()}
        self.runners = {role: GraphRunner(session, device) for role, session in self.sessions.items()}

    def port_shape(self, role: str, name: str) -> list[int]:
        """Per-row shape of input `name` of graph `role` (the session's shape less the batch)."""
        port = next(i for i in self.sessions[role].get_inputs() if i.name == name)
        return list(port.shape[1:])

    def run_batched(self, role: str, feeds: dict[str, np.ndarray], output: str) -> np.ndarray:
        """Run `role` in batches of `batch_size` rows, as GenModel.run_batched does."""
        runner = self.runners[role]
        n = len(next(iter(feeds.values())))
        parts = [runner.run({k: v[i:i + self.batch_size] for k, v in feeds.items()}, outputs=[output])[output]
                 for i in range(0, n, self.batch_size)]
        return np.concatenate(parts, axis=0)


# -- RBM fixtures -----------------------------------------------------------------------------

def rbm_params(seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """W (3x2), b (3), c (2) on the scale of 1, from a seeded Generator."""
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 1, (3, 2)).astype(np.float32), rng.normal(0, 1, 3).astype(np.float32),
            rng.normal(0, 1, 2).astype(np.float32))


def gibbs_spec(mean: str | None = None, **defaults) -> GibbsSampler:
    """The RBM's sampler spec."""
    return GibbsSampler(graph="gibbs_step", chain={"v": "v_next"},
                        noise=[NoiseSpec("u_h"), NoiseSpec("u_v")], mean=mean, **defaults)


def rbm_model(mean: str | None = None, batch_size: int = 1000, device: str | None = None,
              params=None) -> TinyModel:
    """A TinyModel over the RBM's gibbs_step graph."""
    W, b, c = rbm_params() if params is None else params
    return TinyModel({"gibbs_step": rbm_gibbs_step(W, b, c)}, gibbs_spec(mean), batch_size=batch_size, device=device)


def exact_visible_marginal(W: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All 2^3 visible states and p(v) ∝ exp(b.v) prod_j (1 + exp(c_j + (v W)_j)), hidden units
    summed out."""
    states = np.array(list(itertools.product([0.0, 1.0], repeat=W.shape[0])))
    W, b, c = (np.asarray(a, dtype=np.float64) for a in (W, b, c))
    log_p = states @ b + np.log1p(np.exp(c + states @ W)).sum(axis=1)
    p = np.exp(log_p - log_p.max())
    return states, p / p.sum()


def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-a))


# -- Gibbs ------------------------------------------------------------------------------------

def test_gibbs_matches_exact_rbm_marginal():
    W, b, c = rbm_params()
    model = rbm_model()
    n = 4000
    # One sample per chain at its 30th step: chains are independent, so the sample is iid.
    x = gibbs.sample(model, model.manifest.sampler, n, np.random.default_rng(0), steps=30)
    assert x.shape == (n, 3) and x.dtype == np.float32
    assert set(np.unique(x)) <= {0.0, 1.0}
    states, p = exact_visible_marginal(W, b, c)
    codes = (x.astype(int) * np.array([4, 2, 1])).sum(axis=1)  # same order as itertools.product
    empirical = np.bincount(codes, minlength=8) / n
    tv = 0.5 * np.abs(empirical - p).sum()
    # A marginal far from uniform, so the check would catch a sampler returning coin flips.
    assert 0.5 * np.abs(p - 1 / 8).sum() > 0.1
    assert tv < 0.05, (tv, empirical, p)


def test_gibbs_seeded_and_independent_of_batch_size():
    spec = gibbs_spec()
    big, small = rbm_model(batch_size=1000), rbm_model(batch_size=7)
    draw = lambda model, seed: gibbs.sample(model, spec, 50, np.random.default_rng(seed), steps=20,
                                            burn_in=10, thin=5)
    a = draw(big, 1)
    np.testing.assert_array_equal(a, draw(big, 1))
    assert not np.array_equal(a, draw(big, 2))
    # 50 samples at 2 per chain: 25 chains, 4 groups of 7 under batch_size 7.
    np.testing.assert_array_equal(a, draw(small, 1))


@pytest.mark.parametrize("mean", [None, "v_prob"])
def test_gibbs_iobinding_matches_plain_runs(mean):
    # batch_size 4 splits the chains into groups, so states kept as OrtValues between steps
    # are fed back group by group.
    plain = rbm_model(mean=mean, batch_size=4)
    bound = rbm_model(mean=mean, batch_size=4, device="cpu")
    assert all(r.device == "cpu" for r in bound.runners.values())
    spec = plain.manifest.sampler
    a = gibbs.sample(plain, spec, 30, np.random.default_rng(5), steps=25, burn_in=5, thin=4)
    b = gibbs.sample(bound, spec, 30, np.random.default_rng(5), steps=25, burn_in=5, thin=4)
    assert isinstance(b, np.ndarray) and b.shape == (30, 3)
    np.testing.assert_array_equal(a, b)


def test_gibbs_schedule():
    assert gibbs.schedule(10, 100, 50, 10, None) == (50, 5, 2)
    assert gibbs.schedule(10, 100, None, 1, None) == (99, 1, 10)  # default burn_in: one per chain
    assert gibbs.schedule(11, 100, 50, 10, None) == (50, 5, 3)    # rounds chains up
    assert gibbs.schedule(10, 100, 50, 10, 4) == (50, 5, 4)       # more chains than needed is fine
    assert gibbs.schedule(5, 10, 0, 5, None) == (0, 2, 3)         # burn_in 0 keeps steps 5 and 10
    with pytest.raises(InputError, match="chains"):
        gibbs.schedule(10, 100, 50, 10, 1)


def test_gibbs_returns_n_rows_of_mean_field_probabilities():
    model = rbm_model(mean="v_prob", batch_size=3)
    x = gibbs.sample(model, model.manifest.sampler, 10, np.random.default_rng(0), steps=100, burn_in=50, thin=10)
    assert x.shape == (10, 3)
    assert ((x >= 0) & (x <= 1)).all()
    assert not np.isin(x, [0.0, 1.0]).all()
    # v_prob = sigmoid(h W^T + b) takes one of the 4 values for the 4 hidden states.
    W, b, _ = rbm_params()
    hidden = np.array(list(itertools.product([0.0, 1.0], repeat=2)))
    allowed = _sigmoid(hidden @ W.T.astype(np.float64) + b)
    assert all(np.isclose(row, allowed, atol=1e-6).all(axis=1).any() for row in x)


def test_gibbs_keeps_n_of_more_than_needed():
    # 3 chains x 5 kept > 10: the result is cut to n rows, in (kept step, chain) order.
    model = rbm_model()
    full = gibbs.sample(model, model.manifest.sampler, 15, np.random.default_rng(4), steps=100, burn_in=50,
                        thin=10, chains=3)
    cut = gibbs.sample(model, model.manifest.sampler, 10, np.random.default_rng(4), steps=100, burn_in=50,
                       thin=10, chains=3)
    np.testing.assert_array_equal(cut, full[:10])


@pytest.mark.parametrize("options, word", [
    ({"steps": 10, "burn_in": 8, "thin": 5}, "burn_in"),
    ({"steps": 10, "thin": 0}, "thin"),
    ({"steps": 0}, "steps"),
    ({"steps": 10, "temperature": 2}, "temperature"),
    ({"steps": 1, "chains": 4, "init": np.zeros((4, 2), dtype=np.float32)}, "init"),
    ({"steps": 1, "chains": 4, "init": np.zeros((3, 3), dtype=np.float32)}, "init"),
    ({"steps": 1, "chains": 4, "init": np.full((4, 3), np.nan, dtype=np.float32)}, "init"),
    ({"steps": 10, "init": "data"}, "init"),
])
def test_gibbs_refuses_bad_options(options, word):
    model = rbm_model()
    with pytest.raises(InputError, match=word):
        gibbs.sample(model, model.manifest.sampler, 4, np.random.default_rng(0), **options)


def test_gibbs_spec_defaults_apply_and_options_override_them():
    # The spec's steps/thin/burn_in are the defaults: the same as passing them explicitly.
    model = rbm_model()
    spec = gibbs_spec(steps=12, burn_in=2, thin=5)
    by_spec = gibbs.sample(model, spec, 4, np.random.default_rng(8))
    explicit = gibbs.sample(model, gibbs_spec(), 4, np.random.default_rng(8), steps=12, burn_in=2, thin=5)
    np.testing.assert_array_equal(by_spec, explicit)


def test_gibbs_init_array_gives_the_one_step_transition():
    W, b, c = rbm_params()
    model = rbm_model()
    chains = 64
    init = np.random.default_rng(11).integers(0, 2, (chains, 3)).astype(np.float32)
    x = gibbs.sample(model, model.manifest.sampler, chains, np.random.default_rng(9), steps=1, init=init)
    # The sampler's rng calls with an init array: one draw per noise input, in spec order,
    # float32 uniforms of shape (chains, *port shape).
    rng = np.random.default_rng(9)
    u_h = rng.random((chains, 2), dtype=np.float32)
    u_v = rng.random((chains, 3), dtype=np.float32)
    h = (u_h < _sigmoid(init @ W + c)).astype(np.float32)
    v_next = (u_v < _sigmoid(h @ W.T + b)).astype(np.float32)
    np.testing.assert_array_equal(x, v_next)
    # The init matters: other starting states give other next states with the same noise.
    other = gibbs.sample(model, model.manifest.sampler, chains, np.random.default_rng(9), steps=1, init=1 - init)
    assert not np.array_equal(x, other)


def test_gibbs_init_array_with_saturated_rbm():
    # W = 0 and huge biases: every unit is on after one step whatever the state and noise.
    params = (np.zeros((3, 2), np.float32), np.full(3, 50.0, np.float32), np.full(2, 50.0, np.float32))
    model = rbm_model(params=params)
    x = gibbs.sample(model, model.manifest.sampler, 5, np.random.default_rng(0), steps=1,
                     init=np.zeros((5, 3), np.float32))
    np.testing.assert_array_equal(x, np.ones((5, 3), np.float32))


# -- mixture ----------------------------------------------------------------------------------

def mixture_model(weights, batch_size: int = 1000) -> TinyModel:
    """generator_0: z + 10, generator_1: z - 10, with an N(0, I) prior on z in R^2."""
    return TinyModel({"generator_0": shift_generator(10.0), "generator_1": shift_generator(-10.0)},
                     MixtureSampler(graphs=["generator_0", "generator_1"], weights=list(weights)),
                     latent=LatentSpec(dim=2, prior="normal"), batch_size=batch_size)


def test_mixture_seeded_and_independent_of_batch_size():
    big, small = mixture_model([0.3, 0.7]), mixture_model([0.3, 0.7], batch_size=7)
    spec = big.manifest.sampler
    a = mixture.sample(big, spec, 100, np.random.default_rng(1))
    assert a.shape == (100, 2) and a.dtype == np.float32
    np.testing.assert_array_equal(a, mixture.sample(big, spec, 100, np.random.default_rng(1)))
    assert not np.array_equal(a, mixture.sample(big, spec, 100, np.random.default_rng(2)))
    np.testing.assert_array_equal(a, mixture.sample(small, spec, 100, np.random.default_rng(1)))


def test_mixture_component_shares_follow_the_weights():
    model = mixture_model([0.3, 0.7])
    n = 5000
    x = mixture.sample(model, model.manifest.sampler, n, np.random.default_rng(0))
    first = x[:, 0] > 0  # generator_0 shifts by +10, generator_1 by -10: |z| < 10 in practice
    # Both coordinates agree on the component, and each sample is its generator's output.
    np.testing.assert_array_equal(first, x[:, 1] > 0)
    assert (np.abs(np.where(first[:, None], x - 10, x + 10)) < 6).all()
    counts = [first.sum(), n - first.sum()]
    assert stats.chisquare(counts, [0.3 * n, 0.7 * n]).pvalue > 0.001


def test_mixture_codes_are_the_prior_draws():
    # Draw order: components, then codes; x - shift recovers the codes draw_latent gives.
    model = mixture_model([0.3, 0.7])
    n = 200
    x = mixture.sample(model, model.manifest.sampler, n, np.random.default_rng(6))
    rng = np.random.default_rng(6)
    component = rng.choice(2, size=n, p=[0.3, 0.7])
    z = ancestral.draw_latent(model.manifest.latent, n, rng)
    np.testing.assert_allclose(x, z + np.where(component == 0, 10.0, -10.0)[:, None], atol=1e-5)


@pytest.mark.parametrize("weights, sign", [([0.0, 1.0], -1), ([1.0, 0.0], 1)])
def test_mixture_zero_weight_component_is_never_drawn(weights, sign):
    model = mixture_model(weights)
    x = mixture.sample(model, model.manifest.sampler, 500, np.random.default_rng(0))
    assert x.shape == (500, 2)
    assert (np.sign(x) == sign).all()


def test_mixture_unnormalised_weights():
    # Weights are normalised: [3, 7] is [0.3, 0.7].
    a = mixture_model([3.0, 7.0])
    b = mixture_model([0.3, 0.7])
    np.testing.assert_array_equal(mixture.sample(a, a.manifest.sampler, 50, np.random.default_rng(3)),
                                  mixture.sample(b, b.manifest.sampler, 50, np.random.default_rng(3)))


def test_mixture_refuses_options():
    model = mixture_model([0.3, 0.7])
    with pytest.raises(InputError, match="steps"):
        mixture.sample(model, model.manifest.sampler, 10, np.random.default_rng(0), steps=5)


# -- ancestral --------------------------------------------------------------------------------

MEAN = [1.0, -2.0, 0.5]
COV = [[1.0, 0.5, 0.0], [0.5, 2.0, -0.3], [0.0, -0.3, 0.5]]


def ancestral_model(latent: LatentSpec, batch_size: int = 1000) -> TinyModel:
    """decoder: x = 2 z."""
    return TinyModel({"decoder": doubling_decoder()}, AncestralSampler(graph="decoder"), latent=latent,
                     batch_size=batch_size)


@pytest.mark.parametrize("latent, mean, cov", [
    (LatentSpec(dim=3, prior="gaussian", mean=MEAN, cov=COV), MEAN, COV),
    (LatentSpec(dim=3, prior="normal"), [0.0] * 3, np.eye(3)),
])
def test_ancestral_moments_follow_the_prior(latent, mean, cov):
    model = ancestral_model(latent)
    x = ancestral.sample(model, model.manifest.sampler, 20000, np.random.default_rng(0))
    assert x.shape == (20000, 3) and x.dtype == np.float32
    z = x.astype(np.float64) / 2
    np.testing.assert_allclose(z.mean(axis=0), mean, atol=0.05)
    np.testing.assert_allclose(np.cov(z, rowvar=False), cov, atol=0.05)


def test_ancestral_seeded_and_independent_of_batch_size():
    latent = LatentSpec(dim=3, prior="gaussian", mean=MEAN, cov=COV)
    a = ancestral.sample(ancestral_model(latent), AncestralSampler(graph="decoder"), 50, np.random.default_rng(4))
    b = ancestral.sample(ancestral_model(latent, batch_size=7), AncestralSampler(graph="decoder"), 50,
                         np.random.default_rng(4))
    np.testing.assert_array_equal(a, b)


def test_draw_latent_is_seeded():
    latent = LatentSpec(dim=3, prior="gaussian", mean=MEAN, cov=COV)
    a = ancestral.draw_latent(latent, 10, np.random.default_rng(7))
    assert a.shape == (10, 3) and a.dtype == np.float32
    np.testing.assert_array_equal(a, ancestral.draw_latent(latent, 10, np.random.default_rng(7)))
    assert not np.array_equal(a, ancestral.draw_latent(latent, 10, np.random.default_rng(8)))


def test_draw_latent_rank_deficient_covariance():
    # A rank-deficient code covariance (z2 = z1) still draws, thanks to the jitter.
    latent = LatentSpec(dim=2, prior="gaussian", mean=[0.0, 0.0], cov=[[1.0, 1.0], [1.0, 1.0]])
    z = ancestral.draw_latent(latent, 1000, np.random.default_rng(0))
    assert np.isfinite(z).all()
    np.testing.assert_allclose(z[:, 0], z[:, 1], atol=0.01)


def test_ancestral_refuses_options():
    model = ancestral_model(LatentSpec(dim=3))
    with pytest.raises(InputError, match="temperature"):
        ancestral.sample(model, model.manifest.sampler, 10, np.random.default_rng(0), temperature=2)


# -- dispatch ---------------------------------------------------------------------------------

@pytest.mark.parametrize("make, module, options", [
    (lambda: ancestral_model(LatentSpec(dim=3)), ancestral, {}),
    (lambda: mixture_model([0.3, 0.7]), mixture, {}),
    (lambda: rbm_model(), gibbs, {"steps": 5}),
])
def test_draw_dispatches_on_the_sampler_kind(make, module, options):
    model = make()
    assert samplers.SAMPLERS[model.manifest.sampler.kind] is module
    got = samplers.draw(model, 20, np.random.default_rng(3), **options)
    want = module.sample(model, model.manifest.sampler, 20, np.random.default_rng(3), **options)
    np.testing.assert_array_equal(got, want)
    # Each sampler's output is told apart from the others': the dispatch really chose it.
    assert got.shape[1] == (2 if module is mixture else 3)


def test_draw_passes_options_through():
    model = rbm_model()
    with pytest.raises(InputError, match="temperature"):
        samplers.draw(model, 4, np.random.default_rng(0), steps=3, temperature=2)


def test_one_list_of_sampler_kinds_serves_dispatch_and_the_manifest():
    """The kinds a manifest may declare are exactly the sampler modules (samplers.MODULES), each
    naming its manifest dataclass: a kind no module implements is refused when parsed."""
    from gen.runtime.errors import BundleError
    from gen.runtime.manifest import _parse_sampler

    assert set(samplers.SPECS) == set(samplers.SAMPLERS) == {"ancestral", "gibbs", "mixture"}
    for kind, module in samplers.SAMPLERS.items():
        assert module.SPEC.__dataclass_fields__["kind"].default == kind and module in samplers.MODULES
    assert _parse_sampler({"kind": "ancestral", "graph": "decoder"}, "m", "sampler").graph == "decoder"
    with pytest.raises(BundleError, match="sampler.kind: expected one of ancestral, gibbs, mixture"):
        _parse_sampler({"kind": "langevin"}, "m", "sampler")
