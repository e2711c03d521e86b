"""The maths of the two-hidden-layer deep Boltzmann machine (dbm), checked against its definition."""

import itertools

import numpy as np
import pytest
import torch

import gen.trainer.models.dbm as dbm
from gen.runtime.errors import ConfigError
from gen.runtime.manifest import DataSpec, GibbsSampler, PreprocessSpec
from gen.trainer.config import TrainConfig
from gen.trainer.protocols import likelihood

IMAGES = DataSpec("toy", "image", [1, 3, 4], preprocessing=PreprocessSpec(0.0, 1.0, [0.0, 1.0], binarize=0.5))
TABLE = DataSpec("toy", "tabular", [12])


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny matrices: one torch thread is faster, and much faster on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def net(data=IMAGES, **options):
    cfg = TrainConfig.make(model="dbm", **options)
    options = cfg.family.resolve(cfg.options, data)
    return cfg.family.build(options, data), options


def toy(n: int = 300, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of three binary 12-pixel prototypes with 5% of pixels flipped, and as many
    uniformly random binary rows, both in the image shape (1, 3, 4)."""
    g = torch.Generator().manual_seed(seed)
    protos = (torch.rand(3, 12, generator=g) < 0.5).float()
    x = protos[torch.randint(3, (n,), generator=g)]
    x = (x - (torch.rand(x.shape, generator=g) < 0.05).float()).abs()
    noise = (torch.rand(n, 12, generator=g) < 0.5).float()
    return x.reshape(n, 1, 3, 4), noise.reshape(n, 1, 3, 4)


def entropy(mu: torch.Tensor) -> torch.Tensor:
    return -(torch.special.xlogy(mu, mu) + torch.special.xlogy(1 - mu, 1 - mu)).sum(1)


@pytest.fixture(scope="module")
def trained():
    """A small DBM pretrained and then jointly trained on the toy rows; the free-energy gap
    between random and data rows at each stage."""
    torch.manual_seed(0)
    model, options = net(n_hidden1=8, n_hidden2=4, pretrain_epochs=30, n_chains=32, lr=0.01)
    x, noise = toy()

    def gap() -> float:
        with torch.no_grad():
            return float(model.score(noise).mean() - model.score(x).mean())

    trainer = dbm.Trainer(model, options)
    gaps = {"init": gap()}
    trainer.fit_start(x, 32)
    gaps["pretrained"] = gap()
    losses = []
    for _ in range(20):
        order = torch.randperm(len(x))
        for i in range(0, len(x), 32):
            losses.append(trainer.step(x[order[i:i + 32]]))
    gaps["trained"] = gap()
    return model, trainer, x, gaps, losses


def test_family_is_declared():
    family = TrainConfig.make(model="dbm").family
    assert family.capabilities == ("sample", "encode", "score")
    assert family.score_kind == "variational_free_energy" and family.score_graph == ("score", "score")
    assert family.latent_prior is None and family.prepare is not None and family.log_partition is not None
    assert set(family.test.options) <= {s.name for s in family.option_specs()}
    model, options = net(n_hidden1=5, n_hidden2=3, gibbs_steps=7)
    spec = family.sampler(model, options)
    assert isinstance(spec, GibbsSampler) and spec.chain == {"v": "v_next", "h2": "h2_next"}
    assert [(n.name, n.distribution) for n in spec.noise] == [("u_h1", "uniform"), ("u_v", "uniform"),
                                                             ("u_h2", "uniform")]
    assert (spec.mean, spec.init, spec.steps) == ("v_mean", "bernoulli", 7)
    graphs = family.graphs(model, IMAGES)
    ports = {role: ([(p.name, p.kind, p.shape) for p in g.inputs], [(p.name, p.kind, p.shape) for p in g.outputs])
             for role, g in graphs.items()}
    assert ports == {
        "score": ([("x", "data", [1, 3, 4])], [("score", "value", [])]),
        "encoder": ([("x", "data", [1, 3, 4])], [("z", "latent", [3]), ("h1", "value", [5])]),
        "gibbs_step": ([("v", "state", [1, 3, 4]), ("h2", "state", [3]), ("u_h1", "noise", [5]),
                        ("u_v", "noise", [1, 3, 4]), ("u_h2", "noise", [3])],
                       [("v_next", "state", [1, 3, 4]), ("h2_next", "state", [3]), ("v_mean", "data", [1, 3, 4])]),
    }
    assert {p.distribution for p in graphs["gibbs_step"].inputs if p.kind == "noise"} == {"uniform"}


def test_options_resolve_and_data_must_be_pixels():
    assert net(n_hidden1=20)[1].log_z == "exact"
    assert net(n_hidden1=21)[1].log_z == "none"  # past enumeration: AIS only when asked for
    with pytest.raises(ConfigError, match="n_hidden1 <= 20"):
        net(n_hidden1=21, log_z="exact")
    family = TrainConfig.make(model="dbm").family
    options = net()[1]
    assert family.prepare(options, IMAGES, None).preprocessing.binarize == 0.5
    assert family.prepare(options, TABLE, np.eye(12, dtype=np.float32)).preprocessing.model_range == [0.0, 1.0]
    with pytest.raises(ConfigError, match="dbm has binary units, so it needs values in \\[0, 1\\]"):
        family.prepare(options, TABLE, np.full((2, 12), 2.0, np.float32))


def test_training_lowers_free_energy_of_the_data(trained):
    _, _, _, gaps, losses = trained
    assert abs(gaps["init"]) < 0.5  # small random weights: data and noise look alike
    assert gaps["pretrained"] > 3.0  # greedy pretraining alone separates them
    assert gaps["trained"] > gaps["pretrained"]  # joint training lowers it further
    assert all(torch.isfinite(torch.tensor(list(step.values()))).all() for step in losses)
    assert set(losses[0]) == {"energy_diff", "recon"}


def test_joint_training_alone_lowers_free_energy_of_the_data():
    torch.manual_seed(0)
    model, options = net(n_hidden1=8, n_hidden2=4, n_chains=32, lr=0.05)
    x, noise = toy()
    trainer = dbm.Trainer(model, options)  # no fit_start: chains start from coin flips
    for _ in range(20):
        for i in range(0, len(x), 32):
            trainer.step(x[i:i + 32])
    with torch.no_grad():
        assert float(model.score(noise).mean() - model.score(x).mean()) > 2.0


def test_mean_field_is_a_fixed_point(trained):
    model, _, x, _, _ = trained
    with torch.no_grad():
        mu1, mu2 = model.mean_field(x)
        again1 = torch.sigmoid(x.flatten(1) @ model.W1 + mu2 @ model.W2.t() + model.c1)
        again2 = torch.sigmoid(again1 @ model.W2 + model.c2)
    assert float((again1 - mu1).abs().max()) < 1e-3
    assert float((again2 - mu2).abs().max()) < 1e-3
    z, h1 = model.encode(x)
    torch.testing.assert_close(z, mu2)
    torch.testing.assert_close(h1, mu1)


def test_score_is_energy_minus_entropy(trained):
    model, _, x, _, _ = trained
    _, noise = toy(seed=5)
    rows = torch.cat([x[:20], noise[:20]])
    with torch.no_grad():
        mu1, mu2 = (m.double() for m in model.mean_field(rows))
        W1, W2, b, c1, c2 = (p.detach().double() for p in (model.W1, model.W2, model.b, model.c1, model.c2))
        v = rows.flatten(1).double()
        energy = -(v @ b) - mu1 @ c1 - mu2 @ c2 - ((v @ W1) * mu1).sum(1) - ((mu1 @ W2) * mu2).sum(1)
        expected = energy - entropy(mu1) - entropy(mu2)
        got = model.score(rows).double()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)


def test_score_is_finite_when_the_means_saturate():
    model, _ = net(n_hidden1=4, n_hidden2=3)
    with torch.no_grad():
        model.W1.fill_(30.0)
        model.W2.fill_(-30.0)
        score = model.score(torch.ones(2, 1, 3, 4))
    assert torch.isfinite(score).all()


def test_gibbs_step_draws_from_the_conditionals():
    torch.manual_seed(0)
    model, _ = net(n_hidden1=3, n_hidden2=2)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p))
    v = (torch.rand(1, 1, 3, 4) < 0.5).float()
    h2 = torch.tensor([[1.0, 0.0]])
    n = 100_000
    with torch.no_grad():
        v_next, h2_next, v_mean = model.gibbs_step(v.expand(n, 1, 3, 4), h2.expand(n, 2), torch.rand(n, 3),
                                                   torch.rand(n, 1, 3, 4), torch.rand(n, 2))
        # by hand: enumerate h1 under p(h1 | v, h2)
        p1 = torch.sigmoid(v.flatten(1) @ model.W1 + h2 @ model.W2.t() + model.c1)[0]
        want_h2, want_v = torch.zeros(2), torch.zeros(12)
        for bits in itertools.product([0.0, 1.0], repeat=3):
            h1 = torch.tensor(bits)
            prob = torch.prod(torch.where(h1 == 1, p1, 1 - p1))
            want_h2 += prob * torch.sigmoid(h1 @ model.W2 + model.c2)
            want_v += prob * torch.sigmoid(h1 @ model.W1.t() + model.b)
    assert v_next.shape == v_mean.shape == (n, 1, 3, 4) and h2_next.shape == (n, 2)
    assert set(v_next.unique().tolist()) <= {0.0, 1.0} and set(h2_next.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(h2_next.mean(0), want_h2, rtol=0, atol=0.01)
    torch.testing.assert_close(v_next.flatten(1).mean(0), want_v, rtol=0, atol=0.01)
    torch.testing.assert_close(v_mean.flatten(1).mean(0), want_v, rtol=0, atol=0.01)
    # noise 0 turns every unit with p > 0 on: h1 = 1, so v_mean = sigmoid(1 W1^T + b)
    with torch.no_grad():
        _, _, mean = model.gibbs_step(v, h2, torch.zeros(1, 3), torch.zeros(1, 1, 3, 4), torch.zeros(1, 2))
        torch.testing.assert_close(mean.flatten(1)[0], torch.sigmoid(model.W1.sum(1) + model.b))


def test_persistent_chains_carry_over_between_steps(monkeypatch):
    torch.manual_seed(0)
    model, options = net(n_hidden1=6, n_hidden2=3, n_chains=10, pcd_k=2, pretrain_epochs=1)
    x, _ = toy(64)
    trainer = dbm.Trainer(model, options)
    trainer.fit_start(x, 32)
    start = trainer.chains
    assert [tuple(t.shape) for t in start] == [(10, 12), (10, 6), (10, 3)]
    calls = []
    sweep = trainer.sweep

    def spy(*state):
        out = sweep(*state)
        calls.append((state, out[0]))
        return out

    monkeypatch.setattr(trainer, "sweep", spy)
    trainer.step(x[:32])
    trainer.step(x[32:])
    assert len(calls) == 4  # pcd_k sweeps per step
    assert all(a is b for a, b in zip(calls[0][0], start))  # the first step starts where fit_start left them
    for (_, out), (state, _) in zip(calls[:-1], calls[1:]):
        assert all(a is b for a, b in zip(out, state))  # each sweep starts from the last one's state
    assert all(a is b for a, b in zip(trainer.chains, calls[-1][1]))


def test_pretraining_doubles_the_bottom_up_pass_and_the_top_down_pass(monkeypatch):
    torch.manual_seed(0)
    model, options = net(n_hidden1=6, n_hidden2=3, pretrain_epochs=2, momentum=0.0)
    x, _ = toy(64)
    seen, fed = [], []
    hidden, visible, cd1 = dbm.LayerRBM.hidden_probs, dbm.LayerRBM.visible_probs, dbm.LayerRBM.cd1

    def spy(method, kind):
        def call(self, inp):
            out = method(self, inp)
            seen.append((self, kind, inp.clone(), self.W.clone(), self.b.clone(), self.c.clone(), out.clone()))
            return out
        return call

    monkeypatch.setattr(dbm.LayerRBM, "hidden_probs", spy(hidden, "up"))
    monkeypatch.setattr(dbm.LayerRBM, "visible_probs", spy(visible, "down"))

    def cd1_spy(self, x0, *args):
        fed.append((self, x0.clone()))
        return cd1(self, x0, *args)

    monkeypatch.setattr(dbm.LayerRBM, "cd1", cd1_spy)
    trainer = dbm.Trainer(model, options)
    trainer.fit_start(x, 32)
    bottom, top = trainer.layers
    assert bottom.W.shape == (12, 6) and top.W.shape == (6, 3)
    factors = {(bottom, "up"): 2.0, (bottom, "down"): 1.0, (top, "up"): 1.0, (top, "down"): 2.0}
    counts = dict.fromkeys(factors, 0)
    for layer, kind, inp, W, b, c, out in seen:
        factor = factors[(layer, kind)]
        want = torch.sigmoid(factor * (inp @ W) + c) if kind == "up" else torch.sigmoid(factor * (inp @ W.t()) + b)
        torch.testing.assert_close(out, want)
        counts[(layer, kind)] += 1
    assert all(counts.values())
    # the top RBM trains on binary samples of the bottom's doubled up-pass
    top_inputs = [x0 for layer, x0 in fed if layer is top]
    assert len(top_inputs) == len(fed) // 2 == 2 * 2  # pretrain_epochs x batches, per layer
    assert all(set(t.unique().tolist()) <= {0.0, 1.0} for t in top_inputs)
    # the DBM starts from the stack: W1, b from the bottom, W2, c2 from the top, c1 their mean
    torch.testing.assert_close(model.W1.detach(), bottom.W)
    torch.testing.assert_close(model.W2.detach(), top.W)
    torch.testing.assert_close(model.b.detach(), bottom.b)
    torch.testing.assert_close(model.c2.detach(), top.c)
    torch.testing.assert_close(model.c1.detach(), (bottom.c + top.b) / 2)


def test_bottom_rbm_cd1_update_matches_a_hand_computation():
    torch.manual_seed(1)
    layer = dbm.LayerRBM(12, 5, up=2.0, down=1.0, device="cpu")
    layer.W = torch.randn(12, 5)
    layer.c = torch.randn(5)
    W, b, c = layer.W.clone(), layer.b.clone(), layer.c.clone()
    x0 = (torch.rand(16, 12) < 0.5).float()
    torch.manual_seed(7)
    layer.cd1(x0, lr=0.1, momentum=0.0, weight_decay=0.0)
    torch.manual_seed(7)
    p0 = torch.sigmoid(2 * x0 @ W + c)  # doubled input on the way up
    y0 = torch.bernoulli(p0)
    x1 = torch.sigmoid(y0 @ W.t() + b)  # single on the way down
    p1 = torch.sigmoid(2 * x1 @ W + c)
    torch.testing.assert_close(layer.W, W + 0.1 * (x0.t() @ p0 - x1.t() @ p1) / 16)
    torch.testing.assert_close(layer.b, b + 0.1 * (x0 - x1).mean(0))
    torch.testing.assert_close(layer.c, c + 0.1 * (p0 - p1).mean(0))


def test_fit_start_and_step_are_deterministic_under_a_seed():
    x, _ = toy(64)

    def run():
        torch.manual_seed(3)
        model, options = net(n_hidden1=6, n_hidden2=3, pretrain_epochs=2, n_chains=8)
        trainer = dbm.Trainer(model, options)
        trainer.fit_start(x, 16)
        trainer.step(x[:16])
        return [p.detach().clone() for p in model.parameters()]

    for a, b in zip(run(), run()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_log_partition_hook(monkeypatch):
    calls = {}

    def exact(*args):
        calls["exact"] = args
        return 12.5

    def ais(*args, **kwargs):
        calls.setdefault("ais", []).append((args, dict(kwargs)))
        return 30.0, 0.25

    monkeypatch.setattr(likelihood, "dbm_exact_log_partition", exact, raising=False)
    monkeypatch.setattr(likelihood, "dbm_ais_log_partition", ais, raising=False)
    family = TrainConfig.make(model="dbm").family
    x = (torch.rand(20, 1, 3, 4) < 0.3).float()
    model, options = net(n_hidden1=5, n_hidden2=3)  # auto -> exact
    log_z = family.log_partition(model, options, x)
    assert (log_z.value, log_z.std, log_z.method) == (12.5, 0.0, "exact")
    assert "-F_q(v) - log Z" in log_z.detail and "lower bound" in log_z.detail
    W1, W2, b, c1, c2 = calls["exact"]
    assert W1.shape == (12, 5) and W2.shape == (5, 3) and b.shape == (12,) and c1.shape == (5,) and c2.shape == (3,)
    model, options = net(n_hidden1=5, n_hidden2=3, log_z="ais", ais_betas=100, ais_chains=7)
    log_z = family.log_partition(model, options, x)
    assert (log_z.value, log_z.std, log_z.method) == (30.0, 0.25, "ais") and "lower bound" in log_z.detail
    (args, kwargs), (_, again) = calls["ais"]  # the schedule, then twice as long: they agree, so recorded
    torch.testing.assert_close(torch.from_numpy(args[5]), x.flatten(1).double().mean(0))
    progress = kwargs.pop("progress")  # the run's "dbm: log Z by AIS" phase hears of the betas done
    # the base model's hidden layers sit at the data's mean-field activity
    with torch.no_grad():
        mu1, mu2 = model.mean_field(x)
    m1, m2 = kwargs.pop("hidden_marginals")
    np.testing.assert_allclose(m1, mu1.double().mean(0).numpy(), atol=1e-5)
    np.testing.assert_allclose(m2, mu2.double().mean(0).numpy(), atol=1e-5)
    assert kwargs == {"n_betas": 100, "n_chains": 7, "seed": 0, "dtype": np.float32} and callable(progress)
    assert (again["n_betas"], again["seed"]) == (200, 1) and "converged: 100 -> 200 betas" in log_z.detail
    assert "mean-field means of both hidden layers" in log_z.detail
    assert family.log_partition(*net(n_hidden1=5, log_z="none"), x) is None
