"""AutoRec: the masked loss, completion quality on a synthetic low-rank matrix, the exported
`complete` graph, and folding in rows the model never saw."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gen.runtime import load
from gen.runtime.completion import Completer
from gen.runtime.manifest import DataSpec, PreprocessSpec, RatingsSpec
from gen.runtime.ratings import RatingsTable
from gen.trainer.config import TrainConfig
from gen.trainer.models.autorec import AutoRec, Trainer, masked_mse
from gen.trainer.train import train


def spec(n_cols: int = 6) -> DataSpec:
    ids = [str(i) for i in range(1, n_cols + 1)]
    ratings = RatingsSpec("item", users=ids, items=["1", "2"], id_type="int", rating_range=[1.0, 5.0],
                          global_mean=3.0, n_ratings=8)
    return DataSpec("t", "ratings", [n_cols], raw_range=[1.0, 5.0], preprocessing=PreprocessSpec(3.0, 1.0),
                    ratings=ratings)


def test_unobserved_entries_change_nothing():
    torch.manual_seed(0)
    net = AutoRec(spec(), [4], "sigmoid")
    x = torch.tensor([[1.0, -2.0, 0.5, 0.0, 1.5, -1.0]])
    mask = torch.tensor([[1.0, 0.0, 1.0, 0.0, 1.0, 0.0]])
    other = x.clone()
    other[mask == 0] = torch.tensor([9.0, -7.0, 123.0])
    assert torch.equal(net(x, mask), net(other, mask))
    assert torch.equal(masked_mse(net(x, mask), x, mask), masked_mse(net(other, mask), other, mask))
    # and the loss counts the observed entries only: a wrong value there changes it
    worse = x.clone()
    worse[0, 0] = 5.0
    assert masked_mse(net(worse, mask), worse, mask) != masked_mse(net(x, mask), x, mask)


def test_training_step_reads_nan_as_unobserved():
    torch.manual_seed(0)
    net = AutoRec(spec(), [4], "sigmoid")
    from gen.trainer.models.autorec import Options

    trainer = Trainer(net, Options(hidden=[4], weight_decay=0.0))
    rows = torch.tensor([[1.0, float("nan"), 0.5, float("nan"), 1.5, -1.0]] * 3)
    trainer.fit_start(rows, batch_size=3)
    before = [p.detach().clone() for p in net.parameters()]
    losses = trainer.step(rows)
    assert np.isfinite(losses["loss"]) and losses["loss"] == pytest.approx(losses["mse"])
    assert all(torch.isfinite(p).all() for p in net.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_complete_clips_to_the_range_and_empty_rows_get_the_global_mean():
    torch.manual_seed(0)
    net = AutoRec(spec(), [4], "sigmoid")
    with torch.no_grad():
        net.net[-1].bias.fill_(10.0)  # predictions far above the top rating (model space: 3 + 10)
    x = torch.zeros(2, 6)
    mask = torch.tensor([[1.0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]])
    out = net.complete(x, mask)
    assert torch.equal(out[0], torch.full((6,), 2.0))   # 5 - 3 in model space
    assert torch.equal(out[1], torch.zeros(6))          # the global mean, in model space


@pytest.fixture(scope="module")
def lowrank_bundles(tmp_path_factory):
    """Item- and user-based AutoRec on the synthetic low-rank ratings, trained and exported."""
    from gen.exporters import export_run

    root = tmp_path_factory.mktemp("autorec")
    out = {}
    for orientation in ("item", "user"):
        cfg = TrainConfig.make(model="autorec", data="lowrank", orientation=orientation, hidden=[32], epochs=60,
                               lr=3e-3, weight_decay=1.0, seed=0, device="cpu", quiet=True,
                               out=str(root / f"run-{orientation}"))
        run = train(cfg)
        export_run(run, root / orientation)
        out[orientation] = (run, root / orientation)
    return out


@pytest.mark.parametrize("orientation", ["item", "user"])
def test_recovers_held_out_ratings_far_below_the_baselines(orientation, lowrank_bundles):
    run, _ = lowrank_bundles[orientation]
    ev = json.loads((run / "run.json").read_text())["metrics"]["evaluation"]
    assert ev["n_test"] > 1000
    assert ev["rmse"] < 0.8 * ev["rmse_global_mean"], ev
    assert ev["rmse"] < ev["rmse_bias_baseline"], ev


def test_bundle_matches_training_figure(lowrank_bundles):
    """The runtime's completion of the training rows gives the trainer's test RMSE."""
    from gen.trainer.data import lowrank
    from gen.trainer.protocols.completion import completion_split, rmse

    run, bundle = lowrank_bundles["item"]
    model = load(bundle, device="cpu")
    table = lowrank().table
    train_idx, test_idx = completion_split(len(table))
    sub = lambda idx: RatingsTable(table.users[idx], table.items[idx], table.ratings[idx],  # noqa: E731
                                   table.lines[idx], "int", "lowrank")
    got = Completer(model, sub(train_idx)).predict_pairs(table.users[test_idx], table.items[test_idx])
    ev = json.loads((run / "run.json").read_text())["metrics"]["evaluation"]
    assert rmse(got.prediction, table.ratings[test_idx]) == pytest.approx(ev["rmse"], abs=1e-5)
    assert set(got.source) == {"model"}
    r = model.manifest.data.ratings
    assert r.orientation == "item"
    assert model.manifest.data.shape == [len(r.users)] and r.rating_range == [1.0, 5.0]


def test_an_unseen_user_is_folded_in(lowrank_bundles):
    """User-based: a user the model never saw, with the same ratings as a known user, gets
    exactly that user's predictions, from the model (no retraining)."""
    from gen.trainer.data import lowrank

    _, bundle = lowrank_bundles["user"]
    model = load(bundle, device="cpu")
    table = lowrank().table
    mine = table.users == "1"
    renamed = RatingsTable(np.where(mine, "newcomer", table.users).astype(object), table.items, table.ratings,
                           table.lines, "str", "t")
    items = np.asarray(["1", "2", "3", "50"], dtype=object)
    known = Completer(model, table).predict_pairs(np.full(4, "1", dtype=object), items)
    # a string id is refused by an integer-id model, so fold in through the row directly
    with pytest.raises(Exception, match="expected an integer id"):
        Completer(model, renamed)
    renamed = RatingsTable(np.where(mine, "100000", table.users).astype(object), table.items, table.ratings,
                           table.lines, "int", "t")
    folded = Completer(model, renamed).predict_pairs(np.full(4, "100000", dtype=object), items)
    assert "100000" not in model.manifest.data.ratings.users
    np.testing.assert_allclose(folded.prediction, known.prediction, atol=1e-6)
    assert list(folded.source) == ["model"] * 4


