"""The GAN's Algorithm 1, checked against its definition."""

import pytest
import torch

from gen.runtime.manifest import DataSpec, PreprocessSpec
from gen.trainer import registry
from gen.trainer.config import TrainConfig
from gen.trainer.models import gan, infogan

UNIT = DataSpec("test", "image", [1, 1, 3], preprocessing=PreprocessSpec(0.0, 1.0, [0.0, 1.0]))


def build(**options):
    """A resolved gan on UNIT rows, unpacked unless `pack` is given (UNIT's 3 values would pack)."""
    cfg = TrainConfig.make(model="gan", hidden=[8], latent_dim=2, **{"pack": 1, **options})
    o = cfg.family.resolve(cfg.options, UNIT)
    return cfg.family.build(o, UNIT), o


def test_takes_d_steps_discriminator_steps_per_generator_step():
    torch.manual_seed(0)
    net, options = build(d_steps=3)
    trainer = gan.Trainer(net, options)
    steps = {"d": 0, "g": 0}
    trainer.optD.step = lambda *a, **k: steps.__setitem__("d", steps["d"] + 1)
    trainer.optG.step = lambda *a, **k: steps.__setitem__("g", steps["g"] + 1)
    trainer.step(torch.rand(3 * 4, 1, 1, 3))
    assert steps == {"d": 3, "g": 1} and trainer.batches_per_step == 3


@pytest.mark.parametrize("kind", ["minimax", "non_saturating"])
def test_generator_losses(kind):
    """minimax: G minimises log(1 - D(G(z))) < 0; non-saturating: G minimises -log D(G(z)) > 0."""
    torch.manual_seed(0)
    net, options = build(loss=kind)
    trainer = gan.Trainer(net, options)
    captured = {}
    original = net.discriminate

    def spy(x):
        captured["logits"] = original(x)
        return captured["logits"]

    net.discriminate = spy
    losses = trainer.step(torch.rand(8, 1, 1, 3))
    d = torch.sigmoid(captured["logits"]).detach()  # the generator step's D(G(z))
    expected = torch.log(1 - d).mean() if kind == "minimax" else -torch.log(d).mean()
    assert losses["loss_g"] == pytest.approx(float(expected), rel=1e-5)


def test_generator_output_has_the_data_shape_and_range():
    net, _ = build()
    x = net.generate(torch.randn(4, 2))
    assert x.shape == (4, 1, 1, 3) and x.min() >= 0 and x.max() <= 1
    torch.testing.assert_close(net.score(x), -net.discriminate(x))


def test_old_name_k_is_refused():
    from gen.runtime.errors import ConfigError

    with pytest.raises(ConfigError, match="k: unknown key"):
        TrainConfig.make(model="gan", k=2)


def test_packing_puts_m_consecutive_rows_side_by_side():
    from gen.trainer.models.adversarial import pack_rows

    x = torch.arange(7 * 3, dtype=torch.float32).reshape(7, 1, 1, 3)
    packed = pack_rows(x.flatten(1), 2)
    assert packed.shape == (3, 6)  # the 7th row is left over
    torch.testing.assert_close(packed[1], torch.cat([x[2].flatten(), x[3].flatten()]))


def test_gan_packs_points_by_default_and_not_images():
    """--pack unset: LOW_DIM_PACK on rows of at most LOW_DIM values, 1 on images; a given pack is kept."""
    from gen.trainer.models import adversarial

    points, images = DataSpec("grid25", "points", [2]), DataSpec("digits", "image", [1, 8, 8])
    wide = DataSpec("t", "tabular", [adversarial.LOW_DIM + 1])
    family = registry.get("gan")
    resolved = {d.kind: family.resolve(TrainConfig.make(model="gan").options, d) for d in (points, images, wide)}
    assert gan.LOW_DIM_PACK > 1 and resolved["points"].pack == gan.LOW_DIM_PACK
    assert resolved["image"].pack == resolved["tabular"].pack == 1
    assert family.resolve(TrainConfig.make(model="gan", pack=1).options, points).pack == 1
    assert family.build(resolved["points"], points).netD[0].in_features == 2 * gan.LOW_DIM_PACK
    assert "PacGAN2" in family.variant(resolved["points"]) and "PacGAN" not in family.variant(resolved["image"])


