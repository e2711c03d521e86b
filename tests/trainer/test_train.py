"""The training loop: run folder contents, determinism, splits and calibration."""

import json

import numpy as np
import pytest
import torch

from gen.runtime.errors import DeviceError, InputError
from gen.trainer.config import TrainConfig
from gen.trainer.protocols.one_class import protocol_split
from gen.trainer.run_folder import load_run
from gen.trainer.train import train


def tiny(tmp_path, name, **kw):
    base = dict(model="ae", data="digits", epochs=2, hidden=[16], latent_dim=3, quiet=True,
                out=str(tmp_path / name))
    return train(TrainConfig.make(**{**base, **kw}))


def test_run_folder_contents(runs):
    run = runs["ae"]
    assert {p.name for p in run.iterdir()} >= {"checkpoint.pt", "config.yaml", "run.json",
                                               "metrics.jsonl", "probe.npy", "preview.png"}
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs] == list(range(1, 31)) and all("loss" in e for e in epochs)
    info = json.loads((run / "run.json").read_text())
    assert info["data"]["normal_class"] == 0 and 0.5 < info["metrics"]["evaluation"]["auroc"] <= 1.0
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert set(state) == {"state_dict"}
    assert np.load(run / "probe.npy").max() > 1  # probe rows are raw units (digits 0..16)


def test_same_seed_same_model(tmp_path):
    a = load_run(tiny(tmp_path, "a", seed=5, device="cpu")).net.state_dict()
    b = load_run(tiny(tmp_path, "b", seed=5, device="cpu")).net.state_dict()
    c = load_run(tiny(tmp_path, "c", seed=6, device="cpu")).net.state_dict()
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
    prep = json.loads((run / "run.json").read_text())["data"]["preprocessing"]
    assert prep["model_range"] is None and len(prep["offset"]) == 3
    assert prep["scale"][2] == pytest.approx(100, rel=0.3) and prep["offset"][1] == pytest.approx(5, abs=3)


def test_auto_device_is_recorded(tmp_path):
    info = json.loads((tiny(tmp_path, "auto") / "run.json").read_text())
    assert info["metrics"]["device"].split(":")[0] == ("cuda" if torch.cuda.is_available() else "cpu")


def test_cuda_without_cuda_is_an_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(DeviceError, match="torch sees no CUDA device"):
        tiny(tmp_path, "cuda", device="cuda")


def test_unlabelled_data_with_normal_class(tmp_path):
    np.save(tmp_path / "t.npy", np.zeros((40, 3), dtype=np.float32))
    with pytest.raises(InputError, match="--normal-class 1 needs labelled data"):
        tiny(tmp_path, "r", data=str(tmp_path / "t.npy"), normal_class=1)


def test_calibration_size_has_a_floor_on_small_data():
    from gen.trainer.protocols.one_class import calibration_size

    assert calibration_size(144, 0.1) == 36          # 25% of a small class, not 14 rows
    assert calibration_size(1000, 0.1) == 200        # the floor of 200 rows
    assert calibration_size(10_000, 0.1) == 1000     # the fraction once it exceeds the floor
    assert calibration_size(8, 0.1) == 2


def test_small_calibration_warns_with_expected_false_alarms(tmp_path):
    from gen.runtime.errors import GenWarning

    with pytest.warns(GenWarning, match=r"only 35 calibration rows: .* expect about 2\.8% of normal rows"):
        run = tiny(tmp_path, "w", normal_class=0)
    scoring = json.loads((run / "run.json").read_text())["scoring"]
    assert scoring["expected_false_alarm_rate"] == pytest.approx(1 / 36)
    assert scoring["calibration"].startswith("35 held-out normal training rows")


def test_protocol_split_stratifies_labels_with_gaps():
    y = np.repeat([0, 2, 5], 10)
    _, test = protocol_split(30, y)
    assert sorted(np.bincount(y[test]).tolist()) == [0, 0, 0, 2, 2, 2]


def test_failed_run_leaves_nothing(tmp_path):
    from gen.runtime.errors import ConfigError

    with pytest.raises(ConfigError, match="loss=bce needs data scaled"):
        tiny(tmp_path, "bad", data="ring8", loss="bce")
    assert list(tmp_path.iterdir()) == []


def test_rerun_replaces_a_run_folder_but_never_a_user_folder(tmp_path):
    run = tiny(tmp_path, "run", seed=1)
    (run / "stale.txt").write_text("from an older run")
    tiny(tmp_path, "run", seed=2)
    assert not (run / "stale.txt").exists() and (run / "run.json").is_file()
    user = tmp_path / "mine"
    user.mkdir()
    (user / "thesis.tex").write_text("precious")
    with pytest.raises(InputError, match="exists and is not a gen run folder"):
        tiny(tmp_path, "mine")
    assert (user / "thesis.tex").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "run"]


def test_config_yaml_records_every_option_resolved(tmp_path):
    import yaml

    run = tiny(tmp_path, "r", model="vae", hidden=[8], latent_dim=2)
    recorded = yaml.safe_load((run / "config.yaml").read_text())
    assert recorded["decoder"] == "bernoulli" and recorded["lr"] == 1e-3 and recorded["kl_weight"] == 1.0
    assert None not in (recorded["lr"], recorded["decoder"])
    loaded = load_run(run)
    cfg, info = loaded.cfg, loaded.info
    assert cfg.to_dict() == recorded and info["variant"] == "bernoulli decoder"


