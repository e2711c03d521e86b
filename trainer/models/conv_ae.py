"""Convolutional autoencoder from the lecture: strided convolutions down to a linear code,
transposed convolutions back up, for images of any (C, H, W).

Each entry of `channels` is one stride-2 convolution (ReLU after it), halving the height and
width (rounding up); a linear layer maps the flattened feature map to the code. The decoder
mirrors it: a linear layer and a reshape, then one stride-2 transposed convolution per entry,
each with the output padding that brings the map back to exactly the size the matching
convolution took in (28 -> 14 -> 7 -> 4 and back 4 -> 7 -> 14 -> 28), so odd and non-square
images come back in their own shape.

Trained, scored and sampled as the MLP autoencoder (`ae`): BCE for data in [0, 1], MSE
otherwise; the score is the per-row reconstruction error in model space (the per-pixel squared
errors pooled by `pool`: by default their smoothed energy), and the score graph also returns the per-pixel squared errors (output `errors`, the data's shape);
sampling decodes codes drawn from a Gaussian fitted to the training codes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from gen.runtime.errors import ConfigError
from gen.runtime.manifest import AncestralSampler, DataSpec

from ..options import Interval, ListOf, option
from ..registry import Family, Preset, register
from .autoencoder import LOSS, LOSS_HELP, Trainer
from .base import (LatentScores, Reconstruction, fit_latent_scores, reconstruction_graphs, error_pool,
                   pool_option, resolve_by_range, resolve_score, score_kind, score_option)

STRIDE = 2


@dataclass
class Options:
    channels: list[int] = option(None, "Output channels of each stride-2 convolution of the encoder "
                                 "(the decoder mirrors them with transposed convolutions). Default: from the "
                                 "image size, 32, 64, 128, 256 (then 256 again) halving the map until its smaller side is at "
                                 "most 4, and at least two convolutions (8x8: 32,64; 28x28: 32,64,128).",
                                 ListOf(Interval(int, 1, None)), optional=True)
    latent_dim: int = option(16, "Code size (a linear code layer after the convolutions).", Interval(int, 1, None))
    kernel: int = option(3, "Kernel size of every (transposed) convolution; padding kernel // 2.",
                         Interval(int, 1, None))
    loss: str = option("auto", LOSS_HELP, LOSS)
    lr: float = option(1e-3, "Adam learning rate.", Interval(float, 0, None, "neither"))
    score: str = score_option()
    pool: str = pool_option()


def conv_size(n: int, kernel: int) -> int:
    """Height or width after a stride-2 convolution padded by kernel // 2 (ceil(n / 2) for odd kernels)."""
    return (n + 2 * (kernel // 2) - kernel) // STRIDE + 1


def channels_for(size, kernel: int) -> list[int]:
    """The default convolutions for images of (H, W) `size`: 32, 64, 128, 256, 256, ... channels, one per
    stride-2 halving until the smaller side is at most 4 (at least two, at most six)."""
    side, layers = min(size), 0
    while layers < 6 and (layers < 2 or side > 4) and conv_size(side, kernel) >= 1 and side > 1:
        side, layers = conv_size(side, kernel), layers + 1
    return [min(256, 32 * 2 ** i) for i in range(max(1, layers))]


def output_padding(n_in: int, target: int, kernel: int) -> int:
    """The transposed convolution's output padding that turns `n_in` back into `target`."""
    pad = target - ((n_in - 1) * STRIDE - 2 * (kernel // 2) + kernel)
    assert 0 <= pad < STRIDE, (n_in, target, kernel)  # holds for every size and kernel: see conv_size
    return pad


class ConvAutoEncoder(Reconstruction, nn.Module):
    def __init__(self, shape: list[int], channels: list[int], latent_dim: int, kernel: int, unit_range: bool,
                 score: str = "recon", n_fit: int = 1, pool: str = "mean"):
        super().__init__()
        self.error_pool = error_pool(pool, shape)
        # Only a latent score keeps buffers, so run folders from before `--score` (recon) load as they were.
        self.latent_scores = LatentScores(score, latent_dim, n_fit) if score != "recon" else None
        self.shape, self.latent_dim, self.unit_range = list(shape), latent_dim, unit_range
        c, h, w = shape
        # sizes[i]: the (H, W) that convolution i takes in; sizes[-1] what the last one returns.
        self.sizes = [(h, w)]
        for _ in channels:
            h, w = conv_size(h, kernel), conv_size(w, kernel)
            self.sizes.append((h, w))
        widths = [c, *channels]
        self.feature_shape = [channels[-1], h, w]
        flat = channels[-1] * h * w
        self.encoder_convs = nn.ModuleList(nn.Conv2d(a, b, kernel, STRIDE, kernel // 2)
                                           for a, b in zip(widths[:-1], widths[1:]))
        self.code = nn.Linear(flat, latent_dim)
        self.expand = nn.Linear(latent_dim, flat)
        # Transposed convolution i undoes convolution i: widths[i + 1] -> widths[i], sizes[i + 1] -> sizes[i].
        self.decoder_convs = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], kernel, STRIDE, kernel // 2,
                               output_padding=tuple(output_padding(a, b, kernel)
                                                    for a, b in zip(self.sizes[i + 1], self.sizes[i])))
            for i in range(len(channels)))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        h = x.reshape(-1, *self.shape)
        for conv in self.encoder_convs:
            h = F.relu(conv(h))
        return self.code(h.flatten(1))  # a linear code, as the deep MLP autoencoder's

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder before its output nonlinearity, in the data's shape."""
        h = F.relu(self.expand(z)).reshape(-1, *self.feature_shape)
        for i in reversed(range(len(self.decoder_convs))):
            h = self.decoder_convs[i](h)
            if i > 0:
                h = F.relu(h)
        return h

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        logits = self.decode_logits(z)
        return torch.sigmoid(logits) if self.unit_range else logits



def resolve(options, data: DataSpec):
    """loss=auto -> bce for data in [0, 1], else mse; rows that are not (C, H, W) images and an
    empty `channels` are refused."""
    if len(data.shape) != 3:
        raise ConfigError(f"model conv-ae needs (C, H, W) images; {data.source} rows have shape {list(data.shape)}")
    if options.channels is None:
        options = replace(options, channels=channels_for(data.shape[1:], options.kernel))
    if not options.channels:
        raise ConfigError("channels=[]: conv-ae needs at least one convolution (for none, use model ae)")
    return resolve_score(resolve_by_range(options, data, "loss", "bce", "mse"), data)




register(Family(
    name="conv-ae",
    description="Convolutional autoencoder: strided convolutions down, transposed convolutions up; "
                "scores by reconstruction error.",
    options=Options,
    build=lambda o, data: ConvAutoEncoder(data.shape, o.channels, o.latent_dim, o.kernel, data.unit_range, o.score,
                                          data.n_train, o.pool),
    trainer=Trainer, graphs=reconstruction_graphs, capabilities=("sample", "reconstruct", "encode", "score"),
    score_kind="reconstruction_mse", sampler=lambda net, o: AncestralSampler(graph="decoder"),
    latent_prior="gaussian", stops_early=True, variant=lambda o: f"conv {'-'.join(map(str, o.channels))}, {o.loss} loss",
    resolve=resolve, data_kinds=("image",), score_kind_of=score_kind,
    fit_score=lambda net, o, x_fit, x_cal, rng: fit_latent_scores(net, x_fit, x_cal, rng),
    test=Preset(25, {"channels": [8, 16], "latent_dim": 4}),
    # Chosen on MNIST-5k one-class AUROC (28x28: a third stride-2 layer, down to 4x4, helps there;
    # on 8x8 digits it squeezes the map to 1x1 and [32, 64] with latent_dim 16 does better).
    demo=None, bench=Preset(None),
))