def test_pacgan_judges_packs_and_keeps_a_per_row_discriminator_for_export():
    torch.manual_seed(0)
    net, options = build(pack=3)
    assert net.netD[0].in_features == 3 * 3 and net.netD_row[0].in_features == 3
    x = torch.rand(9, 1, 1, 3)
    assert net.discriminate_packs(x).shape == (3,) and net.discriminate(x).shape == (9,)
    torch.testing.assert_close(net.discriminate(x), net.netD_row(x.flatten(1)).squeeze(1))
    before = [p.detach().clone() for p in net.netD_row.parameters()]
    losses = gan.Trainer(net, options).step(torch.rand(12, 1, 1, 3))
    assert set(losses) == {"loss_d", "loss_g", "loss_d_row", "loss_g_row"}
    assert any(not torch.equal(a, b) for a, b in zip(before, net.netD_row.parameters()))  # it learns too
    assert gan.Trainer(net, options).step(torch.rand(2, 1, 1, 3))["loss_d"] == 0.0  # fewer rows than a pack


def test_with_packs_the_generator_answers_to_both_discriminators():
    """The generator step's loss is the packed discriminator's plus the per-row one's, and the
    generated rows reach the per-row discriminator with their gradient (unpacked: one loss)."""
    torch.manual_seed(0)
    net, options = build(pack=2)
    seen = []
    original = net.discriminate
    net.discriminate = lambda x: seen.append(x.requires_grad) or original(x)
    losses = gan.Trainer(net, options).step(torch.rand(8, 1, 1, 3))
    assert seen[-1] is True and losses["loss_g_row"] > 0 and losses["loss_g"] > losses["loss_g_row"]
    plain, o = build()
    assert "loss_g_row" not in gan.Trainer(plain, o).step(torch.rand(8, 1, 1, 3))
    # dcgan shares the trainer but keeps PacGAN's packs alone (not measured with both)
    image = DataSpec("test", "image", [1, 8, 8], preprocessing=PreprocessSpec(0.0, 1.0, [0.0, 1.0]))
    cfg = TrainConfig.make(model="dcgan", channels=[4], latent_dim=2, pack=2)
    o = cfg.family.resolve(cfg.options, image)
    packed = cfg.family.build(o, image)
    seen.clear()
    original_dc = packed.discriminate
    packed.discriminate = lambda x: seen.append(x.requires_grad) or original_dc(x)
    losses = gan.Trainer(packed, o).step(torch.rand(8, 1, 8, 8))
    assert "loss_g_row" not in losses and "loss_d_row" in losses and True not in seen


def test_pacgan_exports_a_per_row_discriminator_that_refines(tmp_path):
    import numpy as np
    from typer.testing import CliRunner

    from gen.cli.main import app
    from gen.runtime import load

    run = CliRunner().invoke(app, ["train", "--model", "gan", "--data", "ring8", "--pack", "2", "--epochs", "2",
                                   "--hidden", "16", "--out", str(tmp_path / "run"), "--quiet"])
    assert run.exit_code == 0, run.output
    assert CliRunner().invoke(app, ["export", str(tmp_path / "run"), "--out", str(tmp_path / "b")]).exit_code == 0
    model = load(tmp_path / "b")
    assert model.manifest.config["pack"] == 2 and "PacGAN2" in model.manifest.variant
    rows = model.sample(8, seed=0)
    assert model.score(rows).shape == (8,)  # one score per row, from the per-row discriminator
    refined = model.sample(16, seed=0, refine="drs")
    assert refined.shape == (16, 2) and np.isfinite(refined).all()


class _Fixed(torch.nn.Module):
    """A 'generator' that returns given rows whatever the noise (cycled to the batch)."""

    def __init__(self, rows: torch.Tensor):
        super().__init__()
        self.rows, self.latent_dim = rows, 2

    def generate(self, z):
        return self.rows[torch.arange(len(z)) % len(self.rows)]


def test_fidelity_check_rewards_covering_every_mode_and_nothing_else():
    from gen.trainer.models.adversarial import fidelity_check

    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0], [4.0, 4.0]])
    held_out = centres.repeat(50, 1) + 0.05 * torch.randn(200, 2, generator=g)
    everywhere = centres.repeat(100, 1) + 0.05 * torch.randn(400, 2, generator=g)
    one_mode = centres[:1].repeat(400, 1) + 0.05 * torch.randn(400, 2, generator=g)
    between = torch.full((400, 2), 2.0) + 0.05 * torch.randn(400, 2, generator=g)
    half_off = torch.cat([everywhere[:200], between[:200]])
    loss = {name: fidelity_check(_Fixed(rows), held_out, seed=0, n_fake=400)()
            for name, rows in [("everywhere", everywhere), ("one_mode", one_mode), ("between", between),
                               ("half_off", half_off)]}
    assert loss["everywhere"] < 0.25
    assert loss["between"] == 1.0                       # no sample near any held-out row
    assert loss["one_mode"] > 0.5                       # precise, but a quarter of the modes
    assert loss["everywhere"] < loss["half_off"] < loss["between"]