def test_preview_for_images_and_points(tmp_path):
    assert (tiny(tmp_path, "img", model="gan", hidden=[8]) / "preview.png").is_file()
    run = tiny(tmp_path, "pts", model="gan", data="ring8", hidden=[8], latent_dim=2)
    assert (run / "preview.png").read_bytes().startswith(b"\x89PNG")


def test_diverged_training_is_refused(tmp_path):
    from gen.runtime.errors import ConfigError

    with pytest.raises(ConfigError, match="training diverged at epoch 1"):
        tiny(tmp_path, "nan", model="ae", lr=1e30, epochs=3)
    assert list(tmp_path.iterdir()) == []


def test_symlinked_out_is_refused(tmp_path):
    real = tiny(tmp_path, "real")
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(InputError, match="link: is a symbolic link"):
        tiny(tmp_path, "link")
    assert (real / "run.json").is_file()


def test_network_that_cannot_be_built_is_one_line(tmp_path):
    from gen.runtime.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot build the ae network with these options"):
        tiny(tmp_path, "huge", hidden=[100_000_000_000])
    assert list(tmp_path.iterdir()) == []


def test_run_and_bundle_folders_follow_the_umask(runs, bundles):
    import os
    import stat

    mask = os.umask(0)
    os.umask(mask)
    for folder in (runs["ae"], bundles["ae"]):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~mask


def test_load_run_reads_a_typed_run_record(tmp_path):
    """run.json comes back typed (the manifest's parser), and a record the exporter could not
    use is refused where it is read, in one line."""
    import json

    from gen.runtime import InputError
    from gen.runtime.manifest import MetricsSpec

    run = tiny(tmp_path, "a", seed=5, device="cpu")
    loaded = load_run(run)
    assert loaded.run.family == loaded.cfg.family.name and isinstance(loaded.run.metrics, MetricsSpec)
    assert loaded.run.data == loaded.data and loaded.run.scoring.threshold == loaded.info["scoring"]["threshold"]
    info = json.loads((run / "run.json").read_text())
    info["metrics"]["epochs"] = "three"
    (run / "run.json").write_text(json.dumps(info))
    with pytest.raises(InputError, match="run.json: not a run description of this gen .*metrics.epochs"):
        load_run(run)


def test_a_one_row_last_batch_joins_the_batch_before():
    """Batch norm cannot train on one row: 129 rows at 64 a step are batches of 64 and 65, every
    row once; 130 rows stay 64, 64, 2."""
    from gen.trainer.distributed import Group
    from gen.trainer.loop import Batches

    for n, sizes in ((129, [64, 65]), (130, [64, 64, 2]), (1, [1]), (64, [64]), (65, [65])):
        x = torch.arange(n, dtype=torch.float32)[:, None]
        batching = Batches(x, 64, Group())
        batches = list(batching.epoch(np.random.default_rng(0)))
        assert [len(b) for b in batches] == sizes
        assert batching.steps_per_epoch() == len(sizes)  # what the budget counts (a decaying rate ends at 0)
        assert sorted(torch.cat(batches).squeeze(1).tolist()) == list(range(n))


def test_an_old_gan_run_without_the_average_or_pack_options_still_loads(tmp_path):
    """A gan run folder from before `--average`, `--pack` and `--lr-decay` has no such keys: it
    loads as an unpacked one without an average, its rate constant (unset, pack now resolves to
    2 on points and the decay to linear)."""
    import yaml

    run = train(TrainConfig.make(model="gan", data="ring8", epochs=1, hidden=[8], average=0.0, pack=1, device="cpu",
                                 out=str(tmp_path / "run"), quiet=True))
    raw = yaml.safe_load((run / "config.yaml").read_text())
    assert raw["lr_decay"] == "linear"  # recorded resolved (points)
    del raw["average"], raw["pack"], raw["lr_decay"]
    (run / "config.yaml").write_text(yaml.safe_dump(raw))
    loaded = load_run(run)
    assert loaded.cfg.options.average == 0.0 and loaded.net.netG_average is None
    assert loaded.cfg.options.pack == 1 and loaded.net.netD_row is None
    assert loaded.cfg.options.lr_decay == "none"


def test_an_old_infogan_run_without_the_real_row_weight_loads_without_it(tmp_path):
    """An infogan run folder from before `--real-weight` and `--augment` trained without Q's terms
    on real rows, Q reading images as drawn: it loads with weight 0 and augment none."""
    import yaml

    run = train(TrainConfig.make(model="infogan", data="digits", epochs=1, channels=[4], fc=8, latent_dim=2,
                                 categories=3, continuous=1, real_weight=1.0, device="cpu",
                                 out=str(tmp_path / "run"), quiet=True))
    raw = yaml.safe_load((run / "config.yaml").read_text())
    assert raw["augment"] == "affine"  # recorded resolved (images)
    del raw["real_weight"], raw["augment"]
    (run / "config.yaml").write_text(yaml.safe_dump(raw))
    options = load_run(run).cfg.options
    assert options.real_weight == 0.0 and options.augment == "none"
