"""InfoGAN: codes reach the generator, the information term trains Q, the bundle serves
fixed codes and code inference."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gen.runtime.errors import ConfigError, InputError
from gen.runtime.manifest import DataSpec
from gen.trainer.config import TrainConfig
from gen.trainer.models import infogan

POINTS = DataSpec("test", "points", [2])


def build(**options):
    cfg = TrainConfig.make(model="infogan", hidden=[16], latent_dim=2, **options)
    o = cfg.family.resolve(cfg.options, POINTS)
    return cfg.family.build(o, POINTS), o


def test_codes_are_declared_in_order():
    net, _ = build(categories=4, continuous=2)
    assert [(c.name, c.kind, c.width) for c in net.codes] == [("cat", "categorical", 4), ("c1", "uniform", 1),
                                                              ("c2", "uniform", 1)]
    assert net.code_width == 6


def test_fixed_codes_reach_the_generator():
    """Same z, different codes: different rows; same z and codes: the same rows."""
    torch.manual_seed(0)
    net, _ = build(categories=3, continuous=1)
    net.eval()
    z = torch.randn(4, 2)
    c0 = torch.tensor([[1.0, 0, 0, 0.5]]).expand(4, 4)
    c1 = torch.tensor([[0, 1.0, 0, 0.5]]).expand(4, 4)
    with torch.no_grad():
        a, b, again = net.generate_with_codes(z, c0), net.generate_with_codes(z, c1), net.generate_with_codes(z, c0)
    assert torch.equal(a, again) and (a - b).abs().max() > 1e-4


def test_information_term_trains_q_to_recover_the_codes():
    torch.manual_seed(0)
    net, o = build(categories=3, continuous=0, info_weight=1.0)
    trainer = infogan.Trainer(net, o)
    x = torch.randn(256, 2)
    first = trainer.step(x)["q_accuracy"]
    last = [trainer.step(x[torch.randperm(256)[:64]])["q_accuracy"] for _ in range(300)][-20:]
    assert first < 0.7 and sum(last) / 20 > 0.9


def test_conv_networks_carry_the_papers_fully_connected_layer():
    """fc > 0: D's features and G's input go through an fc-wide layer; fc = 0: plain DCGAN nets."""
    image = DataSpec("test", "image", [1, 8, 8], raw_range=[0.0, 16.0])
    for fc in (0, 12):
        cfg = TrainConfig.make(model="infogan", channels=[4, 8], fc=fc, latent_dim=3, categories=3, continuous=1)
        o = cfg.family.resolve(cfg.options, image)
        net = cfg.family.build(o, image).eval()
        assert o.arch == "conv"
        assert net.body.features == (fc or 8 * 2 * 2)
        assert net.q[0].in_features == net.body.features
        with torch.no_grad():
            x = net.generate_with_codes(torch.randn(5, 3), torch.zeros(5, 4))
            logit, q = net.heads(x)
        assert x.shape == (5, 1, 8, 8) and logit.shape == (5,) and q.shape == (5, 4)
        linears = [m for m in net.netG.modules() if isinstance(m, torch.nn.Linear)]
        assert linears[0].out_features == (fc or 8 * 2 * 2)


def test_info_loss_is_cross_entropy_plus_weighted_gaussian_term():
    net, _ = build(categories=2, continuous=1)
    q = torch.tensor([[2.0, 0.0, 0.3]])
    got = net.info_loss(q, torch.tensor([0]), torch.tensor([[0.5]]), continuous_weight=0.1)
    want = -torch.log_softmax(torch.tensor([2.0, 0.0]), 0)[0] + 0.1 * 0.5 * (0.3 - 0.5) ** 2
    assert torch.isclose(got, want)


def test_information_check_is_minus_the_mutual_information_of_q_on_held_out_rows(monkeypatch):
    """-(H(mean q) - mean H(q)): -log K when Q is sure of each row and the classes share the rows
    evenly, 0 when Q is unsure or puts every row in one class; net left in training mode."""
    net, _ = build(categories=4, continuous=1)
    x_val = torch.zeros(8, 2)
    sure_even = torch.cat([torch.eye(4).repeat(2, 1), torch.zeros(8, 1)], dim=1)
    unsure = torch.cat([torch.full((8, 4), 0.25), torch.zeros(8, 1)], dim=1)
    one_class = torch.cat([torch.eye(4)[[0] * 8], torch.zeros(8, 1)], dim=1)
    half = torch.cat([torch.tensor([[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]]).repeat(4, 1), torch.zeros(8, 1)], dim=1)
    for posterior, want in ((sure_even, -np.log(4)), (unsure, 0.0), (one_class, 0.0), (half, -np.log(2))):
        monkeypatch.setattr(net, "infer", lambda x, p=posterior: p[:len(x)])
        net.train()
        assert infogan.information_check(net, x_val)() == pytest.approx(want, abs=1e-5)
        assert net.training


def test_keep_best_follows_the_data_and_the_codes():
    """Points: the GAN families' fidelity check; images with a categorical code: the information
    check; images with continuous codes only: the last epoch."""
    images = DataSpec("digits", "image", [1, 8, 8], raw_range=[0.0, 16.0])
    x_val = torch.rand(6, 1, 8, 8)
    for categories, data, want in ((3, POINTS, "fidelity_check"), (3, images, "information_check"),
                                   (0, images, None)):
        cfg = TrainConfig.make(model="infogan", hidden=[8], channels=[4], fc=8, latent_dim=2, categories=categories)
        o = cfg.family.resolve(cfg.options, data)
        net = cfg.family.build(o, data)
        check = cfg.family.keep_best(net, o, data, x_val if data is images else torch.randn(6, 2), 0)
        assert (check.__qualname__.split(".")[0] if check else None) == want
        assert cfg.family.min_steps(o, data) == (infogan.IMAGE_STEPS if data is images else
                                                 infogan.low_dim_steps(o, data))


def test_lambda_follows_the_data_unless_given():
    images = DataSpec("digits", "image", [1, 8, 8], raw_range=[0.0, 16.0])
    family = TrainConfig.make(model="infogan").family
    weight = lambda data, **o: family.resolve(TrainConfig.make(model="infogan", **o).options, data).info_weight  # noqa: E731
    assert (weight(images), weight(POINTS)) == (infogan.IMAGE_INFO_WEIGHT, infogan.LOW_DIM_INFO_WEIGHT) == (2.0, 1.0)
    assert weight(images, info_weight=0.5) == weight(POINTS, info_weight=0.5) == 0.5


def test_real_row_weight_is_off_unless_given_and_needs_a_categorical_code():
    images = DataSpec("digits", "image", [1, 8, 8], raw_range=[0.0, 16.0])
    family = TrainConfig.make(model="infogan").family
    weight = lambda data, **o: family.resolve(TrainConfig.make(model="infogan", **o).options, data).real_weight  # noqa: E731
    assert weight(images) == weight(POINTS) == 0.0
    assert weight(images, real_weight=1.0) == 1.0 and weight(POINTS, real_weight=0.5) == 0.5
    assert weight(images, categories=0, continuous=2) == 0.0
    with pytest.raises(ConfigError, match="real_weight=1: .*categories=0"):
        weight(images, categories=0, continuous=2, real_weight=1.0)


def test_shift_images_moves_each_image_by_at_most_its_share():
    torch.manual_seed(0)
    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 12:16, 12:16] = 1.0  # a square whose centre is at (13.5, 13.5)
    moved = infogan.shift_images(x, 1 / 14)
    assert moved.shape == x.shape
    grid = torch.arange(28, dtype=torch.float32)
    mass = moved.sum(dim=(1, 2, 3))
    cy = (moved.sum(dim=(1, 3)) * grid).sum(dim=1) / mass
    cx = (moved.sum(dim=(1, 2)) * grid).sum(dim=1) / mass
    offsets = torch.stack([cy, cx], dim=1) - 13.5
    assert offsets.abs().max() <= 2.0 + 1e-4  # 1/14 of 28 pixels
    assert offsets.abs().max() > 0.5 and offsets.std(dim=0).min() > 0.3  # every image its own shift
    assert torch.allclose(infogan.shift_images(x, 0.0), x, atol=1e-5)
    flat = torch.full((4, 3, 8, 8), 0.25)
    assert torch.allclose(infogan.shift_images(flat, 0.2), flat)  # edges repeated: nothing comes in from outside


def test_real_loss_is_minus_the_information_plus_the_shift_term():
    torch.manual_seed(0)
    net, _ = build(categories=3, continuous=1)
    rows = torch.randn(32, 2)
    q = net.q(net.row_features()(rows))
    p = torch.softmax(q[:, :3], dim=1)
    information = infogan.entropy(p.mean(dim=0)) - infogan.entropy(p).mean()
    assert torch.allclose(net.real_loss(rows, q), -information)  # rows, not images: no shift term
    images = DataSpec("digits", "image", [1, 8, 8], raw_range=[0.0, 16.0])
    cfg = TrainConfig.make(model="infogan", channels=[4], fc=8, latent_dim=2, categories=3, continuous=1)
    o = cfg.family.resolve(cfg.options, images)
    net = cfg.family.build(o, images).eval()  # eval: batch norm reads each image alone
    x = torch.rand(16, 1, 8, 8)
    q = net.q(net.row_features()(x))
    p = torch.softmax(q[:, :3], dim=1)
    information = infogan.entropy(p.mean(dim=0)) - infogan.entropy(p).mean()
    loss = net.real_loss(x, q)
    assert loss > -information + 1e-3  # plus a cross-entropy, at least the posterior's entropy
    loss.backward()
    assert all(w.grad is not None and w.grad.abs().sum() > 0 for w in net.q.parameters())


def test_the_real_row_terms_change_q_only_when_weighted():
    images = DataSpec("digits", "image", [1, 8, 8], raw_range=[0.0, 16.0])
    x = torch.rand(16, 1, 8, 8)
    weights = {}
    for real in (0.0, 1.0):
        cfg = TrainConfig.make(model="infogan", channels=[4], fc=8, latent_dim=2, categories=3, continuous=1,
                               real_weight=real)
        o = cfg.family.resolve(cfg.options, images)
        torch.manual_seed(0)
        net = cfg.family.build(o, images)
        infogan.Trainer(net, o).step(x)
        weights[real] = torch.cat([w.detach().flatten() for w in net.q.parameters()])
    assert not torch.allclose(weights[0.0], weights[1.0])


def test_the_default_budget_on_images_keeps_the_epoch_q_reads_best(tmp_path, monkeypatch):
    """`gen train --model infogan` on images without --epochs: the IMAGE_STEPS budget in full,
    every epoch scored by the information check, the best one kept."""
    import json

    from gen.trainer.train import train

    monkeypatch.setattr(infogan, "IMAGE_STEPS", 60)  # a short budget: 30 epochs of 3 steps (the floor)
    run = train(TrainConfig.make(model="infogan", data="digits", channels=[4], fc=8, latent_dim=2, categories=3,
                                 continuous=1, batch_size=512, seed=0, device="cpu", quiet=True,
                                 out=str(tmp_path / "run")))
    stopping = json.loads((run / "run.json").read_text())["metrics"]["stopping"]
    scores = [json.loads(line)["val_score"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert stopping["steps_per_epoch"] == 3 and stopping["max_epochs"] == len(scores) == 30
    assert "60 steps" in stopping["rule"]
    assert stopping["kept_epoch"] == scores.index(min(scores)) + 1
    assert all(-np.log(3) - 1e-6 <= v <= 1e-6 for v in scores) and min(scores) < max(scores)


def test_needs_a_code():
    cfg = TrainConfig.make(model="infogan", categories=0, continuous=0)
    with pytest.raises(ConfigError, match="needs at least one code"):
        cfg.family.resolve(cfg.options, POINTS)
    with pytest.raises(ConfigError, match="categories=1"):
        cfg.family.resolve(TrainConfig.make(model="infogan", categories=1).options, POINTS)


def test_bundle_serves_fixed_codes_and_infers_them(bundles, digits_rows):
    from gen.runtime import load

    model = load(bundles["infogan"])
    codes = {c.name: c for c in model.manifest.latent.codes}
    assert codes["cat"].kind == "categorical" and codes["cat"].size == 3 and codes["c1"].kind == "uniform"
    free = model.sample(32, seed=5)
    held = model.sample(32, seed=5, codes={"cat": 1, "c1": 0.5})
    again = model.sample(32, seed=5, codes={"cat": 1, "c1": 0.5})
    assert held.shape == free.shape and np.array_equal(held, again) and not np.array_equal(held, free)
    posterior = model.encode(digits_rows[:10])
    assert posterior.shape == (10, 4)
    assert np.allclose(posterior[:, :3].sum(axis=1), 1.0, atol=1e-5) and (posterior[:, :3] >= 0).all()
    for bad, message in (({"cat": 3}, "class index in 0..2"), ({"nope": 1}, "unknown code 'nope'"),
                         ({"c1": "x"}, "expected a number")):
        with pytest.raises(InputError, match=message):
            model.sample(4, codes=bad)


def test_codes_are_refused_by_bundles_without_them(bundles):
    from gen.runtime import load

    with pytest.raises(InputError, match="no latent codes"):
        load(bundles["gan"]).sample(4, codes={"cat": 1})


def test_augment_is_affine_on_images_none_on_points_and_refused_there():
    images = DataSpec("digits", "image", [1, 8, 8], raw_range=[0.0, 16.0])
    family = TrainConfig.make(model="infogan").family
    augment = lambda data, **o: family.resolve(TrainConfig.make(model="infogan", **o).options, data).augment  # noqa: E731
    assert (augment(images), augment(POINTS)) == ("affine", "none")
    assert augment(images, augment="none") == "none"
    assert augment(images, categories=0, continuous=2) == "none"  # no categorical code to read
    with pytest.raises(ConfigError, match=r"augment=affine moves images.*shape \[2\]"):
        augment(POINTS, augment="affine")


def _centres(images):
    """(row, column) of each image's centre of mass, from the image's centre."""
    h, w = images.shape[-2:]
    mass = images.sum(dim=(1, 2, 3))
    rows = (images.sum(dim=(1, 3)) * torch.arange(h, dtype=torch.float32)).sum(1) / mass
    cols = (images.sum(dim=(1, 2)) * torch.arange(w, dtype=torch.float32)).sum(1) / mass
    return torch.stack([rows - (h - 1) / 2, cols - (w - 1) / 2], dim=1)


def test_move_images_rotates_and_zooms_about_the_centre_within_bounds():
    torch.manual_seed(0)
    x = torch.zeros(256, 1, 29, 29)
    x[:, :, 13:16, 21:24] = 1.0  # a square centred 8 pixels right of the centre (14, 14)
    turned = _centres(infogan.move_images(x, 0.0, rotation=0.3))
    radius, angle = turned.norm(dim=1), torch.atan2(turned[:, 0], turned[:, 1])
    assert torch.allclose(radius, torch.full_like(radius, 8.0), atol=0.35)  # a rotation keeps the distance
    assert angle.abs().max() <= 0.3 + 0.03 and angle.abs().max() > 0.2 and angle.std() > 0.1
    zoomed = _centres(infogan.move_images(x, 0.0, scale=0.1))
    assert zoomed[:, 0].abs().max() < 0.05  # on the horizontal line through the centre
    assert 8 * 0.9 - 0.3 <= zoomed[:, 1].min() and zoomed[:, 1].max() <= 8 * 1.1 + 0.3
    assert zoomed[:, 1].max() - zoomed[:, 1].min() > 1.0
    assert torch.allclose(infogan.move_images(x, 0.0), x, atol=1e-5)  # nothing asked: the images as given


def test_move_images_at_its_bounds_zooms_in_turns_without_shear_and_shifts_the_grid(monkeypatch):
    """Every draw at its upper end (torch.rand = 1): a zoom of 1 + scale magnifies, a turn of
    `rotation` keeps distances on a non-square image, the shift moves the grid by `share`."""
    monkeypatch.setattr(torch, "rand", lambda *shape, **kw: torch.ones(*shape, **kw))
    x = torch.zeros(2, 1, 21, 41)
    x[:, :, 9:12, 27:30] = 1.0  # centred 8 pixels right of the centre (10, 20)
    zoomed = _centres(infogan.move_images(x, 0.0, scale=0.1))
    assert torch.allclose(zoomed, torch.tensor([0.0, 8.8]).expand(2, 2), atol=0.15)  # 8 x 1.1, not 8 / 1.1
    turned = _centres(infogan.move_images(x, 0.0, rotation=0.3))
    assert torch.allclose(turned, torch.tensor([-8 * np.sin(0.3), 8 * np.cos(0.3)]).float().expand(2, 2), atol=0.2)
    shifted = _centres(infogan.move_images(x, 0.1))  # the grid moves by 10% of each side: the content back
    assert torch.allclose(shifted, torch.tensor([-2.1, 8 - 4.1]).expand(2, 2), atol=0.2)


def test_the_class_term_reads_the_moved_copies_when_given():
    net, _ = build(categories=3, continuous=1)
    index, cont = torch.tensor([0, 1, 2, 0]), torch.zeros(4, 1)
    wrong = torch.cat([F.one_hot((index + 1) % 3, 3) * 20.0, torch.zeros(4, 1)], dim=1)
    right = torch.cat([F.one_hot(index, 3) * 20.0, torch.ones(4, 1)], dim=1)
    assert net.info_loss(wrong, index, cont, 0.1) > 10  # the class from q itself
    assert net.info_loss(wrong, index, cont, 0.1, q_class=right) < 1e-6  # the class from the moved copies,
    assert torch.isclose(net.info_loss(right, index, cont, 0.1, q_class=wrong),  # the continuous values from q
                         net.info_loss(wrong, index, cont, 0.1, q_class=wrong) + 0.1 * 0.5)


def test_augment_changes_what_q_learns_on_images_only_when_on():
    images = DataSpec("digits", "image", [1, 8, 8], raw_range=[0.0, 16.0])
    x = torch.rand(16, 1, 8, 8)
    weights = {}
    for augment in ("none", "affine"):
        cfg = TrainConfig.make(model="infogan", channels=[4], fc=8, latent_dim=2, categories=3, continuous=1,
                               augment=augment)
        o = cfg.family.resolve(cfg.options, images)
        torch.manual_seed(0)
        net = cfg.family.build(o, images)
        trainer = infogan.Trainer(net, o)
        assert (trainer.move(torch.rand(2, 1, 8, 8)) is None) == (augment == "none")
        torch.manual_seed(1)
        trainer.step(x)
        weights[augment] = torch.cat([w.detach().flatten() for w in net.q.parameters()])
    assert not torch.allclose(weights["none"], weights["affine"])


def test_with_augment_the_class_term_of_the_generator_step_reaches_g_through_the_moved_copies(monkeypatch):
    images = DataSpec("digits", "image", [1, 8, 8], raw_range=[0.0, 16.0])
    cfg = TrainConfig.make(model="infogan", channels=[4], fc=8, latent_dim=2, categories=3, continuous=1)
    o = cfg.family.resolve(cfg.options, images)
    assert o.augment == "affine"
    torch.manual_seed(0)
    net = cfg.family.build(o, images)
    trainer = infogan.Trainer(net, o)
    flowed, calls = [], []
    move = trainer.move

    def moved_with_a_hook(fake):
        out = move(fake)
        out.register_hook(lambda g: flowed.append(g))  # called when a loss's gradient passes through them
        return out

    monkeypatch.setattr(trainer, "move", moved_with_a_hook)
    info_loss = net.info_loss
    monkeypatch.setattr(net, "info_loss", lambda q, index, cont, w, q_class=None: calls.append((q, q_class))
                        or info_loss(q, index, cont, w, q_class))
    trainer.step(torch.rand(16, 1, 8, 8))
    (q_d, class_d), (q_g, class_g) = calls  # the D/Q step's, then G's
    assert class_d is not None and class_g is not None
    # only G's step sends a gradient back through the moved copies (D's reads them detached)
    assert len(flowed) == 1 and flowed[0].abs().sum() > 0
    assert not torch.allclose(class_g[:, :3], q_g[:, :3])  # from the moved copies, not the images as drawn


def test_augment_without_a_categorical_code_is_refused():
    images = DataSpec("digits", "image", [1, 8, 8], raw_range=[0.0, 16.0])
    cfg = TrainConfig.make(model="infogan", categories=0, continuous=2, augment="affine")
    with pytest.raises(ConfigError, match="augment=affine: .*categories=0"):
        cfg.family.resolve(cfg.options, images)
