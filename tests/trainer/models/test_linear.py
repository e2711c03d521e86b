"""PCA as a linear network (pca, linear-ae), checked against scikit-learn's PCA and against
each other: the learned linear autoencoder spans the principal subspace."""

import numpy as np
import pytest
import torch
from scipy.linalg import subspace_angles
from sklearn.decomposition import PCA as SkPCA

from gen.runtime import load
from gen.runtime.errors import ConfigError
from gen.runtime.manifest import DataSpec
from gen.trainer.config import TrainConfig
from gen.trainer.models import linear
from tests.pooling import smoothed_energy

TABLE = DataSpec("test", "tabular", [12])


def net(model, data=TABLE, **options):
    cfg = TrainConfig.make(model=model, **options)
    options = cfg.family.resolve(cfg.options, data)
    return cfg.family.build(options, data), options


def low_rank_rows(n=400, d=12, scales=(3.0, 2.0, 1.5), noise=0.05, seed=0) -> np.ndarray:
    """Rows near a rank-len(scales) affine subspace with well-separated variances."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(d, len(scales))))[0].T
    codes = rng.normal(size=(n, len(scales))) * np.array(scales)
    return (codes @ basis + rng.normal(size=d) + noise * rng.normal(size=(n, d))).astype(np.float32)


def fit_pca(x: np.ndarray, k: int) -> linear.PCA:
    pca, options = net("pca", DataSpec("test", "tabular", [x.shape[1]]), latent_dim=k)
    linear.PCATrainer(pca, options).fit(torch.from_numpy(x))
    return pca.eval()


def test_pca_matches_scikit_learn():
    x = low_rank_rows(scales=(3.0, 2.0, 1.5, 1.0, 0.5))
    ours, theirs = fit_pca(x, 4), SkPCA(n_components=4).fit(x.astype(np.float64))
    components = ours.encoder.weight.detach().double().numpy()
    signs = np.sign((components * theirs.components_).sum(axis=1))
    np.testing.assert_allclose(components, signs[:, None] * theirs.components_, atol=1e-5)
    np.testing.assert_allclose(ours.explained_variance.numpy(), theirs.explained_variance_, rtol=1e-6)
    np.testing.assert_allclose(ours.explained_variance_ratio.numpy(), theirs.explained_variance_ratio_, rtol=1e-6)
    np.testing.assert_allclose(ours.decoder.bias.detach().numpy(), theirs.mean_, atol=1e-5)
    with torch.no_grad():
        recon = ours(torch.from_numpy(x)).double().numpy()
    np.testing.assert_allclose(recon, theirs.inverse_transform(theirs.transform(x)), atol=1e-4)


def test_pca_is_a_linear_network_with_tied_orthonormal_weights():
    pca = fit_pca(low_rank_rows(), 3)
    w_e, w_d = pca.encoder.weight.detach(), pca.decoder.weight.detach()
    torch.testing.assert_close(w_d, w_e.T)
    torch.testing.assert_close(w_e @ w_e.T, torch.eye(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(pca.encoder.bias.detach(), -w_e @ pca.decoder.bias.detach())
    x = torch.randn(5, 12)
    torch.testing.assert_close(pca.encode(x), (x - pca.decoder.bias) @ w_e.T, atol=1e-5, rtol=0)


def test_pca_signs_do_not_depend_on_row_order():
    x = low_rank_rows()
    a, b = fit_pca(x, 3), fit_pca(x[np.random.default_rng(1).permutation(len(x))], 3)
    torch.testing.assert_close(a.encoder.weight, b.encoder.weight, atol=1e-5, rtol=0)


def test_pca_refuses_more_components_than_rows_or_features():
    with pytest.raises(ConfigError, match=r"^latent_dim=13: PCA keeps at most .* = 12 components; "
                                          r"use latent_dim <= 12$"):
        fit_pca(low_rank_rows(), 13)
    with pytest.raises(ConfigError, match=r"min\(5, 12\) = 5 components"):
        fit_pca(low_rank_rows(n=5), 6)


def test_learned_linear_autoencoder_spans_the_principal_subspace():
    x = low_rank_rows()
    torch.manual_seed(0)
    ae, options = net("linear-ae", latent_dim=3, lr=1e-2)
    trainer = linear.Trainer(ae, options)
    rows, rng = torch.from_numpy(x), np.random.default_rng(0)
    for _ in range(300):  # epochs of batches of 50; 150 left up to 4 degrees with other seeds
        for batch in np.array_split(rng.permutation(len(x)), 8):
            trainer.step(rows[batch])
    decoder_columns = ae.decoder.weight.detach().double().numpy()  # (features, latent): spans the codes' image
    components = fit_pca(x, 3).encoder.weight.detach().double().numpy().T
    angles = np.degrees(subspace_angles(decoder_columns, components))
    assert angles.max() < 1.0, angles


def test_pca_bundle_holds_its_fitted_facts(bundles, digits_rows):
    model = load(bundles["pca"], device="cpu")
    fitted, prep = model.manifest.fitted, model.manifest.data.preprocessing
    components, mean = np.array(fitted["components"]), np.array(fitted["mean"])
    variance, ratio = np.array(fitted["explained_variance"]), np.array(fitted["explained_variance_ratio"])
    assert components.shape == (4, 64) and mean.shape == (64,) and variance.shape == ratio.shape == (4,)
    np.testing.assert_allclose(components @ components.T, np.eye(4), atol=1e-5)
    assert (np.diff(variance) <= 0).all() and 0 < ratio.sum() < 1
    assert model.manifest.metrics.final["explained_variance_ratio_sum"] == pytest.approx(ratio.sum())
    # the encoder graph is the projection onto the components, in model space
    x = digits_rows[:20]
    codes = ((x - np.asarray(prep.offset)) / np.asarray(prep.scale) - mean) @ components.T
    np.testing.assert_allclose(model.encode(x), codes, atol=1e-4)
    # the fitted Gaussian prior of the codes: independent, with the explained variances
    np.testing.assert_allclose(np.diag(model.manifest.latent.cov), variance, rtol=1e-4)


@pytest.mark.parametrize("name", ["pca", "linear-ae"])
def test_score_is_the_smoothed_energy_of_the_per_feature_errors(name, bundles, digits_rows):
    model = load(bundles[name], device="cpu")
    assert model.manifest.scoring.errors == "errors"
    x = digits_rows[:30]
    errors = model.run_batched("score", {"x": x.reshape(30, *model.shape)}, "errors")
    assert errors.shape == (30, *model.shape)
    np.testing.assert_allclose(model.score(x), smoothed_energy(errors), rtol=1e-4)  # images: pool=auto is smooth
    # squared errors in model space: raw units over the scale
    scale = np.asarray(model.manifest.data.preprocessing.scale)
    recon = model.reconstruct(x).reshape(30, -1)
    np.testing.assert_allclose(errors.reshape(30, -1), ((recon - x) / scale) ** 2, rtol=1e-3, atol=1e-6)
