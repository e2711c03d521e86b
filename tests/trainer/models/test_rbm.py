"""The RBM families (rbm: Bernoulli, grbm: Gaussian-Bernoulli), checked against their definition:
free energies against brute-force marginals of the energy, the Gibbs step against the exact
conditionals, the CD / CD-k / PCD trainer, the options' preprocessing, and one tiny model end to
end (train -> export -> runtime log p(v), Gibbs sampling, score files, the CLI)."""

from __future__ import annotations

import csv
import itertools
import math
import warnings

import numpy as np
import pytest
import torch
from scipy.special import expit, logsumexp

from gen.runtime.errors import ConfigError
from gen.runtime.manifest import DataSpec, PreprocessSpec
from gen.trainer.config import TrainConfig
from gen.trainer.graphs import RawUnits
from gen.trainer.models import rbm
from gen.trainer.protocols import likelihood

SQUARE = DataSpec("test", "image", [1, 2, 2], raw_range=[0.0, 1.0],
                  preprocessing=PreprocessSpec(0.0, 1.0, [0.0, 1.0]))  # 4 binary pixels
PIXELS16 = DataSpec("test", "image", [1, 4, 4], raw_range=[0.0, 1.0],
                    preprocessing=PreprocessSpec(0.0, 1.0, [0.0, 1.0]))