def test_a_beta_below_one_weighs_precision_more():
    """F0.5: a precise generator that covers a quarter of the modes scores better than with F1,
    one with half its samples off the modes worse; beta 1 is the default."""
    from gen.trainer.models.adversarial import fidelity_check

    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0], [4.0, 4.0]])
    held_out = centres.repeat(50, 1) + 0.05 * torch.randn(200, 2, generator=g)
    one_mode = centres[:1].repeat(400, 1) + 0.05 * torch.randn(400, 2, generator=g)
    half_off = torch.cat([centres.repeat(50, 1) + 0.05 * torch.randn(200, 2, generator=g),
                          torch.full((200, 2), 2.0) + 0.05 * torch.randn(200, 2, generator=g)])
    loss = {(name, beta): fidelity_check(_Fixed(rows), held_out, seed=0, n_fake=400, beta=beta)()
            for name, rows in [("one_mode", one_mode), ("half_off", half_off)] for beta in (1.0, 0.5)}
    assert loss[("one_mode", 0.5)] < loss[("one_mode", 1.0)] and loss[("half_off", 0.5)] > loss[("half_off", 1.0)]
    assert fidelity_check(_Fixed(one_mode), held_out, seed=0, n_fake=400)() == loss[("one_mode", 1.0)]


def test_a_packed_gan_keeps_the_epoch_by_f_half(monkeypatch):
    from gen.trainer.models import adversarial

    points = DataSpec("ring8", "points", [2])
    family = registry.get("gan")
    asked = []
    monkeypatch.setattr(adversarial, "fidelity_check", lambda net, x, seed, beta=1.0: asked.append(beta))
    for pack in (2, 1):
        o = family.resolve(TrainConfig.make(model="gan", hidden=[8], pack=pack).options, points)
        family.keep_best(family.build(o, points), o, points, torch.randn(8, 2), 3)
    assert asked == [gan.PACKED_CHECK_BETA, 1.0] and gan.PACKED_CHECK_BETA == 0.5


KEEPS_BEST = [name for name in registry.names()
              if registry.get(name).discriminator is not None and registry.get(name).keep_best is not None]


