"""Defaults that follow from the data (issue 22): the training budget and early stopping,
sizes from the data's shape, latent-space scores inside the score graph, and the default
family per data kind."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from gen.runtime import load
from gen.trainer import budget, registry
from gen.trainer.config import TrainConfig
from gen.trainer.data import data_kind
from gen.trainer.train import train
from tests.pooling import reference_score


def _train(tmp_path, name="run", **options):
    out = tmp_path / name
    train(TrainConfig.make(out=str(out), quiet=True, threads=1, **options))
    return out, json.loads((out / "run.json").read_text()), yaml.safe_load((out / "config.yaml").read_text())


def test_early_stopping_keeps_the_best_epoch():
    """A validation loss that falls until epoch 4 and rises after: training stops `patience`
    epochs later and the weights of epoch 4 come back."""
    net = torch.nn.Linear(2, 1)
    stopper = budget.EarlyStopping(patience=3)
    losses = [5.0, 4.0, 3.0, 2.0, 2.5, 3.0, 3.5, 4.0]
    stopped_at = None
    for epoch, loss in enumerate(losses, start=1):
        with torch.no_grad():
            net.weight.fill_(float(epoch))
        if stopper.update(epoch, loss, net):
            stopped_at = epoch
            break
    assert stopped_at == 7 and stopper.best_epoch == 4
    stopper.restore(net)
    assert float(net.weight.detach()[0, 0]) == 4.0


def test_budget_follows_the_rows():
    small = budget.plan(300, 64, None, None, True)   # 5 steps an epoch
    large = budget.plan(1_000_000, 64, None, None, True)
    assert small.max_epochs == budget.MIN_STEPS // 5 and small.patience == budget.PATIENCE_STEPS // 5
    assert large.max_epochs * large.steps_per_epoch <= budget.MAX_STEPS + large.steps_per_epoch
    assert large.patience == budget.MIN_PATIENCE
    assert budget.plan(300, 64, 7, None, True) == budget.Budget(7, None, 5, "--epochs")
    assert budget.plan(300, 64, None, None, False).max_epochs == budget.DEFAULT_EPOCHS
    # a family that trains by steps (the RBMs) gets the same ceiling, trained in full
    steps = budget.plan(300, 64, None, None, False, by_steps=True)
    assert (steps.max_epochs, steps.patience) == (small.max_epochs, None)
    assert budget.plan(300, 64, 7, None, False, by_steps=True).max_epochs == 7  # --epochs still rules
    assert registry.get("rbm").trains_by_steps and not registry.get("gan").trains_by_steps


def test_a_run_records_why_it_stopped(tmp_path):
    _, info, cfg = _train(tmp_path, model="ae", data="digits", normal_class=0, hidden=[16], latent_dim=4,
                          patience=2, epochs=40)
    stopping = info["metrics"]["stopping"]
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    best = min(history, key=lambda r: r["val_score"])
    assert stopping["kept_epoch"] == best["epoch"]
    assert stopping["stopped"] in ("patience", "ceiling") and stopping["max_epochs"] == 40
    if stopping["stopped"] == "patience":
        assert len(history) == stopping["kept_epoch"] + 2


@pytest.mark.parametrize("shape", [(60, 3), (50, 784), (50, 12)])
def test_pca_components_resolve_from_the_data_and_are_recorded(tmp_path, shape):
    """Narrow (3 columns), wide (784) and tiny (50 rows): the default resolves without an error,
    leaves variance to score (fewer components than min(rows, features)) and is recorded."""
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(shape[0], 2)) @ rng.normal(size=(2, shape[1])) + 0.1 * rng.normal(size=shape))
    np.save(tmp_path / "x.npy", x.astype(np.float32))
    _, info, cfg = _train(tmp_path, model="pca", data=str(tmp_path / "x.npy"))
    k = cfg["latent_dim"]
    assert isinstance(k, int) and 1 <= k < min(info["metrics"]["n_fit"], shape[1])
    assert sum(info["fitted"]["explained_variance_ratio"]) >= 0.8 or k == min(info["metrics"]["n_fit"], shape[1]) - 1


def test_an_explicit_impossible_size_is_still_refused(tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(60, 3)).astype(np.float32))
    from gen.runtime.errors import ConfigError

    with pytest.raises(ConfigError, match="latent_dim=9: PCA keeps at most"):
        _train(tmp_path, model="pca", data=str(tmp_path / "x.npy"), latent_dim=9)


def encoder_families() -> list[str]:
    """Every registered family that encodes, reconstructs and scores rows (the autoencoders, PCA,
    the VAE): each offers the latent scores. (The DBM encodes too, but its score is a free
    energy that log p(v) = -F - log Z is read from, so it keeps it.)"""
    return [f.name for f in registry.families().values() if {"encode", "reconstruct", "score"} <= set(f.capabilities)]


def test_every_family_with_an_encoder_offers_the_latent_scores():
    assert {"ae", "ae-naive", "ae-tied", "conv-ae", "linear-ae", "pca", "vae"} <= set(encoder_families())
    for name in encoder_families():
        fields = {spec.name: spec for spec in registry.get(name).option_specs()}
        assert "score" in fields, name
        assert registry.get(name).fit_score is not None and registry.get(name).score_kind_of is not None, name


@pytest.mark.parametrize("family", encoder_families())
@pytest.mark.parametrize("score", ["latent-knn", "mahalanobis", "combined"])
def test_latent_scores_match_a_numpy_reference_through_the_bundle(tmp_path, family, score):
    """The exported score graph (onnxruntime, no torch at scoring) equals numpy on the same
    memory bank, Gaussian and scales, for every family with an encoder; `combined` adds the
    family's own score (reconstruction error, a VAE's negative ELBO) scaled the same way."""
    from gen.exporters.onnx_export import export_run
    from sklearn.datasets import load_digits

    preset = registry.get(family).test
    run, info, cfg = _train(tmp_path, model=family, data="digits", normal_class=0, epochs=preset.epochs,
                            score=score, **preset.options)
    export_run(run, tmp_path / "bundle")
    model = load(tmp_path / "bundle")
    state = torch.load(run / "checkpoint.pt", weights_only=True)["state_dict"]
    bank = (state["latent_scores.bank"] + state["latent_scores.bank_mean"]).double().numpy()  # stored centred
    mean = state["latent_scores.code_mean"].double().numpy()
    precision, scales = state["latent_scores.code_precision"].double().numpy(), state["latent_scores.scales"].numpy()
    probe = load_digits().data[::37].astype(np.float32)
    z = model.encode(probe).astype(np.float64)
    d = np.sqrt(np.clip(((z[:, None, :] - bank[None]) ** 2).sum(-1), 0, None))
    knn = np.sort(d, axis=1)[:, :min(5, len(bank))].mean(axis=1)
    errors = model.errors(probe).astype(np.float64)  # model space, what the score pools
    if family == "vae":  # the negative ELBO: NLL terms summed plus kl_weight times the KL of the posterior
        logvar = model.runners["encoder"].run({"x": probe.reshape(len(probe), *model.shape)})["logvar"]
        kl = 0.5 * (z ** 2 + np.exp(logvar) - 1.0 - logvar).sum(axis=1)
        own = errors.reshape(len(probe), -1).sum(axis=1) + cfg["kl_weight"] * kl
    else:  # the reconstruction error, pooled as the run's `pool` says (digits: smooth)
        assert cfg["pool"] == "smooth"
        own = reference_score(errors, cfg["pool"])
    diff = z - mean
    want = {"latent-knn": knn, "mahalanobis": np.sqrt(np.einsum("ij,jk,ik->i", diff, precision, diff)),
            "combined": (own - scales[0]) / scales[1] + (knn - scales[2]) / scales[3]}[score]
    np.testing.assert_allclose(model.score(probe), want, rtol=2e-3, atol=2e-3)
    assert info["fitted"]["latent_score"] == score and len(bank) == info["fitted"]["memory_bank_rows"]
    assert model.manifest.scoring.kind not in ("reconstruction_mse", "negative_elbo")


def test_default_family_per_data_kind(tmp_path):
    np.save(tmp_path / "rows.npy", np.zeros((10, 4), np.float32))
    np.save(tmp_path / "images.npy", np.zeros((10, 1, 4, 4), np.float32))
    assert data_kind("digits") == "image" and data_kind(str(tmp_path / "images.npy")) == "image"
    assert data_kind(str(tmp_path / "rows.npy")) == "tabular" and data_kind("lowrank") == "ratings"
    assert registry.default_family("image").name == "pca"
    assert registry.default_family("tabular").name == "ae"
    assert registry.default_family("ratings").name == "autorec"
    cfg = TrainConfig.make(data=str(tmp_path / "images.npy"))
    assert cfg.family.name == "pca" and "image" in cfg.chosen
    assert TrainConfig.make(model="vae", data="digits").chosen is None
    # at most one default per kind, declared by the families themselves
    kinds = [k for f in registry.families().values() for k in f.default_for]
    assert len(kinds) == len(set(kinds))


def test_epochs_without_patience_train_exactly_that_many_and_keep_the_last(tmp_path):
    _, info, _ = _train(tmp_path, model="ae", data="digits", normal_class=0, hidden=[16], latent_dim=4, epochs=6)
    assert info["metrics"]["epochs"] == 6 and info["metrics"]["stopping"]["kept_epoch"] == 6
    assert info["metrics"]["stopping"]["patience"] is None


def test_patience_is_refused_where_nothing_stops_early():
    from gen.runtime.errors import ConfigError

    with pytest.raises(ConfigError, match="patience: does not apply to family 'gan'"):
        TrainConfig.make(model="gan", data="digits", patience=3)


def test_a_run_folder_from_before_latent_scores_loads_and_exports(tmp_path):
    """An ae run written before `--score` existed: no `score` key in config.yaml, no latent
    buffers in the checkpoint. It loads as a reconstruction-error model and exports."""
    from gen.exporters.onnx_export import export_run
    from gen.trainer.run_folder import load_run

    x = np.random.default_rng(2).normal(size=(80, 5)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    run, _, cfg = _train(tmp_path, model="ae", data=str(tmp_path / "x.npy"), hidden=[8], latent_dim=2, epochs=2,
                         score="recon")
    cfg.pop("score")
    (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert not any(k.startswith("latent_scores.") for k in state["state_dict"])
    loaded = load_run(run)
    loaded_cfg, net = loaded.cfg, loaded.net
    assert loaded_cfg.options.score == "recon" and net.latent_scores is None
    export_run(run, tmp_path / "bundle")
    assert load(tmp_path / "bundle").score(x[:3]).shape == (3,)


def test_an_image_run_from_before_pool_keeps_the_mean_it_was_calibrated_on(tmp_path):
    """A pca run on images written before `--pool` existed (no `pool` key in config.yaml) loads
    and exports with the mean of the errors, the score its threshold was set on; a new run on
    the same images pools by smoothed energy."""
    from gen.exporters.onnx_export import export_run
    from gen.trainer.run_folder import load_run

    run, _, cfg = _train(tmp_path, model="pca", data="digits", normal_class=0, latent_dim=4)
    assert cfg["pool"] == "smooth"
    cfg.pop("pool")
    (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    assert load_run(run).cfg.options.pool == "mean" and load_run(run).net.error_pool is None
    export_run(run, tmp_path / "bundle")
    model = load(tmp_path / "bundle")
    probe = np.random.default_rng(0).uniform(0, 16, size=(6, 64)).astype(np.float32)
    np.testing.assert_allclose(model.score(probe), reference_score(model.errors(probe), "mean"), rtol=1e-5)


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 28, 20), (2, 5, 40)])
def test_smoothed_energy_matches_scipy(shape):
    """pool=smooth on multichannel, non-square and small images: each channel blurred by a
    Gaussian of max(1, shorter side / 16) pixels with zero padding, then the root mean square."""
    from gen.trainer.models.base import SmoothedEnergy, smoothing_sigma

    assert smoothing_sigma(shape) == max(1.0, min(shape[1:]) / 16)
    errors = np.random.default_rng(1).exponential(size=(4, *shape)).astype(np.float32)
    got = SmoothedEnergy(shape)(torch.from_numpy(errors)).numpy()
    np.testing.assert_allclose(got, reference_score(errors, "smooth"), rtol=1e-5)
    # energy that clusters scores above the same total error scattered
    clustered, scattered = np.zeros((1, *shape), np.float32), np.zeros((1, *shape), np.float32)
    clustered[0, 0, :2, :2] = 1.0
    scattered[0, 0, 0, 0] = scattered[0, 0, -1, -1] = scattered[0, 0, 0, -1] = scattered[0, 0, -1, 0] = 1.0
    energy = SmoothedEnergy(shape)
    assert energy(torch.from_numpy(clustered)) > energy(torch.from_numpy(scattered))


def test_an_option_of_another_family_under_model_auto_names_the_choice():
    from gen.runtime.errors import ConfigError

    with pytest.raises(ConfigError, match=r"model auto -> pca .*pass --model"):
        TrainConfig.make(data="digits", hidden=[64])


def test_gen_info_shows_the_resolved_config_and_how_training_stopped(tmp_path):
    from gen.exporters.onnx_export import export_run
    from gen.runtime.model import describe

    run, info, cfg = _train(tmp_path, data="digits", normal_class=0, model="ae", hidden=[16], latent_dim=4,
                            epochs=8, patience=2)
    export_run(run, tmp_path / "bundle")
    summary = describe(load(tmp_path / "bundle"))
    assert summary["config"]["latent_dim"] == 4 and summary["config"]["score"] == "recon"
    assert summary["metrics"]["stopping"]["kept_epoch"] == info["metrics"]["stopping"]["kept_epoch"]


@pytest.mark.parametrize("rows", ["constant", "one column"])
def test_degenerate_tables_train_and_export_with_the_default_score(tmp_path, rows):
    """Rows a network reconstructs exactly, or whose codes coincide: the combined score's scales
    are floored, so the score is not float32 noise and torch and onnxruntime agree at export."""
    from gen.exporters.onnx_export import export_run

    x = (np.ones((60, 4)) if rows == "constant" else np.random.default_rng(3).normal(size=(60, 1)))
    np.save(tmp_path / "x.npy", x.astype(np.float32))
    run, info, _ = _train(tmp_path, data=str(tmp_path / "x.npy"), epochs=40, patience=5)
    assert info["fitted"]["latent_score"] == "combined"
    export_run(run, tmp_path / "bundle")  # raised on the parity check before the floors
    assert np.isfinite(load(tmp_path / "bundle").score(x[:5].astype(np.float32))).all()


def test_knn_distance_of_a_repeated_row_is_exact_and_exports(tmp_path):
    """A code equal to a bank code is at distance 0, not sqrt of the expanded form's rounding
    (which made tables with repeated rows fail the export's parity check)."""
    from gen.exporters.onnx_export import export_run
    from gen.trainer.models.base import LatentScores

    scores = LatentScores("latent-knn", 3, 8)
    bank = torch.tensor(np.random.default_rng(0).normal(size=(8, 3)) * 50 + 100, dtype=torch.float32)
    scores.bank_mean.copy_(bank.mean(dim=0))
    scores.bank.copy_(bank - scores.bank_mean)
    scores.bank_sq.copy_((scores.bank * scores.bank).sum(dim=1))
    distances = scores.knn(bank)
    exact = torch.cdist(bank.double(), bank.double()).sort(dim=1).values[:, :scores.k].mean(dim=1)
    torch.testing.assert_close(distances.double(), exact, rtol=1e-5, atol=0.0)
    rows = np.tile(np.random.default_rng(3).normal(size=(240, 6)), (3, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", rows)
    run, info, _ = _train(tmp_path, data=str(tmp_path / "x.npy"), model="ae", epochs=2, hidden=[16], latent_dim=3)
    assert info["fitted"]["latent_score"] == "combined"
    export_run(run, tmp_path / "bundle")  # raised "torch vs onnxruntime differ" before


def test_conv_depth_follows_the_image_size(tmp_path):
    """conv-ae's default convolutions halve the map until its smaller side is at most 4 (at
    least two, channels 32, 64, 128, 256 and 256 again), resolved and recorded."""
    from gen.trainer.models.conv_ae import channels_for

    assert channels_for((8, 8), 3) == [32, 64]  # digits: 8 -> 4 -> 2
    assert channels_for((28, 28), 3) == [32, 64, 128]  # MNIST: 28 -> 14 -> 7 -> 4
    assert channels_for((64, 48), 3) == [32, 64, 128, 256]  # the smaller side decides
    assert channels_for((224, 224), 3) == [32, 64, 128, 256, 256, 256]  # at most six, 256 channels at most
    assert channels_for((1, 1), 3) == [32] and channels_for((2, 2), 3) == [32]  # tiny maps still get one
    _, _, cfg = _train(tmp_path, model="conv-ae", data="digits", normal_class=0, epochs=1, latent_dim=4)
    assert cfg["channels"] == [32, 64]


def test_a_gan_on_low_dimensional_rows_trains_by_steps_and_its_noise_follows_the_row():
    """Without --epochs, a GAN on rows of at most 16 values trains 30,000 optimiser steps (30
    epochs left Grid-25 at 13-16 of 25 modes); its noise has the row's size, at most 32."""
    from dataclasses import replace

    from gen.runtime.manifest import DataSpec, PreprocessSpec
    from gen.trainer.models import adversarial

    family = registry.get("gan")
    points = DataSpec(source="p", kind="points", shape=[2], preprocessing=PreprocessSpec())
    images = replace(points, kind="image", shape=[1, 8, 8])
    options = family.options()
    assert family.resolve(options, points).latent_dim == 2 and family.resolve(options, images).latent_dim == 32
    assert family.resolve(replace(options, latent_dim=5), points).latent_dim == 5  # given: kept
    assert family.min_steps(options, points) == adversarial.LOW_DIM_STEPS and family.min_steps(options, images) is None
    plan = budget.plan(7200, 64, None, None, False, min_steps=30_000)
    assert plan.max_epochs == 266 and plan.patience is None  # 113 steps an epoch and "30000 steps" in plan.rule
    assert budget.plan(7200, 64, 5, None, False, min_steps=30_000).max_epochs == 5  # --epochs wins
    assert budget.plan(200_000, 64, None, None, False, min_steps=30_000).max_epochs == budget.DEFAULT_EPOCHS


def test_a_family_may_name_its_default_epochs():
    """AutoRec and GLocal-K name their epoch count (measured on MovieLens-100K); --epochs wins."""
    assert registry.get("autorec").default_epochs == 60 and registry.get("glocal-k").default_epochs == 120
    plan = budget.plan(1600, 64, None, None, False, default_epochs=60)
    assert plan.max_epochs == 60 and plan.patience is None and "default" in plan.rule
    assert budget.plan(1600, 64, 7, None, False, default_epochs=60).max_epochs == 7
    assert budget.plan(1600, 64, None, None, False).max_epochs == budget.DEFAULT_EPOCHS