POINTS = DataSpec("test", "tabular", [2])


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one torch thread is fastest (and not at the mercy of a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def net(model, data, **options):
    cfg = TrainConfig.make(model=model, **options)
    options = cfg.family.resolve(cfg.options, data)
    return cfg.family.build(options, data), options


def states(k: int) -> np.ndarray:
    """All 2^k binary vectors, float64, one per row."""
    return np.array(list(itertools.product([0.0, 1.0], repeat=k)))


def set_params(model, seed: int, scale: float = 1.0, log_sigma=None):
    """Seeded W, b, c (and log sigma) set by hand; the net is moved to float64."""
    g = torch.Generator().manual_seed(seed)
    model.double()
    with torch.no_grad():
        model.W.copy_(scale * torch.randn(model.W.shape, generator=g, dtype=torch.float64))
        model.b.copy_(torch.randn(model.b.shape, generator=g, dtype=torch.float64))
        model.c.copy_(torch.randn(model.c.shape, generator=g, dtype=torch.float64))
        if log_sigma is not None:
            model.log_sigma.copy_(torch.tensor(log_sigma, dtype=torch.float64))
    W, b, c = (p.detach().numpy().copy() for p in (model.W, model.b, model.c))
    return W, b, c


def bernoulli_energy(v: np.ndarray, h: np.ndarray, W, b, c) -> np.ndarray:
    """E(v, h) for every pair: rows of v against rows of h -> (len(v), len(h))."""
    return -(v @ b)[:, None] - (h @ c)[None, :] - v @ W @ h.T


def gaussian_energy(v: np.ndarray, h: np.ndarray, W, b, c, sigma) -> np.ndarray:
    quad = (0.5 * ((v - b) / sigma) ** 2).sum(1)
    return quad[:, None] - (h @ c)[None, :] - (v / sigma) @ W @ h.T


# -- 1. free energy = -log sum_h exp(-E(v, h)) ----------------------------------------------------

def test_bernoulli_free_energy_is_the_marginal_of_the_energy():
    model, _ = net("rbm", SQUARE, n_hidden=3)
    W, b, c = set_params(model, seed=0, scale=1.5)
    v, h = states(4), states(3)
    brute = -logsumexp(-bernoulli_energy(v, h, W, b, c), axis=1)
    got = model.free_energy(torch.from_numpy(v).reshape(16, 1, 2, 2)).detach().numpy()
    np.testing.assert_allclose(got, brute, rtol=0, atol=1e-10)
    np.testing.assert_allclose(likelihood.free_energy(v, W, b, c), brute, rtol=0, atol=1e-10)
    # and log Z by enumeration of the joint matches the protocol's exact_log_partition
    np.testing.assert_allclose(logsumexp(-bernoulli_energy(v, h, W, b, c)),
                               likelihood.exact_log_partition(W, b, c), rtol=0, atol=1e-10)


def test_gaussian_free_energy_is_the_marginal_of_the_energy():
    model, _ = net("grbm", POINTS, n_hidden=3, learn_sigma=True)
    sigma = np.array([0.5, 2.0])
    W, b, c = set_params(model, seed=1, log_sigma=np.log(sigma))
    v = np.random.default_rng(0).normal(size=(50, 2)) * 3
    brute = -logsumexp(-gaussian_energy(v, states(3), W, b, c, sigma), axis=1)
    got = model.free_energy(torch.from_numpy(v)).detach().numpy()
    np.testing.assert_allclose(got, brute, rtol=0, atol=1e-10)
    np.testing.assert_allclose(likelihood.grbm_free_energy(v, W, b, c, sigma), brute, rtol=0, atol=1e-10)


def grbm_log_z_by_hand(W, b, c, sigma) -> float:
    """log int sum_h exp(-E(v, h)) dv, the v-integral in closed form per hidden state:
    int exp(-(v-b)^2/(2 s^2) + v a/s) dv = sqrt(2 pi) s exp(a b/s + a^2/2), a = (W h)_i."""
    h = states(W.shape[1])
    a = h @ W.T
    per_h = h @ c + (a * b / sigma + 0.5 * a ** 2).sum(1) + np.log(np.sqrt(2 * np.pi) * sigma).sum()
    return float(logsumexp(per_h))


def test_gaussian_free_energy_integrates_to_the_closed_form_partition():
    model, options = net("grbm", POINTS, n_hidden=3, learn_sigma=True, log_z="exact")
    sigma = np.array([0.5, 2.0])
    W, b, c = set_params(model, seed=2, scale=0.5, log_sigma=np.log(sigma))
    step = 0.1  # a uniform-grid sum of a smooth density converges far faster than any power of step
    grid = np.arange(-25, 25, step)
    vv = np.stack(np.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    free = model.free_energy(torch.from_numpy(vv)).detach().numpy()
    numeric = float(logsumexp(-free) + 2 * np.log(step))
    expected = grbm_log_z_by_hand(W, b, c, sigma)
    assert numeric == pytest.approx(expected, abs=1e-6)
    assert likelihood.grbm_exact_log_partition(W, b, c, sigma) == pytest.approx(expected, abs=1e-10)
    hook = rbm.log_partition(model, options, torch.zeros(1, 2))
    assert hook.method == "exact" and hook.std == 0.0
    assert hook.value == pytest.approx(expected, abs=1e-8)


def test_log_z_auto_resolves_by_the_enumerated_layer():
    # grbm enumerates its hidden layer: exact up to 20 units, else none (no AIS for grbm)
    table = DataSpec("test", "tabular", [4])
    gaussian, options = net("grbm", table, n_hidden=32)
    assert options.log_z == "none"
    assert rbm.log_partition(gaussian, options, torch.randn(10, 4)) is None
    assert net("grbm", table, n_hidden=20)[1].log_z == "exact"
    with pytest.raises(ConfigError, match="log_z=exact"):
        net("grbm", table, n_hidden=21, log_z="exact")
    # rbm enumerates the smaller layer: exact when either layer is small, else AIS
    big = DataSpec("test", "image", [1, 5, 5], preprocessing=PreprocessSpec(0.0, 1.0, [0.0, 1.0]))
    assert net("rbm", big, n_hidden=20)[1].log_z == "exact"
    assert net("rbm", SQUARE, n_hidden=500)[1].log_z == "exact"
    assert net("rbm", big, n_hidden=21)[1].log_z == "none"  # past enumeration: AIS only when asked for
    with pytest.raises(ConfigError, match="log_z=exact"):
        net("rbm", big, n_hidden=21, log_z="exact")


# -- 2. the Gibbs step against the exact conditionals -------------------------------------------

def test_bernoulli_conditionals_follow_from_the_free_energy():
    """p(v | h) from the joint p(v, h) = exp(-F(v)) p(h | v) / Z, over the 16 visible states,
    is the product of Bernoullis with means visible_mean(h)."""
    model, _ = net("rbm", SQUARE, n_hidden=3)
    set_params(model, seed=3, scale=1.5)
    v, h = torch.from_numpy(states(4)), torch.from_numpy(states(3))
    with torch.no_grad():
        p_h = model.hidden_probs(v)                                  # (16, 3)
        p_h_given_v = torch.prod(torch.where(h[None] == 1, p_h[:, None], 1 - p_h[:, None]), -1)  # (16, 8)
        joint = torch.exp(-model.free_energy(v))[:, None] * p_h_given_v
        p_v_given_h = (joint / joint.sum(0)).T                       # (8, 16)
        mean = model.visible_mean(h)                                 # (8, 4)
        expected = torch.prod(torch.where(v[None] == 1, mean[:, None], 1 - mean[:, None]), -1)
    torch.testing.assert_close(p_v_given_h, expected, rtol=0, atol=1e-12)


def test_bernoulli_gibbs_step_draws_from_the_conditionals():
    model, _ = net("rbm", SQUARE, n_hidden=3)
    W, b, c = set_params(model, seed=4, scale=1.5)
    model.float()
    n = 200_000
    v = torch.tensor([1.0, 0.0, 1.0, 1.0]).reshape(1, 1, 2, 2).expand(n, 1, 2, 2)
    g = torch.Generator().manual_seed(0)
    u_h, u_v = torch.rand(n, 3, generator=g), torch.rand(n, 1, 2, 2, generator=g)
    with torch.no_grad():
        v_next, v_mean = model.gibbs_step(v, u_h, u_v)
    assert v_next.shape == v_mean.shape == (n, 1, 2, 2)
    # the hidden state the noise selects, and the visible mean and draw it implies
    p_h = expit(np.array([1.0, 0.0, 1.0, 1.0]) @ W + c)
    h = (u_h.numpy() < p_h.astype(np.float32)).astype(np.float64)
    np.testing.assert_allclose(v_mean.reshape(n, 4).numpy(), expit(h @ W.T + b), rtol=0, atol=1e-6)
    assert torch.equal(v_next, (u_v < v_mean).float())
    assert set(np.unique(v_next.numpy())) <= {0.0, 1.0}
    # distribution: p(h | v) over the 8 hidden states, E[v'] = sum_h p(h | v) sigmoid(W h + b)
    hs = states(3)
    p_states = np.prod(np.where(hs == 1, p_h, 1 - p_h), axis=1)
    counts = np.array([(h == s).all(1).sum() for s in hs]) / n
    np.testing.assert_allclose(counts, p_states, atol=0.005)
    expected_v = p_states @ expit(hs @ W.T + b)
    np.testing.assert_allclose(v_next.reshape(n, 4).numpy().mean(0), expected_v, atol=0.005)


def test_gaussian_conditionals_follow_from_the_free_energy():
    """p(v | h) ∝ exp(-F(v)) p(h | v), integrated on a grid, has mean visible_mean(h) and
    standard deviation sigma per feature."""
    model, _ = net("grbm", POINTS, n_hidden=3, learn_sigma=True)
    sigma = np.array([0.5, 2.0])
    set_params(model, seed=5, scale=0.7, log_sigma=np.log(sigma))
    step = 0.1
    grid = np.arange(-20, 20, step)
    vv = torch.from_numpy(np.stack(np.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2))
    h = torch.from_numpy(states(3))
    with torch.no_grad():
        log_free = -model.free_energy(vv)
        p_h = model.hidden_probs(vv)
        mean = model.visible_mean(h).numpy()
    for j, hj in enumerate(h):
        log_w = log_free + torch.log(torch.where(hj == 1, p_h, 1 - p_h)).sum(1)
        w = torch.softmax(log_w, 0).numpy()
        m = w @ vv.numpy()
        sd = np.sqrt(w @ (vv.numpy() - m) ** 2)
        np.testing.assert_allclose(m, mean[j], atol=1e-6)
        np.testing.assert_allclose(sd, sigma, atol=1e-4)


def test_gaussian_gibbs_step_adds_sigma_times_the_noise():
    model, _ = net("grbm", POINTS, n_hidden=3, learn_sigma=True)
    sigma = np.array([0.5, 2.0])
    W, b, c = set_params(model, seed=6, scale=0.7, log_sigma=np.log(sigma))
    model.float()
    n = 200_000
    v0 = np.array([0.3, -1.2])
    g = torch.Generator().manual_seed(1)
    u_h, n_v = torch.rand(n, 3, generator=g), torch.randn(n, 2, generator=g)
    with torch.no_grad():
        v_next, v_sample, v_mean = model.gibbs_step(torch.tensor(v0, dtype=torch.float32).expand(n, 2), u_h, n_v)
    torch.testing.assert_close(v_sample, v_next, rtol=0, atol=0)  # the sample handed back is the chain's state
    sigma32 = torch.tensor(sigma, dtype=torch.float32)
    torch.testing.assert_close(v_next - v_mean, sigma32 * n_v, rtol=0, atol=1e-5)
    p_h = expit((v0 / sigma) @ W + c)
    h = (u_h.numpy() < p_h.astype(np.float32)).astype(np.float64)
    np.testing.assert_allclose(v_mean.numpy(), b + sigma * (h @ W.T), rtol=0, atol=1e-5)
    hs = states(3)
    p_states = np.prod(np.where(hs == 1, p_h, 1 - p_h), axis=1)
    expected = p_states @ (b + sigma * (hs @ W.T))
    np.testing.assert_allclose(v_next.numpy().mean(0), expected, atol=0.02)


# -- 3. PCD chains persist; CD starts at the data -----------------------------------------------

def spy_on_chains(monkeypatch) -> list:
    calls = []
    original = rbm.Trainer.sample_chain

    def spy(self, v, steps):
        out = original(self, v, steps)
        calls.append((v.clone(), steps, out.clone()))
        return out

    monkeypatch.setattr(rbm.Trainer, "sample_chain", spy)
    return calls


@pytest.mark.parametrize("k", [1, 3])
def test_pcd_chains_persist_across_updates(monkeypatch, k):
    torch.manual_seed(0)
    calls = spy_on_chains(monkeypatch)
    model, options = net("rbm", PIXELS16, n_hidden=5, method="pcd", cd_k=k)
    trainer = rbm.Trainer(model, options)
    x = torch.bernoulli(torch.full((32, 1, 4, 4), 0.3))
    for _ in range(4):
        trainer.step(x)
    assert len(calls) == 4 and all(steps == k for _, steps, _ in calls)
    start0 = calls[0][0]
    assert start0.shape == (32, 16) and set(start0.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(start0, x.flatten(1))  # fresh coin-flip chains, not the data
    for (_, _, end), (start, _, _) in zip(calls, calls[1:]):
        assert torch.equal(start, end)
    assert torch.equal(trainer.chains, calls[-1][2])


def test_cd_chains_start_at_the_data(monkeypatch):
    torch.manual_seed(0)
    calls = spy_on_chains(monkeypatch)
    model, options = net("rbm", PIXELS16, n_hidden=5, method="cd", cd_k=5)
    trainer = rbm.Trainer(model, options)
    batches = [torch.bernoulli(torch.full((32, 1, 4, 4), 0.3)) for _ in range(3)]
    for x in batches:
        trainer.step(x)
    assert [steps for _, steps, _ in calls] == [5, 5, 5]
    for x, (start, _, _) in zip(batches, calls):
        assert torch.equal(start, x.flatten(1))
    assert trainer.chains is None


# -- 4. CD-1, CD-5 and PCD learn ------------------------------------------------------------------

def prototype_rows(n: int, seed: int = 0) -> torch.Tensor:
    """Rows of 16 pixels near 3 binary prototypes (5% of pixels flipped)."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.bernoulli(torch.full((3, 16), 0.5), generator=g)
    rows = protos[torch.randint(0, 3, (n,), generator=g)]
    flips = torch.rand(n, 16, generator=g) < 0.05
    return torch.where(flips, 1 - rows, rows).reshape(n, 1, 4, 4)


@pytest.mark.parametrize("method,k", [("cd", 1), ("cd", 5), ("pcd", 1)])
def test_contrastive_divergence_reduces_reconstruction_error(method, k):
    torch.manual_seed(0)
    x = prototype_rows(640)
    model, options = net("rbm", PIXELS16, n_hidden=8, method=method, cd_k=k, lr=0.5)
    trainer = rbm.Trainer(model, options)
    recon = []
    for step in range(200):
        i = (step * 64) % len(x)
        losses = trainer.step(x[i:i + 64])
        assert set(losses) == {"cd_loss", "recon"}
        recon.append(losses["recon"])
    first, last = np.mean(recon[:10]), np.mean(recon[-10:])
    assert np.isfinite(recon).all()
    assert last < 0.5 * first, (first, last)


def test_fit_start_sets_visible_biases_to_the_base_rate():
    model, options = net("rbm", PIXELS16, n_hidden=5)
    x = prototype_rows(200)
    x[:, 0, 0, 0] = 1.0  # a pixel always on: its log-odds are clamped at p = 1 - 1e-3
    rbm.Trainer(model, options).fit_start(x, 64)
    p = x.flatten(1).double().mean(0).clamp(1e-3, 1 - 1e-3)
    torch.testing.assert_close(model.b.detach().double(), torch.log(p / (1 - p)), rtol=1e-5, atol=1e-5)
    gaussian, options = net("grbm", POINTS, n_hidden=3)
    rbm.Trainer(gaussian, options).fit_start(torch.randn(50, 2) + 3, 64)
    assert torch.equal(gaussian.b.detach(), torch.zeros(2))  # grbm: standardised rows, b stays 0


@pytest.mark.parametrize("family", ["rbm", "dbm"])
def test_linear_lr_decay_falls_to_zero_over_the_steps_it_is_told(family):
    """lr_decay=linear: step k of a run told `total` steps runs at lr (1 - k / total), every
    parameter group alike, and the rate ends at zero; none (or a trainer never told its
    steps) keeps lr."""
    from gen.trainer.models import dbm

    torch.manual_seed(0)
    if family == "rbm":
        x = prototype_rows(64)
        make = lambda **o: net("rbm", PIXELS16, n_hidden=5, lr=0.2, **o)  # noqa: E731
        module = rbm
    else:
        x = prototype_rows(64)[:, :, :3, :]
        make = lambda **o: net("dbm", DataSpec("test", "image", [1, 3, 4], raw_range=[0.0, 1.0],  # noqa: E731
                                               preprocessing=PreprocessSpec(0.0, 1.0, [0.0, 1.0])),
                               n_hidden1=4, n_hidden2=3, n_chains=8, lr=0.2, **o)
        module = dbm
    model, options = make(lr_decay="linear")
    trainer = module.Trainer(model, options)
    trainer.schedule(4)
    rates = []
    for _ in range(6):
        trainer.step(x)
        rates.append([g["lr"] for g in trainer.opt.param_groups])
    assert rates == [[pytest.approx(0.2 * (1 - k / 4))] * 2 for k in range(4)] + [[0.0, 0.0]] * 2
    for told, decay in ((True, "none"), (False, "linear")):
        model, options = make(lr_decay=decay)
        trainer = module.Trainer(model, options)
        if told:
            trainer.schedule(4)
        for _ in range(5):
            trainer.step(x)
        assert [g["lr"] for g in trainer.opt.param_groups] == [0.2, 0.2]


@pytest.mark.parametrize("fold", [False, True])
def test_the_training_loop_tells_the_trainer_the_steps_its_budget_takes(tmp_path, monkeypatch, fold):
    """The loop calls `schedule` once with the budget's steps (epochs x steps per epoch), and
    the run takes exactly that many, so a linear decay ends at its last step; also where the
    fitting rows leave a one-row last batch, which the loop folds into the one before (`fold`:
    a batch one row short of them, so two batches by count, one step)."""
    import json

    from gen.trainer.models.base import LinearDecay
    from gen.trainer.train import split_rows, train

    seen = []
    told = LinearDecay.schedule
    monkeypatch.setattr(LinearDecay, "schedule", lambda self, total: (seen.append(self), told(self, total))[1])
    rows = prototype_rows(320).numpy().reshape(320, 1, 4, 4)
    np.save(tmp_path / "rows.npy", rows)
    options = dict(model="rbm", data=str(tmp_path / "rows.npy"), epochs=3, n_hidden=4, lr=0.05, lr_decay="linear",
                   device="cpu", quiet=True, out=str(tmp_path / "run"))
    from gen.trainer.data import load_dataset

    n_fit = len(split_rows(TrainConfig.make(**options), load_dataset(options["data"]), np.random.default_rng(0))[0])
    batch = n_fit - 1 if fold else 32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train(TrainConfig.make(**options, batch_size=batch))
    (decay,) = seen
    plan = json.loads((tmp_path / "run" / "run.json").read_text())["metrics"]["stopping"]
    assert decay.total == plan["max_epochs"] * plan["steps_per_epoch"] == decay.taken
    assert plan["steps_per_epoch"] == (1 if fold else math.ceil(n_fit / 32))
    assert [g["lr"] for g in decay.opt.param_groups] == [pytest.approx(0.05 / decay.total)] * 2


# -- 5. weight decay on W only -------------------------------------------------------------------

def test_weight_decay_is_on_the_weights_only():
    model, options = net("rbm", PIXELS16, n_hidden=5, weight_decay=0.01)
    groups = rbm.Trainer(model, options).opt.param_groups
    assert [[id(p) for p in g["params"]] for g in groups] == [[id(model.W)], [id(model.b), id(model.c)]]
    assert [g["weight_decay"] for g in groups] == [0.01, 0.0]
    gaussian, options = net("grbm", POINTS, n_hidden=3, learn_sigma=True, weight_decay=0.02)
    groups = rbm.Trainer(gaussian, options).opt.param_groups
    assert [id(p) for p in groups[1]["params"]] == [id(gaussian.b), id(gaussian.c), id(gaussian.log_sigma)]
    assert [g["weight_decay"] for g in groups] == [0.02, 0.0]
    fixed, options = net("grbm", POINTS, n_hidden=3)
    params = [id(p) for g in rbm.Trainer(fixed, options).opt.param_groups for p in g["params"]]
    assert id(fixed.log_sigma) not in params and not fixed.log_sigma.requires_grad


def test_a_step_with_no_data_gradient_only_shrinks_the_weights(monkeypatch):
    """With the negative phase at the data, F(v0) - F(vk) has zero gradient: the one change
    is the L2 pull on W, W <- W (1 - lr wd); the biases stay."""
    monkeypatch.setattr(rbm.Trainer, "sample_chain", lambda self, v, steps: v.clone())
    torch.manual_seed(0)
    model, options = net("rbm", PIXELS16, n_hidden=5, method="cd", lr=0.1, weight_decay=0.01)
    with torch.no_grad():
        model.b.normal_()
        model.c.normal_()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = rbm.Trainer(model, options)
    losses = trainer.step(prototype_rows(32))
    assert losses["cd_loss"] == 0.0
    torch.testing.assert_close(model.W.detach(), before["W"] * (1 - 0.1 * 0.01), rtol=1e-6, atol=0)
    assert torch.equal(model.b.detach(), before["b"]) and torch.equal(model.c.detach(), before["c"])


# -- 6. options and preprocessing ----------------------------------------------------------------

def test_bernoulli_rbm_takes_rows_in_unit_range_and_refuses_others():
    cfg = TrainConfig.make(model="rbm")
    table = DataSpec("rows.csv", "tabular", [3], preprocessing=PreprocessSpec([0.5] * 3, [0.4] * 3))
    binary = cfg.family.prepare(cfg.options, table, np.array([[0, 1, 1], [1, 0, 0]], np.float32))
    assert binary.preprocessing == PreprocessSpec(0.0, 1.0, [0.0, 1.0], binarize=0.5)  # rows taken as they are
    with pytest.raises(ConfigError, match=r"rows.csv holds tabular data with values from -1 to 3: use grbm"):
        cfg.family.prepare(cfg.options, table, np.array([[-1, 0, 3]], np.float32))


def test_binarize_option_sets_the_graphs_threshold():
    rows = np.random.default_rng(0).random((20, 1, 4, 4)).astype(np.float32)
    cfg = TrainConfig.make(model="rbm", binarize="threshold", threshold=0.3)
    spec = cfg.family.prepare(cfg.options, PIXELS16, rows)
    assert spec.preprocessing.binarize == 0.3
    prep = spec.preprocessing
    assert (prep.offset, prep.scale, prep.model_range) == (0.0, 1.0, [0.0, 1.0])
    assert spec.shape == PIXELS16.shape and spec.kind == "image"
    cfg = TrainConfig.make(model="rbm", binarize="stochastic")
    assert cfg.family.prepare(cfg.options, PIXELS16, rows).preprocessing.binarize is None
    # the exported free-energy graph binarises raw pixels at the threshold
    model, options = net("rbm", PIXELS16, n_hidden=4, threshold=0.3)
    graph = rbm.graphs(model, spec)["free_energy"]
    raw = torch.from_numpy(rows)
    with torch.no_grad():
        got = RawUnits(graph, spec.preprocessing, spec.shape)(raw)
        want = model.free_energy((raw >= 0.3).float())
    torch.testing.assert_close(got, want)


def test_gaussian_rbm_standardises_on_the_fitting_rows():
    rng = np.random.default_rng(0)
    rows = (rng.normal(size=(100, 3)) * [1.0, 5.0, 0.1] + [2.0, -3.0, 7.0]).astype(np.float32)
    rows[:, 2] = 4.0  # a constant column keeps scale 1
    cfg = TrainConfig.make(model="grbm")
    table = DataSpec("rows.csv", "tabular", [3], preprocessing=PreprocessSpec([0.0] * 3, [1.0] * 3))
    prep = cfg.family.prepare(cfg.options, table, rows).preprocessing
    np.testing.assert_allclose(prep.offset, rows.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(prep.scale, [*rows[:, :2].astype(np.float64).std(0), 1.0], rtol=1e-12)
    assert prep.binarize is None and prep.model_range is None


# -- 7. end to end: train, export, log p(v), Gibbs sampling, score files, CLI -------------------

PATTERNS = np.array([[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0], [0, 0, 0, 0]], dtype=np.float32)


def train_and_export(cfg, root) -> None:
    """Train `cfg` into root/run on one torch thread and export root/bundle."""
    from gen.exporters import export_run
    from gen.trainer.train import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.warns(Warning):  # only ~80 calibration rows: the threshold warning
            train(cfg)
        export_run(root / "run", root / "bundle")
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):

    root = tmp_path_factory.mktemp("rbm")
    rng = np.random.default_rng(0)
    rows = PATTERNS[rng.choice(4, size=400, p=[0.4, 0.3, 0.2, 0.1])]
    rows = np.where(rng.random(rows.shape) < 0.03, 1 - rows, rows).reshape(400, 1, 2, 2)
    np.save(root / "squares.npy", rows.astype(np.float32))
    cfg = TrainConfig.make(model="rbm", data=str(root / "squares.npy"), epochs=30, n_hidden=3, lr=0.2,
                           lr_decay="none", batch_size=32, device="cpu", quiet=True, out=str(root / "run"))
    train_and_export(cfg, root)
    return root / "bundle"


@pytest.fixture(scope="module")
def model(bundle):
    from gen.runtime import load

    return load(bundle, device="cpu")


ALL_SQUARES = states(4).astype(np.float32).reshape(16, 1, 2, 2)


def test_bundle_scores_by_free_energy_with_an_exact_partition(bundle, model):
    scoring = model.manifest.scoring
    assert (scoring.graph, scoring.output, scoring.kind) == ("free_energy", "free_energy", "free_energy")
    assert scoring.log_partition.method == "exact" and scoring.log_partition.std == 0.0
    assert model.manifest.sampler.kind == "gibbs" and model.manifest.sampler.graph == "gibbs_step"
    log_p = model.log_prob(ALL_SQUARES)
    assert np.exp(log_p).sum() == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_allclose(log_p, -model.score(ALL_SQUARES) - scoring.log_partition.value, rtol=0, atol=1e-9)
    # it learnt something: the training rows are likelier than under the uniform distribution
    rows = np.load(bundle.parent / "squares.npy")
    assert model.log_prob(rows).mean() > -np.log(16) + 0.3


def test_gibbs_samples_are_seeded_mean_field_probabilities(model):
    first, again, other = model.sample(50, seed=1), model.sample(50, seed=1), model.sample(50, seed=2)
    assert first.shape == (50, 1, 2, 2) and first.dtype == np.float32
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert first.min() >= 0 and first.max() <= 1
    assert not np.isin(first, [0.0, 1.0]).all()  # probabilities, not binary draws
    for steps, burn_in, thin, n in [(10, 5, 5, 7), (20, 5, 5, 7), (10, 0, 1, 25)]:
        assert model.sample(n, seed=0, steps=steps, burn_in=burn_in, thin=thin).shape == (n, 1, 2, 2)


def test_gibbs_chains_reach_the_model_distribution(model):
    """At stationarity E[v_mean] = E_model[v], with E_model from the exact log p(v)."""
    p = np.exp(model.log_prob(ALL_SQUARES))
    exact = p @ ALL_SQUARES.reshape(16, 4)
    samples = model.sample(4000, seed=3, steps=100)
    np.testing.assert_allclose(samples.reshape(-1, 4).mean(0), exact, atol=0.03)


def test_score_file_writes_log_p(model, tmp_path):
    np.save(tmp_path / "rows.npy", ALL_SQUARES)
    assert model.score_file(tmp_path / "rows.npy", tmp_path / "scores.csv") == 16
    with open(tmp_path / "scores.csv", newline="") as f:
        table = list(csv.reader(f))
    assert table[0] == ["index", "score", "normal_quantile", "flag", "log_p"]
    log_p = np.array([float(row[4]) for row in table[1:]])
    np.testing.assert_allclose(log_p, model.log_prob(ALL_SQUARES), rtol=1e-7, atol=1e-7)


def test_cli_samples_the_bundle(bundle, model, tmp_path):
    from typer.testing import CliRunner

    from gen.cli.main import app

    out = tmp_path / "x.npy"
    result = CliRunner().invoke(app, ["sample", str(bundle), "--n", "8", "--steps", "20", "--device", "cpu",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    saved = np.load(out)
    assert saved.shape == (8, 1, 2, 2)
    np.testing.assert_array_equal(saved, model.sample(8, seed=0, steps=20))
    assert math.isfinite(float(saved.sum()))


# -- grbm end to end: log p(v) of real-valued rows ----------------------------------------------

@pytest.fixture(scope="module")
def grbm_model(tmp_path_factory):
    from gen.runtime import load

    root = tmp_path_factory.mktemp("grbm")
    rows = np.random.default_rng(0).normal(size=(400, 2)) * [3.0, 0.5] + [10.0, -2.0]
    np.save(root / "points.npy", rows.astype(np.float32))
    cfg = TrainConfig.make(model="grbm", data=str(root / "points.npy"), epochs=5, n_hidden=3, gibbs_steps=20,
                           device="cpu", quiet=True, out=str(root / "run"))
    train_and_export(cfg, root)
    return load(root / "bundle", device="cpu")


def log_integral_of_density(model) -> tuple[float, float]:
    """(log of the integral of exp(log_prob) over raw 2-D rows on a grid, sum_i log scale_i)."""
    prep = model.manifest.data.preprocessing
    offset, scale = np.asarray(prep.offset), np.asarray(prep.scale)
    axes = [o + s * np.arange(-15, 15, 0.05) for o, s in zip(offset, scale)]
    rows = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2).astype(np.float32)
    cell = float(np.prod(0.05 * scale))
    return float(logsumexp(model.log_prob(rows)) + np.log(cell)), float(np.log(scale).sum())


def test_grbm_log_prob_is_a_density_in_raw_units(grbm_model):
    spec = grbm_model.manifest.scoring.log_partition
    assert spec.method == "exact" and spec.std == 0.0 and "sum(log scale)" in spec.detail
    assert grbm_model.manifest.sampler.init == "normal"
    assert [n.distribution for n in grbm_model.manifest.sampler.noise] == ["uniform", "normal"]
    log_integral, log_scale = log_integral_of_density(grbm_model)
    assert abs(log_scale) > 0.1  # the standardisation is not the identity here, so the term matters
    # exp(log_prob) integrates to 1 over raw rows: log Z carries the standardisation's Jacobian
    assert log_integral == pytest.approx(0.0, abs=1e-4)


def test_grbm_bundle_samples_keep_the_noise_spread(grbm_model):
    """A Gaussian RBM's sampler returns samples (v_next in raw units), not conditional means,
    so their spread includes sigma: never below the per-feature scale times sigma's floor."""
    assert grbm_model.manifest.sampler.mean == "v_sample"
    samples = grbm_model.sample(400, seed=0, steps=30).reshape(400, -1)
    scale = np.asarray(grbm_model.manifest.data.preprocessing.scale)
    # v | h ~ N(mean, sigma^2) with sigma = 1 in standardised units: the raw spread is >= ~scale
    assert np.all(samples.std(axis=0) > 0.8 * scale)


def test_stochastic_binarisation_stores_no_log_z():
    from gen.runtime.manifest import DataSpec, PreprocessSpec
    from gen.trainer.config import TrainConfig

    data = DataSpec("t", "image", [1, 2, 2], preprocessing=PreprocessSpec(0.0, 1.0, [0.0, 1.0]))
    cfg = TrainConfig.make(model="rbm", binarize="stochastic")
    assert cfg.family.resolve(cfg.options, data).log_z == "none"
    cfg = TrainConfig.make(model="rbm", binarize="stochastic", log_z="exact")
    with pytest.raises(ConfigError, match="log_z=exact needs binarize=threshold"):
        cfg.family.resolve(cfg.options, data)


def test_divergence_inside_a_step_is_one_line(tmp_path):
    from gen.trainer.config import TrainConfig
    from gen.trainer.train import train

    with pytest.raises(ConfigError, match="training diverged at epoch 1"):
        train(TrainConfig.make(model="rbm", data="digits", n_hidden=8, lr=1e30, epochs=2, device="cpu",
                               quiet=True, out=str(tmp_path / "run")))
    assert list(tmp_path.iterdir()) == []


def test_log_z_changes_no_weight_threshold_or_auroc(tmp_path):
    """log_z=auto is none past enumeration (the default the one-class bench runs); asking for
    AIS changes no weight, threshold or AUROC: log Z is estimated after training, from the
    weights, with its own random stream, and the score (the free energy) does not contain it."""
    import json

    from gen.runtime.errors import GenWarning
    from gen.trainer.train import train

    runs = {}
    for log_z in ("auto", "ais"):
        out = tmp_path / log_z
        with warnings.catch_warnings():  # 50 betas and 4 chains may not settle: then no log Z, and a warning
            warnings.simplefilter("ignore", GenWarning)
            train(TrainConfig.make(model="rbm", data="digits", normal_class=0, n_hidden=24, epochs=3, ais_betas=50,
                                   ais_chains=4, log_z=log_z, out=str(out), quiet=True, threads=1))
        runs[log_z] = (torch.load(out / "checkpoint.pt", weights_only=True)["state_dict"],
                       json.loads((out / "run.json").read_text()))
    (auto_state, auto_info), (ais_state, ais_info) = runs["auto"], runs["ais"]
    assert auto_info["scoring"]["log_partition"] is None  # 24 hidden units: beyond enumeration, so none
    assert (ais_info["scoring"]["log_partition"] or {"method": "ais"})["method"] == "ais"
    assert all(torch.equal(auto_state[k], ais_state[k]) for k in auto_state)
    assert auto_info["scoring"]["threshold"] == ais_info["scoring"]["threshold"]
    assert auto_info["metrics"]["evaluation"]["auroc"] == ais_info["metrics"]["evaluation"]["auroc"]


def test_an_ais_log_z_that_does_not_settle_is_not_recorded(monkeypatch):
    """log_z=ais under the convergence rule: estimates that keep moving as the schedule doubles
    give no log Z (so no log_p column) and one warning naming them; estimates that agree are
    recorded with the schedule that settled them."""
    from gen.runtime.errors import GenWarning
    from gen.trainer.protocols import likelihood

    big = DataSpec("test", "image", [1, 5, 5], preprocessing=PreprocessSpec(0.0, 1.0, [0.0, 1.0]))
    model, options = net("rbm", big, n_hidden=21, log_z="ais", ais_betas=50, ais_chains=4)
    x = (torch.rand(30, 1, 5, 5) < 0.4).float()
    drift = {50: 10.0, 100: 13.0, 200: 16.0}  # still rising by 3 nats at each doubling
    monkeypatch.setattr(likelihood, "ais_log_partition", lambda *a, n_betas, **k: (drift[n_betas], 0.05))
    with pytest.warns(GenWarning, match=r"rbm: log Z is not recorded \(no log_p column\): AIS did not converge"):
        assert rbm.log_partition(model, options, x) is None
    drift[200] = 13.2
    spec = rbm.log_partition(model, options, x)
    assert (spec.value, spec.std, spec.method) == (13.2, 0.05, "ais")
    assert spec.detail.startswith("200 betas; converged: 100 -> 200 betas moved log Z by +0.20 nats")


def test_ais_starts_from_a_base_model_at_the_datas_activity(monkeypatch):
    """The AIS base model's pixels follow the training marginals and its hidden units their mean
    activation p(h = 1 | v) on the training rows (not fair coins); the manifest says so."""
    from gen.trainer.protocols import likelihood

    big = DataSpec("test", "image", [1, 5, 5], preprocessing=PreprocessSpec(0.0, 1.0, [0.0, 1.0]))
    model, options = net("rbm", big, n_hidden=21, log_z="ais", ais_betas=50, ais_chains=4)
    x = (torch.rand(30, 1, 5, 5) < 0.4).float()
    seen = []

    def ais(W, b, c, marginals, **kwargs):
        seen.append((marginals, kwargs["hidden_marginals"]))
        return 7.0, 0.01

    monkeypatch.setattr(likelihood, "ais_log_partition", ais)
    spec = rbm.log_partition(model, options, x)
    assert spec.method == "ais" and "mean hidden activations" in spec.detail
    marginals, hidden = seen[0]
    np.testing.assert_allclose(marginals, x.flatten(1).double().mean(0).numpy())
    with torch.no_grad():
        expected = model.hidden_probs(x).double().mean(0).numpy()
    assert hidden.shape == (21,)
    np.testing.assert_allclose(hidden, expected, atol=1e-6)


def test_threads_caps_numpys_blas_while_log_z_is_estimated(tmp_path, monkeypatch):
    """--threads N holds for the AIS too (numpy's BLAS, not torch): side by side, uncapped runs
    oversubscribe the machine. Without --threads the BLAS keeps its own count."""
    from threadpoolctl import threadpool_info

    from gen.trainer.protocols import likelihood
    from gen.trainer.train import train

    seen = []

    def ais(*args, **kwargs):
        seen.append([pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"])
        return 7.0, 0.01

    monkeypatch.setattr(likelihood, "ais_log_partition", ais)
    before = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    for threads in (1, None):
        train(TrainConfig.make(model="rbm", data="digits", normal_class=0, n_hidden=24, epochs=1, ais_betas=20,
                               ais_chains=2, log_z="ais", out=str(tmp_path / str(threads)), quiet=True,
                               threads=threads))
    assert seen[0] == [1] * len(before) and seen[-1] == before  # capped under --threads 1, its own otherwise
    assert [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"] == before
