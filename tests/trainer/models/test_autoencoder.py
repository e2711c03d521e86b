"""The maths of the MLP autoencoders (ae-naive, ae, ae-tied), checked against their definition."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gen.runtime.errors import ConfigError
from gen.runtime.manifest import DataSpec, PreprocessSpec
from gen.trainer.config import TrainConfig
from gen.trainer.models import autoencoder
from gen.trainer import registry
from tests.pooling import reference_score

IMAGES = DataSpec("test", "image", [1, 3, 4], preprocessing=PreprocessSpec(0.0, 1.0, [0.0, 1.0]))
TABLE = DataSpec("test", "tabular", [12])


def net(model, data=TABLE, **options):
    cfg = TrainConfig.make(model=model, **options)
    options = cfg.family.resolve(cfg.options, data)
    return cfg.family.build(options, data), options


def test_naive_autoencoder_has_one_relu_code_layer():
    ae, _ = net("ae-naive", latent_dim=5)
    assert [tuple(layer.weight.shape) for layer in ae.encoder_layers] == [(5, 12)]
    assert ae.encode(torch.randn(3, 12)).min() >= 0


def test_naive_autoencoder_has_no_hidden_option():
    with pytest.raises(ConfigError, match="hidden: does not apply to family 'ae-naive' \\(it is an option of ae, ae-tied"):
        TrainConfig.make(model="ae-naive", hidden=[8])


def test_standard_autoencoder_is_symmetric():
    ae, _ = net("ae", hidden=[10, 8], latent_dim=3)
    assert [tuple(layer.weight.shape) for layer in ae.encoder_layers] == [(10, 12), (8, 10), (3, 8)]
    assert [tuple(layer.weight.shape) for layer in ae.decoder_layers] == [(12, 10), (10, 8), (8, 3)]


def test_tied_autoencoder_decodes_with_transposed_encoder_weights():
    tied, _ = net("ae-tied", hidden=[6], latent_dim=3)
    untied, _ = net("ae", hidden=[6], latent_dim=3)
    assert sum(p.numel() for p in tied.parameters()) < sum(p.numel() for p in untied.parameters())
    z = torch.randn(4, 3)
    w1, w2 = tied.encoder_layers[0].weight, tied.encoder_layers[1].weight
    b0, b1 = tied.decoder_bias[0], tied.decoder_bias[1]
    expected = F.relu(z @ w2 + b1) @ w1 + b0
    torch.testing.assert_close(tied.decode(z), expected)
    with torch.no_grad():
        w1.mul_(2.0)  # changing the encoder changes the decoder
    assert not torch.allclose(tied.decode(z), expected)


def test_images_keep_their_shape_and_score_is_mean_squared_error():
    ae, _ = net("ae", IMAGES, hidden=[8], latent_dim=2, pool="mean")
    x = torch.rand(5, 1, 3, 4)
    recon = ae(x)
    assert recon.shape == (5, 1, 3, 4) and recon.min() >= 0 and recon.max() <= 1  # sigmoid for [0, 1] data
    torch.testing.assert_close(ae.score(x), ((recon - x) ** 2).flatten(1).mean(1))


def test_loss_auto_resolves_by_data_and_bce_needs_unit_range():
    assert net("ae", IMAGES)[1].loss == "bce"
    assert net("ae", TABLE)[1].loss == "mse"
    with pytest.raises(ConfigError, match=r"loss=bce needs data scaled to \[0, 1\]"):
        net("ae", TABLE, loss="bce")


def test_trainer_reduces_reconstruction_loss():
    torch.manual_seed(0)
    ae, options = net("ae", TABLE, hidden=[16], latent_dim=4, lr=1e-2)
    trainer = autoencoder.Trainer(ae, options)
    x = torch.randn(64, 4) @ torch.randn(4, 12)  # rank-4 data: a 4-code AE can fit it
    first = trainer.step(x)["loss"]
    for _ in range(200):
        last = trainer.step(x)["loss"]
    assert last < 0.2 * first


def test_mse_on_image_data_fits_what_the_decoder_returns():
    """loss=mse on data in [0, 1] compares the sigmoid output (what score, reconstruct and sample
    use) with the data, not the logits."""
    ae, options = net("ae", IMAGES, hidden=[8], latent_dim=2, loss="mse")
    trainer = autoencoder.Trainer(ae, options)
    x = torch.rand(6, 1, 3, 4)
    torch.testing.assert_close(trainer.loss(x), F.mse_loss(ae(x), x))


@pytest.mark.parametrize("model", ["ae-naive", "ae", "ae-tied"])
@pytest.mark.parametrize("pool", ["auto", "mean", "smooth"])
def test_score_graph_returns_per_feature_errors_that_pool_to_the_score(model, pool):
    ae, options = net(model, IMAGES, latent_dim=2, pool=pool)
    assert options.pool == ("smooth" if pool == "auto" else pool)  # images: auto is smooth
    x = torch.rand(5, 1, 3, 4)
    score, errors = ae.score_and_errors(x)
    assert errors.shape == x.shape
    torch.testing.assert_close(errors, (ae(x) - x) ** 2)
    want = reference_score(errors.detach().numpy(), options.pool)
    np.testing.assert_allclose(score.detach().numpy(), want, rtol=1e-5)
    torch.testing.assert_close(score, ae.score(x))
    outputs = registry.get(model).graphs(ae, IMAGES)["score"].outputs
    assert [(p.name, p.shape) for p in outputs] == [("score", []), ("errors", [1, 3, 4])]


def test_pool_smooth_is_refused_on_tables_and_auto_is_the_mean_there():
    with pytest.raises(ConfigError, match="pool=smooth needs \\(C, H, W\\) images; these rows have shape \\[12\\]"):
        net("ae", TABLE, pool="smooth")
    assert net("ae", TABLE)[1].pool == "mean" and net("ae", TABLE)[0].error_pool is None
