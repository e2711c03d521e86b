"""The convolutional autoencoder (conv-ae): its sizes come back exactly for any (C, H, W), its
score is the mean of its per-pixel errors, and a model trained on non-8x8 images exports with
parity."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gen.runtime import load
from gen.runtime.errors import ConfigError
from gen.runtime.manifest import DataSpec, PreprocessSpec
from gen.trainer.config import TrainConfig
from gen.trainer.models import conv_ae
from gen.trainer.train import train
from gen.trainer import registry
from tests.pooling import smoothed_energy


def images(shape) -> DataSpec:
    return DataSpec("test", "image", list(shape), preprocessing=PreprocessSpec(0.0, 1.0, [0.0, 1.0]))


def net(shape, **options):
    cfg = TrainConfig.make(model="conv-ae", **options)
    data = images(shape)
    options = cfg.family.resolve(cfg.options, data)
    return cfg.family.build(options, data), options


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 7, 10), (2, 1, 5), (1, 13, 6)])
@pytest.mark.parametrize("kernel", [3, 4])
def test_decoder_returns_the_encoders_input_size(shape, kernel):
    ae, _ = net(shape, channels=[4, 6, 5], latent_dim=3, kernel=kernel)
    x = torch.rand(2, *shape)
    z = ae.encode(x)
    assert z.shape == (2, 3)
    assert ae.decode(z).shape == (2, *shape)
    # every transposed convolution undoes its convolution's size, layer by layer
    h = x
    seen = [tuple(h.shape[2:])]
    for conv in ae.encoder_convs:
        h = F.relu(conv(h))
        seen.append(tuple(h.shape[2:]))
    assert seen == ae.sizes
    for i in reversed(range(len(ae.decoder_convs))):
        h = ae.decoder_convs[i](h)
        assert tuple(h.shape[2:]) == seen[i]


def test_mnist_sizes_halve_rounding_up_and_come_back():
    ae, _ = net((1, 28, 28), channels=[8, 8, 8], latent_dim=2)
    assert ae.sizes == [(28, 28), (14, 14), (7, 7), (4, 4)]
    assert [c.output_padding for c in ae.decoder_convs] == [(1, 1), (1, 1), (0, 0)]  # 14->28, 7->14, 4->7
    assert [c.stride for c in ae.encoder_convs] == [(2, 2)] * 3


def test_reconstruction_is_in_unit_range_and_score_is_mean_of_errors():
    ae, _ = net((3, 7, 10), channels=[4, 8], latent_dim=2, pool="mean")
    x = torch.rand(5, 3, 7, 10)
    recon = ae(x)
    assert recon.shape == x.shape and recon.min() >= 0 and recon.max() <= 1  # sigmoid for [0, 1] data
    score, errors = ae.score_and_errors(x)
    assert score.shape == (5,) and errors.shape == (5, 3, 7, 10)
    torch.testing.assert_close(errors, (recon - x) ** 2)
    torch.testing.assert_close(score, errors.mean(dim=(1, 2, 3)))
    torch.testing.assert_close(ae.score(x.flatten(1)), score)  # flat rows are reshaped


def test_graphs_declare_the_errors_map_after_the_score():
    ae, _ = net((1, 12, 10), channels=[4], latent_dim=2)
    spec = images((1, 12, 10))
    score = registry.get("conv-ae").graphs(ae, spec)["score"]
    assert [(p.name, p.shape) for p in score.outputs] == [("score", []), ("errors", [1, 12, 10])]


def test_loss_auto_resolves_by_range_and_options_are_checked():
    assert net((1, 8, 8))[1].loss == "bce"
    raw = DataSpec("test", "image", [1, 8, 8])  # not scaled to [0, 1]
    family = TrainConfig.make(model="conv-ae").family
    assert family.resolve(TrainConfig.make(model="conv-ae").options, raw).loss == "mse"
    with pytest.raises(ConfigError, match=r"loss=bce needs data scaled to \[0, 1\]"):
        family.resolve(TrainConfig.make(model="conv-ae", loss="bce").options, raw)
    with pytest.raises(ConfigError, match=r"channels=\[\]: conv-ae needs at least one convolution"):
        net((1, 8, 8), channels=[])
    with pytest.raises(ConfigError, match=r"kernel=0: expected an integer >= 1"):
        TrainConfig.make(model="conv-ae", kernel=0)


def test_bce_and_mse_losses():
    ae, options = net((1, 6, 5), channels=[3], latent_dim=2)
    x = torch.rand(4, 1, 6, 5)
    trainer = conv_ae.Trainer(ae, options)
    logits = ae.decode_logits(ae.encode(x))
    torch.testing.assert_close(trainer.loss(x), F.binary_cross_entropy_with_logits(logits, x))
    ae, options = net((1, 6, 5), channels=[3], latent_dim=2, loss="mse")
    torch.testing.assert_close(conv_ae.Trainer(ae, options).loss(x), F.mse_loss(ae(x), x))


def test_trainer_reduces_reconstruction_loss():
    torch.manual_seed(0)
    ae, options = net((1, 8, 8), channels=[8], latent_dim=4, lr=1e-2, loss="mse")
    trainer = conv_ae.Trainer(ae, options)
    x = (torch.rand(32, 4) @ torch.rand(4, 64)).reshape(32, 1, 8, 8) / 4  # rank-4 images in [0, 1]
    first = trainer.step(x)["loss"]
    for _ in range(150):
        last = trainer.step(x)["loss"]
    assert last < 0.2 * first


def test_non_image_data_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="model conv-ae trains on image data; ring8 holds points data"):
        train(TrainConfig.make(model="conv-ae", data="ring8", epochs=1, out=str(tmp_path / "run"), quiet=True))
    with pytest.raises(ConfigError, match=r"conv-ae needs \(C, H, W\) images; test rows have shape \[12\]"):
        TrainConfig.make(model="conv-ae").family.resolve(TrainConfig.make(model="conv-ae").options,
                                                         DataSpec("test", "tabular", [12]))


def test_trained_on_odd_sized_images_exports_with_parity(tmp_path):
    from gen.exporters import export_run

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(120, 1, 12, 10)).astype(np.float32)
    np.save(tmp_path / "images.npy", x)
    cfg = TrainConfig.make(model="conv-ae", data=str(tmp_path / "images.npy"), epochs=2, channels=[4, 8],
                           latent_dim=3, threads=1, device="cpu", quiet=True, out=str(tmp_path / "run"))
    manifest = export_run(train(cfg), tmp_path / "bundle")
    assert manifest.data.shape == [1, 12, 10] and manifest.scoring.errors == "errors"
    for role, p in manifest.parity.graphs.items():
        assert p.max_abs_diff <= manifest.parity.tolerance * max(1.0, p.max_abs_output), role
    model = load(tmp_path / "bundle", device="cpu")
    rows = x[:7]
    assert model.encode(rows).shape == (7, 3)
    recon = model.reconstruct(rows)
    assert recon.shape == (7, 1, 12, 10) and recon.min() >= 0 and recon.max() <= 255  # raw units
    errors = model.errors(rows)
    assert errors.shape == (7, 1, 12, 10)
    np.testing.assert_allclose(model.score(rows), smoothed_energy(errors), rtol=1e-4)  # pool=auto: smooth
    assert model.sample(5, seed=1).shape == (5, 1, 12, 10)
