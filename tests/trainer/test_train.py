"""The training loop: run folder contents, determinism, splits and calibration."""

import json

import numpy as np
import pytest
import torch

from gen.trainer.config import TrainConfig
from gen.trainer.errors import TrainError
from gen.trainer.evaluate import protocol_split
from gen.trainer.train import load_checkpoint, train


def tiny(tmp_path, name, **kw):
    base = dict(model="ae", data="digits", epochs=2, hidden=[16], latent_dim=3, quiet=True,
                out=str(tmp_path / name))
    return train(TrainConfig(**{**base, **kw}))


def test_run_folder_contents(runs):
    run = runs["ae"]
    assert {p.name for p in run.iterdir()} >= {"checkpoint.pt", "config.yaml", "run.json",
                                               "metrics.jsonl", "probe.npy", "preview.png"}
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs] == list(range(1, 31)) and all("loss" in e for e in epochs)
    info = json.loads((run / "run.json").read_text())
    assert info["data"]["normal_class"] == 0 and 0.5 < info["metrics"]["auroc"] <= 1.0
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert set(state) == {"state_dict"}


def test_same_seed_same_model(tmp_path):
    a = load_checkpoint(tiny(tmp_path, "a", seed=5))[2].state_dict()
    b = load_checkpoint(tiny(tmp_path, "b", seed=5))[2].state_dict()
    c = load_checkpoint(tiny(tmp_path, "c", seed=6))[2].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_normal_class_trains_on_that_class_only(runs):
    info = json.loads((runs["vae"] / "run.json").read_text())
    from sklearn.datasets import load_digits

    y = load_digits().target
    train_idx, test_idx = protocol_split(len(y), y)
    n_class0 = int((y[train_idx] == 0).sum())
    assert info["metrics"]["n_fit"] + info["metrics"]["n_calibration"] == n_class0
    assert info["metrics"]["n_test"] == len(test_idx) == 360


def test_protocol_split_is_the_fixed_stratified_split():
    y = np.repeat(np.arange(5), 20)
    train_a, test_a = protocol_split(100, y)
    train_b, test_b = protocol_split(100, y)
    np.testing.assert_array_equal(test_a, test_b)
    assert len(test_a) == 20 and np.all(np.bincount(y[test_a]) == 4)
    assert not set(train_a) & set(test_a)


def test_calibration_uses_held_out_rows(runs):
    info = json.loads((runs["ae"] / "run.json").read_text())
    scoring = info["scoring"]
    assert scoring["n_calibration"] == info["metrics"]["n_calibration"] > 0
    assert scoring["quantile_values"] == sorted(scoring["quantile_values"])
    assert scoring["quantile_values"][0] <= scoring["threshold"] <= scoring["quantile_values"][-1]


def test_tabular_data_is_standardised(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "t.npy", (rng.normal(size=(80, 3)) * [1, 10, 100] + [0, 5, -50]).astype(np.float32))
    run = tiny(tmp_path, "tab", data=str(tmp_path / "t.npy"))
    data = json.loads((run / "run.json").read_text())["data"]
    assert data["model_range"] is None and len(data["offset"]) == 3
    assert data["scale"][2] == pytest.approx(100, rel=0.3) and data["offset"][1] == pytest.approx(5, abs=3)


def test_cuda_without_cuda_is_an_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(TrainError, match="torch sees no CUDA device"):
        tiny(tmp_path, "cuda", device="cuda")


def test_unlabelled_data_with_normal_class(tmp_path):
    np.save(tmp_path / "t.npy", np.zeros((40, 3), dtype=np.float32))
    with pytest.raises(TrainError, match="--normal-class 1 needs labelled data"):
        tiny(tmp_path, "r", data=str(tmp_path / "t.npy"), normal_class=1)
