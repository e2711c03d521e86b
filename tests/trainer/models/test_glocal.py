"""GLocal-K: the local kernel, rows completed independently of each other (the row-wise global
kernel), the paper's schedule through the trainer, the exported `complete` graph and folding in
a row the model never saw."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gen.runtime import load
from gen.runtime.completion import Completer
from gen.runtime.errors import ConfigError
from gen.runtime.manifest import DataSpec, PreprocessSpec, RatingsSpec
from gen.runtime.ratings import RatingsTable
from gen.trainer.config import TrainConfig
from gen.trainer.models.glocal import GLocalK, KernelLayer, Options, Trainer, local_kernel
from gen.trainer.train import train


def spec(n_cols: int = 7, low: float = 1.0) -> DataSpec:
    ids = [str(i) for i in range(1, n_cols + 1)]
    ratings = RatingsSpec("item", users=ids, items=["1", "2"], id_type="int", rating_range=[low, 5.0],
                          global_mean=3.0, n_ratings=8)
    return DataSpec("t", "ratings", [n_cols], raw_range=[low, 5.0], preprocessing=PreprocessSpec(3.0, 1.0),
                    ratings=ratings)


def test_local_kernel_is_one_minus_squared_distance_and_exactly_zero_beyond_one():
    u = torch.tensor([[0.0, 0.0], [3.0, 0.0]])
    v = torch.tensor([[0.0, 0.0], [0.5, 0.0], [1.0, 0.0], [0.0, 2.0]])
    k = local_kernel(u, v)
    expected = torch.tensor([[1.0, 0.75, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(k, expected)
    layer = KernelLayer(2, 4, 2, activation=False)
    with torch.no_grad():
        layer.u.copy_(u)
        layer.v.copy_(v)
        layer.bias.zero_()
    # the second input unit's embedding is far from every output's: it is cut off entirely
    x = torch.tensor([[0.0, 100.0]])
    assert torch.equal(layer(x), torch.zeros(1, 4))
    # penalty: lambda_s/2 ||K||^2 + lambda_2/2 ||W||^2
    want = 0.5 * 2.0 * float((expected ** 2).sum()) + 0.5 * 3.0 * float((layer.weight.detach() ** 2).sum())
    assert float(layer.penalty(3.0, 2.0).detach()) == pytest.approx(want, rel=1e-6)


def test_rows_are_completed_independently_and_unobserved_entries_change_nothing():
    torch.manual_seed(0)
    net = GLocalK(spec(), [5, 4], 2, global_kernel=3)
    with torch.no_grad():
        net.kernel.copy_(torch.tensor([[0.3, 1.0, -0.2]]))
    x = torch.randn(4, 7)
    mask = (torch.rand(4, 7) > 0.4).float()
    mask[0, 0] = 1.0
    together = net.complete(x, mask)
    alone = torch.cat([net.complete(x[i:i + 1], mask[i:i + 1]) for i in range(4)])
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-6)
    other = x.clone()
    other[mask == 0] = 77.0
    assert torch.equal(net.complete(other, mask), together)


def test_global_kernel_convolves_along_the_row_with_relu():
    net = GLocalK(spec(5), [3], 2, global_kernel=3)
    r = torch.tensor([[1.0, 2.0, 0.0, 4.0, 5.0]])
    out = net.convolve(r, torch.tensor([1.0, 0.0, -1.0]))  # y_j = r_{j-1} - r_{j+1} (cross-correlation)
    assert torch.equal(out, torch.relu(torch.tensor([[-2.0, 1.0, -2.0, -5.0, 4.0]])))
    # ratings that may be negative keep their sign: no relu
    signed = GLocalK(spec(5, low=-5.0), [3], 2, global_kernel=3)
    assert torch.equal(signed.convolve(r, torch.tensor([1.0, 0.0, -1.0])),
                       torch.tensor([[-2.0, 1.0, -2.0, -5.0, 4.0]]))
    # before fine-tuning the kernel is the identity
    assert torch.equal(net.kernel, torch.tensor([[0.0, 1.0, 0.0]]))


def test_complete_clips_to_the_range_and_empty_rows_get_the_global_mean():
    torch.manual_seed(0)
    net = GLocalK(spec(), [4], 2, global_kernel=0)
    with torch.no_grad():
        net.members[0][-1].bias.fill_(50.0)
    out = net.complete(torch.zeros(2, 7), torch.tensor([[1.0] + [0.0] * 6, [0.0] * 7]))
    assert torch.equal(out[0], torch.full((7,), 2.0))  # 5 - 3 in model space
    assert torch.equal(out[1], torch.zeros(7))         # the global mean


def test_an_even_global_kernel_is_refused():
    net = GLocalK(spec(), [4], 2, global_kernel=4)
    with pytest.raises(ConfigError, match="global_kernel=4: expected an odd width"):
        Trainer(net, Options(hidden=[4], global_kernel=4))


def test_fit_pretrains_then_fine_tunes_and_fixes_the_global_kernel():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    full = rng.integers(1, 6, size=(12, 7)).astype(np.float32) - 3.0   # model space (mean 3)
    rows = torch.from_numpy(np.where(rng.random((12, 7)) < 0.6, full, np.nan).astype(np.float32))
    net = GLocalK(spec(), [6], 2, global_kernel=3)
    history = Trainer(net, Options(hidden=[6], pretrain_epochs=3, iterations=2, members=1)).fit(rows, epochs=4, batch_size=64,
                                                                                   rng=rng)
    assert [h["fine_tuning"] for h in history] == [0.0] * 3 + [1.0] * 4
    assert all(np.isfinite(h["loss"]) for h in history)
    assert history[-1]["loss"] < history[0]["loss"]
    assert not torch.equal(net.kernel, torch.tensor([[0.0, 1.0, 0.0]]))  # fixed from the fine-tuning


def test_members_are_trained_apart_and_averaged():
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    full = rng.integers(1, 6, size=(10, 7)).astype(np.float32) - 3.0
    rows = torch.from_numpy(np.where(rng.random((10, 7)) < 0.6, full, np.nan).astype(np.float32))
    net = GLocalK(spec(), [6], 2, global_kernel=3, members=2)
    history = Trainer(net, Options(hidden=[6], pretrain_epochs=2, iterations=2, members=2)).fit(
        rows, epochs=2, batch_size=64, rng=rng)
    assert [h["member"] for h in history] == [1.0] * 4 + [2.0] * 4
    a, b = net.members
    assert not torch.equal(a[0].weight, b[0].weight) and not torch.equal(net.kernel[0], net.kernel[1])
    x, mask = torch.nan_to_num(rows), (~torch.isnan(rows)).float()
    raw = net.raw_input(x, mask)
    each = [net.local(net.convolve(raw, net.kernel[m]), m) for m in range(2)]
    want = torch.clamp((each[0] + each[1]) / 2 - 3.0, -2.0, 2.0)
    torch.testing.assert_close(net.complete(x, mask), want, rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def lowrank_bundle(tmp_path_factory):
    from gen.exporters import export_run

    root = tmp_path_factory.mktemp("glocal")
    cfg = TrainConfig.make(model="glocal-k", data="lowrank", orientation="user", hidden=[32, 32], epochs=20,
                           pretrain_epochs=20, weight_decay=5.0, members=2, seed=0, device="cpu", quiet=True, out=str(root / "run"))
    run = train(cfg)
    export_run(run, root / "bundle")
    return run, root / "bundle"


def test_learns_the_low_rank_ratings_and_the_bundle_gives_the_trainers_figure(lowrank_bundle):
    from gen.trainer.data import lowrank
    from gen.trainer.protocols.completion import completion_split, rmse

    run, bundle = lowrank_bundle
    info = json.loads((run / "run.json").read_text())
    ev = info["metrics"]["evaluation"]
    assert ev["rmse"] < 0.6 * ev["rmse_bias_baseline"], ev
    assert info["metrics"]["epochs"] == 80  # 2 members x (20 pre-training rounds, then 20 fine-tuning)
    model = load(bundle, device="cpu")
    assert model.manifest.parity.max_abs_diff < 1e-4
    table = lowrank().table
    train_idx, test_idx = completion_split(len(table))
    sub = lambda idx: RatingsTable(table.users[idx], table.items[idx], table.ratings[idx],  # noqa: E731
                                   table.lines[idx], "int", "lowrank")
    got = Completer(model, sub(train_idx)).predict_pairs(table.users[test_idx], table.items[test_idx])
    assert rmse(got.prediction, table.ratings[test_idx]) == pytest.approx(ev["rmse"], abs=1e-5)


def test_an_unseen_user_is_folded_in(lowrank_bundle):
    """User-based: a user the model never saw, with a known user's ratings, gets exactly that
    user's predictions from the bundle, without retraining."""
    from gen.trainer.data import lowrank

    _, bundle = lowrank_bundle
    model = load(bundle, device="cpu")
    table = lowrank().table
    renamed = RatingsTable(np.where(table.users == "1", "100000", table.users).astype(object), table.items,
                           table.ratings, table.lines, "int", "t")
    items = np.asarray(["1", "2", "3", "50"], dtype=object)
    known = Completer(model, table).predict_pairs(np.full(4, "1", dtype=object), items)
    folded = Completer(model, renamed).predict_pairs(np.full(4, "100000", dtype=object), items)
    assert "100000" not in model.manifest.data.ratings.users
    np.testing.assert_allclose(folded.prediction, known.prediction, atol=1e-6)
    assert list(folded.source) == ["model"] * 4