def test_unknown_columns_and_empty_rows_fall_back(lowrank_bundles):
    """Item-based: a new user (a column the model lacks) gets their own mean; a known user
    without given ratings is still predicted from the item's row; an item with no given
    ratings gets the global mean."""
    _, bundle = lowrank_bundles["item"]
    model = load(bundle, device="cpu")
    r = model.manifest.data.ratings
    table = RatingsTable(np.asarray(["1", "1", "777", "777"], dtype=object),
                         np.asarray(["1", "2", "1", "2"], dtype=object), np.asarray([5.0, 4.0, 2.0, 3.0]),
                         np.arange(1, 5), "int", "t")
    got = Completer(model, table).predict_pairs(np.asarray(["1", "777", "5", "1"], dtype=object),
                                                np.asarray(["1", "3", "1", "3"], dtype=object))
    assert list(got.source) == ["model", "user_mean", "model", "global_mean"]
    assert got.prediction[1] == pytest.approx(2.5) and got.prediction[3] == pytest.approx(r.global_mean)


def test_families_refuse_data_of_the_wrong_kind(tmp_path):
    from gen.runtime import ConfigError

    with pytest.raises(ConfigError, match="model autorec trains on ratings data; digits holds image data"):
        train(TrainConfig.make(model="autorec", data="digits", epochs=1, device="cpu", quiet=True,
                               out=str(tmp_path / "a")))
    with pytest.raises(ConfigError, match=r"model ae trains on .* data; lowrank holds ratings data; "
                                          r"use a completion family \(autorec\)"):
        train(TrainConfig.make(model="ae", data="lowrank", epochs=1, device="cpu", quiet=True,
                               out=str(tmp_path / "b")))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_ratings_files_train_like_the_builtin(tmp_path):
    """A u.data file trains; its ids come back as the manifest's id maps."""
    from gen.trainer.data import lowrank

    table = lowrank().table
    path = tmp_path / "u.data"
    path.write_text("".join(f"{u}\t{i}\t{int(r)}\t0\n" for u, i, r in zip(table.users, table.items, table.ratings)))
    run = train(TrainConfig.make(model="autorec", data=str(path), orientation="user", hidden=[8], epochs=2,
                                 device="cpu", quiet=True, out=str(tmp_path / "run")))
    info = json.loads((run / "run.json").read_text())
    ratings = info["data"]["ratings"]
    assert ratings["orientation"] == "user" and ratings["id_type"] == "int"
    assert ratings["users"][:3] == ["1", "2", "3"] and info["data"]["shape"] == [len(ratings["items"])]
    assert info["metrics"]["evaluation"]["n_test"] == len(table) - int(0.9 * len(table))


def test_model_complete_ignores_unobserved_values_even_nan(lowrank_bundles):
    from gen.runtime import InputError

    model = load(lowrank_bundles["item"][1], device="cpu")
    width = model.manifest.data.shape[0]
    rng = np.random.default_rng(0)
    mask = (rng.random((4, width)) < 0.3).astype(np.float32)
    values = np.where(mask > 0, rng.integers(1, 6, (4, width)), 0).astype(np.float32)
    noisy = np.where(mask > 0, values, np.nan)
    np.testing.assert_array_equal(model.complete(noisy, mask), model.complete(values, mask))
    with pytest.raises(InputError, match="value is nan"):
        model.complete(np.where(mask > 0, np.nan, values), mask)  # NaN where observed is refused
    with pytest.raises(InputError, match="complete mask: expected 0/1 values"):
        model.complete(values, mask * 2)
