"""Options and configs: declared constraints, one validator, every message naming the key,
the value and what was expected; options that do not apply are refused, not ignored."""

import dataclasses

import pytest
import yaml

from gen.runtime.errors import ConfigError, InputError
from gen.trainer import registry
from gen.trainer.config import applies, RUN_KEYS, TrainConfig
from gen.trainer.options import Choice, Flag, Interval, ListOf, OptionSpec, check_value


@pytest.mark.parametrize("constraint, text", [
    (Interval(int, 1, None), "an integer >= 1"),
    (Interval(float, 0, None, "neither"), "a number > 0"),
    (Interval(float, 0, 0.5, "neither"), "a number in (0, 0.5)"),
    (Interval(float, 0, 1), "a number in [0, 1]"),
    (Interval(int, None, 10, "left"), "an integer < 10"),
    (Choice("a", "b"), "one of a, b"),
    (ListOf(Interval(int, 1, None)), "a list of integers >= 1"),
    (Flag(), "true or false"),
])
def test_constraints_describe_themselves(constraint, text):
    assert constraint.describe() == text


@pytest.mark.parametrize("constraint, good, bad", [
    (Interval(int, 1, None), [1, 5], [0, 1.5, True, "3", None, float("nan")]),
    (Interval(float, 0, 0.5, "neither"), [0.1, 0.49], [0, 0.5, -1, float("inf")]),
    (Choice("a", "b"), ["a"], ["c", 1]),
    (ListOf(Interval(int, 1, None)), [[], [1, 2]], [[0], "1,2", [1.5]]),
    (Flag(), [True, False], [1, "yes"]),
])
def test_constraints_check(constraint, good, bad):
    assert all(constraint.check(v) for v in good)
    assert not any(constraint.check(v) for v in bad)


def test_command_line_text_is_coerced_by_the_constraint():
    spec = OptionSpec("hidden", [1], "", ListOf(Interval(int, 1, None)), False)
    assert check_value(spec, "256, 128", "option") == [256, 128]
    assert check_value(spec, "", "option") == []
    with pytest.raises(ConfigError, match=r"option hidden='2,x': expected a list of integers >= 1"):
        check_value(spec, "2,x", "option")
    lr = OptionSpec("lr", 1e-3, "", Interval(float, 0, None, "neither"), False)
    assert check_value(lr, "1e-2", "option") == 0.01 and check_value(lr, 1, "option") == 1.0
    threads = OptionSpec("threads", None, "", Interval(int, 1, None), True)
    assert check_value(threads, None, "option") is None and check_value(threads, "null", "option") is None


def test_make_validates_run_and_family_options():
    cfg = TrainConfig.make(model="vae", epochs="3", latent_dim="2", kl_weight="0.5")
    assert cfg.run.epochs == 3 and cfg.options.latent_dim == 2 and cfg.options.kl_weight == 0.5
    assert cfg.options.lr == 1e-3  # the default, recorded as a number, never null
    applying = [k for k in RUN_KEYS if not applies(k, cfg.family)]
    assert list(cfg.to_dict())[:len(applying)] == applying and "discriminator_epochs" not in applying


def test_run_options_for_some_families_only():
    """discriminator_epochs goes with a discriminator, contamination with a score; recorded only there."""
    assert TrainConfig.make(model="dcgan", discriminator_epochs=3).to_dict()["discriminator_epochs"] == 3
    assert "contamination" not in TrainConfig.make(model="dcgan").to_dict()
    assert "calibration_fraction" in TrainConfig.make(model="dcgan").to_dict()
    with pytest.raises(ConfigError, match="discriminator_epochs: does not apply to family 'vae' .it has no discriminator"):
        TrainConfig.make(model="vae", discriminator_epochs=3)