def _rows(seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    full = rng.integers(1, 6, size=(12, 7)).astype(np.float32) - 3.0   # model space (mean 3)
    return torch.from_numpy(np.where(rng.random((12, 7)) < 0.6, full, np.nan).astype(np.float32))


def test_a_global_kernel_drawn_without_a_positive_tap_is_turned_round(monkeypatch):
    """relu(conv(ratings >= 0, kernel < 0)) is all zeros: no input and no gradient. Such a draw
    (one in eight of a 1 x 3 kernel) is turned round, so fine-tuning learns."""
    torch.manual_seed(0)
    net = GLocalK(spec(), [6], 2, global_kernel=3)
    real = torch.nn.init.trunc_normal_

    def negative(t, *a, **k):
        real(t, *a, **k)
        return t.abs_().neg_() if t.shape[-1] == 3 and t.shape[0] == 12 else t  # the kernel's mix only

    monkeypatch.setattr(torch.nn.init, "trunc_normal_", negative)
    history = Trainer(net, Options(hidden=[6], pretrain_epochs=3, iterations=2, members=1)).fit(
        _rows(), epochs=4, batch_size=64, rng=np.random.default_rng(0))
    assert float(net.kernel.max()) > 0
    fine = [h["train_rmse"] for h in history if h["fine_tuning"]]
    assert len(set(round(v, 6) for v in fine)) > 1  # not stuck at one value


def test_fine_tuning_that_ends_worse_keeps_the_pretrained_member(monkeypatch):
    torch.manual_seed(0)
    net = GLocalK(spec(), [6], 2, global_kernel=3)
    trainer = Trainer(net, Options(hidden=[6], pretrain_epochs=2, iterations=2, members=1))
    real_rounds = trainer._rounds
    snapshot = {}

    def rounds(params, loss_fn, n, stage, progress):
        if stage == "pretrain":
            out = real_rounds(params, loss_fn, n, stage, progress)
            snapshot.update({k: v.clone() for k, v in net.members[0].state_dict().items()})
            return out
        with torch.no_grad():  # a fine-tuning gone wrong
            for p in net.members[0].parameters():
                p.add_(1.0)
        return [{"fine_tuning": 1.0, "loss": 1e12, "train_rmse": 9.0} for _ in range(n)]

    monkeypatch.setattr(trainer, "_rounds", rounds)
    history = trainer.fit(_rows(), epochs=2, batch_size=64, rng=np.random.default_rng(0))
    assert history[-1]["fine_tuning_kept"] == 0.0
    for k, v in net.members[0].state_dict().items():
        assert torch.equal(v, snapshot[k]), k
    assert torch.equal(net.kernel, torch.tensor([[0.0, 1.0, 0.0]]))


def test_no_training_round_is_refused():
    net = GLocalK(spec(), [4], 2, global_kernel=0)
    with pytest.raises(ConfigError, match="pretrain_epochs=0 and global_kernel=0 .* leave no training round"):
        Trainer(net, Options(hidden=[4], global_kernel=0, pretrain_epochs=0, members=1)).fit(
            _rows(), epochs=5, batch_size=64, rng=np.random.default_rng(0))