def test_every_gan_family_on_points_trains_the_low_dim_budget():
    from gen.trainer.models import adversarial

    points = DataSpec("ring8", "points", [2])
    assert {"gan", "wgan", "wgan-gp", "veegan", "infogan"} <= set(KEEPS_BEST)
    for name in KEEPS_BEST:
        family = registry.get(name)
        options = family.resolve(TrainConfig.make(model=name).options, points)
        per_step = getattr(options, "n_critic", 1)  # a critic's minibatches count in the budget
        assert family.min_steps(options, points) == -(-adversarial.LOW_DIM_STEPS // per_step), name
        assert options.latent_dim == 2, name
        images = DataSpec("digits", "image", [1, 8, 8])
        # InfoGAN names a budget for images too (test_infogan.py); the others train the default one
        assert family.min_steps(family.resolve(TrainConfig.make(model=name).options, images), images) == \
            (infogan.IMAGE_STEPS if name == "infogan" else None), name
    adagan = registry.get("adagan")  # its components share the steps (--epochs counts per component)
    assert adagan.min_steps(adagan.resolve(TrainConfig.make(model="adagan", components=3).options, points),
                            points) == -(-adversarial.LOW_DIM_STEPS // 3)


@pytest.mark.parametrize("name", KEEPS_BEST)
def test_the_default_budget_on_points_keeps_the_epoch_the_check_likes(name, tmp_path, monkeypatch):
    """`gen train --model NAME` on 2-D points without --epochs: every epoch is checked on the
    held-out rows and the best one is kept; with --epochs the last one is."""
    import json

    import yaml

    from gen.trainer.models import adversarial
    from gen.trainer.train import train

    monkeypatch.setattr(adversarial, "LOW_DIM_STEPS", 200)  # a short budget for the test: 30 epochs
    common = dict(model=name, data="ring8", hidden=[16], batch_size=512, seed=0, device="cpu", quiet=True)
    run = train(TrainConfig.make(out=str(tmp_path / "default"), **common))
    metrics = json.loads((run / "run.json").read_text())["metrics"]
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    scores = [h["val_score"] for h in history]
    stopping = metrics["stopping"]
    steps = -(-200 // yaml.safe_load((run / "config.yaml").read_text()).get("n_critic", 1))  # generator steps
    assert stopping["max_epochs"] == max(30, -(-steps // stopping["steps_per_epoch"]))
    assert len(history) == stopping["max_epochs"] and stopping["stopped"] == "ceiling"
    assert stopping["kept_epoch"] == scores.index(min(scores)) + 1
    assert stopping["best_val_score"] == pytest.approx(min(scores))
    explicit = train(TrainConfig.make(out=str(tmp_path / "explicit"), epochs=3, **common))
    records = [json.loads(line) for line in (explicit / "metrics.jsonl").read_text().splitlines()]
    assert "val_score" not in records[0]
    assert json.loads((explicit / "run.json").read_text())["metrics"]["stopping"]["kept_epoch"] == 3


def test_the_generator_average_warms_up_then_follows_the_decay():
    from gen.trainer.models.adversarial import GeneratorAverage

    g = torch.nn.Linear(2, 2)
    with torch.no_grad():
        g.weight.fill_(1.0)
    average = GeneratorAverage(g, decay=0.999)
    with torch.no_grad():
        g.weight.fill_(3.0)
    average.update(g)  # update 0: d = min(0.999, 1 / 10)
    torch.testing.assert_close(average.net.weight, torch.full((2, 2), 0.1 * 1.0 + 0.9 * 3.0))
    average.updates.fill_(100_000)  # long after the warm-up: d = 0.999
    before = average.net.weight.clone()
    with torch.no_grad():
        g.weight.fill_(5.0)
    average.update(g)
    torch.testing.assert_close(average.net.weight, 0.999 * before + 0.001 * 5.0)
    assert not any(p.requires_grad for p in average.net.parameters())


def test_a_gan_samples_its_averaged_generator_outside_training():
    torch.manual_seed(0)
    net, options = build()
    assert options.average == 0.999 and net.netG_average is not None
    trainer = gan.Trainer(net, options)
    for _ in range(5):
        trainer.step(torch.rand(16, 1, 1, 3))
    assert int(net.netG_average.updates) == 5  # one update per generator step
    z = torch.randn(4, 2)
    net.eval()
    torch.testing.assert_close(net.generate(z), net.netG_average.net(z).reshape(-1, 1, 1, 3))
    assert not torch.allclose(net.generate(z), net.netG(z).reshape(-1, 1, 1, 3))
    net.train()
    torch.testing.assert_close(net.generate(z), net.netG(z).reshape(-1, 1, 1, 3))
    plain, _ = build(average=0.0)
    assert plain.netG_average is None


def test_gan_decays_its_rate_on_points_by_default_and_not_on_images():
    points, images = DataSpec("ring8", "points", [2]), DataSpec("digits", "image", [1, 8, 8])
    family = registry.get("gan")
    decay = lambda data, **o: family.resolve(TrainConfig.make(model="gan", **o).options, data).lr_decay  # noqa: E731
    assert (decay(points), decay(images)) == ("linear", "none")
    assert decay(points, lr_decay="none") == "none" and decay(images, lr_decay="linear") == "linear"
    assert "decaying" in family.variant(family.resolve(TrainConfig.make(model="gan").options, points))


@pytest.mark.parametrize("kind", ["linear", "none"])
def test_the_linear_decay_takes_both_rates_to_zero_over_the_run(kind):
    """The loop tells the run's steps (schedule); each step sets the rate, then steps: G's
    rate falls by lr/total a step, D's (d_steps optimiser steps a step) by lr/(total * d_steps)."""
    torch.manual_seed(0)
    net, options = build(d_steps=2, lr=1e-3, lr_decay=kind)
    trainer = gan.Trainer(net, options)
    trainer.schedule(4)
    seen = {"d": [], "g": []}
    for key, opt in (("d", trainer.optD), ("g", trainer.optG)):
        step = opt.step
        opt.step = lambda *a, key=key, opt=opt, step=step, **k: (seen[key].append(opt.param_groups[0]["lr"]),
                                                                  step(*a, **k))
    for _ in range(4):
        trainer.step(torch.rand(2 * 4, 1, 1, 3))
    if kind == "linear":
        assert seen["g"] == pytest.approx([1e-3, 0.75e-3, 0.5e-3, 0.25e-3])
        assert seen["d"] == pytest.approx([1e-3 * (1 - i / 8) for i in range(8)])
    else:
        assert seen["g"] == [1e-3] * 4 and seen["d"] == [1e-3] * 8