@pytest.mark.parametrize("raw, message", [
    ({"model": "nope"}, r"model='nope': expected one of ae-naive, ae, ae-tied, pca, linear-ae, conv-ae, autorec, vae, gan"),
    ({"epohcs": 3}, r"option epohcs: unknown key; run options: model, data"),
    ({"model": "ae", "decoder": "bernoulli"}, r"option decoder: does not apply to family 'ae' \(it is an option of vae\); "
                                              r"ae takes: hidden, latent_dim, loss, lr"),
    ({"model": "gan", "kl_weight": 1.0}, r"kl_weight: does not apply to family 'gan'"),
    ({"epochs": 0}, r"option epochs=0: expected an integer >= 1"),
    ({"contamination": 0.5}, r"contamination=0.5: expected a number in \(0, 0.5\)"),
    ({"device": "tpu"}, r"device='tpu': expected one of auto, cpu, cuda"),
    ({"seed": -1}, r"seed=-1: expected an integer in \[0, 9223372036854775807\]"),
    ({"model": "gan", "loss": "bce"}, r"loss='bce': expected one of non_saturating, minimax"),
])
def test_bad_options_are_refused_with_one_line(raw, message):
    with pytest.raises(ConfigError, match=message) as info:
        TrainConfig.from_dict(raw)
    assert "\n" not in str(info.value)


def test_scoring_options_do_not_apply_to_a_family_without_a_score():
    vae = registry.get("vae")
    silent = dataclasses.replace(vae, name="silent", capabilities=("sample",), score_kind=None)
    registry.register(silent)
    try:
        assert TrainConfig.make(model="silent").family is silent
        with pytest.raises(ConfigError, match="contamination: does not apply to family 'silent' .* no anomaly score"):
            TrainConfig.make(model="silent", contamination=0.05)
    finally:
        registry.unregister("silent")


def test_yaml_keys_are_the_flags_and_flags_win(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: vae\nlatent-dim: 3\nepochs: 5\nhidden: [8]\n")
    cfg = TrainConfig.from_yaml(path, overrides={"epochs": "7"})
    assert cfg.options.latent_dim == 3 and cfg.run.epochs == 7 and cfg.options.hidden == [8]
    path.write_text("model: vae\nlatent_dim: zero\n")
    with pytest.raises(ConfigError, match=r"c.yaml latent_dim='zero': expected an integer >= 1"):
        TrainConfig.from_yaml(path)
    path.write_text("- not a mapping\n")
    with pytest.raises(InputError, match="expected a mapping"):
        TrainConfig.from_yaml(path)


def test_written_config_reads_back_to_the_same_config(tmp_path):
    cfg = TrainConfig.make(model="gan", d_steps=2, hidden=[4])
    cfg.write_yaml(tmp_path / "config.yaml")
    again = TrainConfig.from_yaml(tmp_path / "config.yaml")
    assert again.to_dict() == cfg.to_dict() == yaml.safe_load((tmp_path / "config.yaml").read_text())


def test_a_family_without_a_score_records_no_calibration_options(tmp_path):
    vae = registry.get("vae")
    silent = dataclasses.replace(vae, name="silent", capabilities=("sample",), score_kind=None)
    registry.register(silent)
    try:
        cfg = TrainConfig.make(model="silent", epochs=2)
        assert "contamination" not in cfg.to_dict() and "calibration_fraction" not in cfg.to_dict()
        cfg.write_yaml(tmp_path / "config.yaml")  # what export reads back
        assert TrainConfig.from_yaml(tmp_path / "config.yaml").to_dict() == cfg.to_dict()
    finally:
        registry.unregister("silent")


@pytest.mark.parametrize("text, message", [
    ("model: [a]\n", r"model=\['a'\]: expected a family name"),
    ("model: {a: 1}\n", r"model=\{'a': 1\}: expected a family name"),
])
def test_model_must_be_a_name(tmp_path, text, message):
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_yaml(tmp_path / "c.yaml")


def test_bare_flag_needs_a_value_and_numeric_names_are_text():
    with pytest.raises(ConfigError, match=r"option latent_dim: needs a value \(an integer >= 1\)"):
        TrainConfig.make(model="ae", latent_dim=True)
    assert TrainConfig.make(label_column=2020).run.label_column == "2020"  # a CSV column named 2020, from YAML
