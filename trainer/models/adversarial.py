"""Building blocks shared by the GAN families (gan, dcgan, wgan, wgan-gp, infogan, veegan,
adagan): generator and discriminator networks, the DCGAN initialisation, the discriminator
loss, the gradient penalty, and the graphs every GAN exports.

Networks work in model space: images in [0, 1], tabular rows z-scored, 2-D points as they
are. A generator's output layer matches the data: for data in [0, 1] a sigmoid (MLP) or
DCGAN's tanh mapped onto [0, 1] ((tanh + 1) / 2, the same function as DCGAN's [-1, 1]
output seen through the data's scaling); otherwise linear.

Every GAN exports its discriminator (or critic) as x -> one value per row, which the
runtime's discriminator-guided samplers (`gen sample --refine drs|mh`) read after the
calibration that training stores in the manifest (`gen.trainer.train`, RefineSpec).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gen.runtime.errors import ConfigError
from gen.runtime.manifest import DataSpec

from ..graphs import GraphDef, Method, Port, data_port
from ..options import Choice, Interval, ListOf, option
from .base import is_image, mlp
from .conv_ae import conv_size, output_padding

KERNEL = 5  # DCGAN's 5x5 kernels; stride 2 with padding 2 halves a side, rounding up
STRIDE = 2
LEAK = 0.2

ARCH = Choice("auto", "mlp", "conv")
ARCH_HELP = "Networks: conv (DCGAN-style, images only), mlp, or auto (conv for images, mlp otherwise)."
NORMS = ("batch", "layer", "none")


def hidden_option(default=(256, 256)):
    return option(list(default), "Hidden widths of the MLP generator (the discriminator mirrors them).",
                  ListOf(Interval(int, 1, None)))


def channels_option(default=(32, 64)):
    return option(list(default), "Channels of the discriminator's stride-2 convolutions (the generator "
                  "mirrors them with fractionally-strided ones); conv networks only.",
                  ListOf(Interval(int, 1, None)))


def latent_option(default: int):
    return option(None, f"Noise dimension of the generator (z ~ N(0, I)). Default: {default}, at most the row's "
                  "size (2 for 2-D points).", Interval(int, 1, None), optional=True)


def resolve_latent(options, data: DataSpec, default: int):
    """latent_dim left at its default -> `default`, at most the row's size: a noise wider than
    the data gives a generator directions it cannot use (a GAN on Grid-25 with 32 noise
    dimensions covered 16 of 25 modes where 2 covered 22-25)."""
    from dataclasses import replace

    if options.latent_dim is None:
        return replace(options, latent_dim=min(default, data.size))
    return options


# Rows of at most LOW_DIM values (2-D point sets, small tables): without --epochs a GAN family
# trains LOW_DIM_STEPS steps in full (generator steps; critic steps for the WGANs, whose
# generator steps are LOW_DIM_STEPS / n_critic; shared among AdaGAN's components) and keeps
# the epoch whose samples best match the held-out rows (fidelity_check). Measured with the gan
# family on the 2-D point sets (seeds 11 and 12, not the benchmark's): 30 epochs (3,400 steps)
# left Grid-25 at 13-16 of 25 modes with 2-7% of samples near one; 10,000 steps 22-25 modes,
# 58-76%; 30,000 steps 23-25 modes, 82-84% (ring-8: 8/8, 93-95%), about 70 s.
LOW_DIM, LOW_DIM_STEPS = 16, 30_000


def low_dim_steps(options, data: DataSpec) -> int | None:
    """The steps a GAN family trains without --epochs on rows of this size (see LOW_DIM)."""
    return LOW_DIM_STEPS if data.size <= LOW_DIM else None


def keep_most_faithful(net, options, data: DataSpec, x_val: torch.Tensor, seed: int, beta: float = 1.0):
    """On rows of a few values (the rule of low_dim_steps), the epoch kept is the one whose
    samples best match the held-out rows (fidelity_check, F-`beta`); elsewhere the last."""
    return fidelity_check(net, x_val, seed, beta=beta) if data.size <= LOW_DIM else None


def pack_option(exported: str = "score, --refine", default: int | None = 1, when_unset: str = ""):
    """The --pack option; `default` None: resolved from the data (`when_unset` says how)."""
    return option(default, "PacGAN (Lin et al. 2018): the discriminator judges packs of this many rows at once, "
                  "real with real and generated with generated, which penalises a generator that covers few "
                  "modes; 1: unpacked. With packs, a per-row discriminator is trained beside it on the same "
                  f"batches and is the one exported ({exported}).{when_unset}", Interval(int, 1, None),
                  optional=default is None)


def init_dcgan(module: nn.Module) -> None:
    """DCGAN's initialisation: weights N(0, 0.02), normalisation scales N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    if getattr(module, "netG_average", None) is not None:  # the average starts from the new weights
        module.netG_average.net.load_state_dict(module.netG.state_dict())


def feature_sizes(shape: list[int], channels: list[int]) -> list[tuple[int, int]]:
    """(H, W) that each stride-2 convolution takes in, then what the last one returns."""
    _, h, w = shape
    sizes = [(h, w)]
    for _ in channels:
        h, w = conv_size(h, KERNEL), conv_size(w, KERNEL)
        sizes.append((h, w))
    return sizes


class UnitTanh(nn.Module):
    """DCGAN's tanh output, mapped onto the model space [0, 1] of image data."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return (torch.tanh(h) + 1.0) / 2.0


class ConvGenerator(nn.Module):
    """DCGAN's generator for any (C, H, W): a linear projection of the input to the smallest
    feature map, then one fractionally-strided convolution per entry of `channels` (reversed),
    batch norm and ReLU after each but the last, tanh at the output. The output paddings
    bring the map back to exactly (H, W) (7 -> 14 -> 28; 2 -> 4 -> 8)."""

    def __init__(self, in_dim: int, shape: list[int], channels: list[int], unit_range: bool,
                 batch_norm: bool = True):
        super().__init__()
        self.shape = list(shape)
        sizes = feature_sizes(shape, channels)
        widths = [shape[0], *channels]
        self.start = [channels[-1], *sizes[-1]]
        n_start = int(np.prod(self.start))
        self.project = nn.Linear(in_dim, n_start, bias=not batch_norm)
        self.project_norm = nn.BatchNorm2d(channels[-1]) if batch_norm else nn.Identity()
        layers: list[nn.Module] = []
        for i in reversed(range(len(channels))):
            pad = tuple(output_padding(a, b, KERNEL) for a, b in zip(sizes[i + 1], sizes[i]))
            last = i == 0
            layers.append(nn.ConvTranspose2d(widths[i + 1], widths[i], KERNEL, STRIDE, KERNEL // 2,
                                             output_padding=pad, bias=last or not batch_norm))
            if not last:
                layers += [nn.BatchNorm2d(widths[i]) if batch_norm else nn.Identity(), nn.ReLU()]
        layers.append(UnitTanh() if unit_range else nn.Identity())
        self.convs = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.project_norm(self.project(z).reshape(-1, *self.start)))
        return self.convs(h)


class ConvBody(nn.Module):
    """DCGAN's discriminator body: stride-2 convolutions with LeakyReLU(0.2), normalisation on
    every layer but the first (`batch`, `layer` or `none`; a WGAN-GP critic must not use
    batch norm), no pooling; returns the flattened last feature map."""

    def __init__(self, shape: list[int], channels: list[int], norm: str = "batch"):
        super().__init__()
        self.shape = list(shape)
        widths = [shape[0], *channels]
        layers: list[nn.Module] = []
        for i in range(len(channels)):
            layers.append(nn.Conv2d(widths[i], widths[i + 1], KERNEL, STRIDE, KERNEL // 2,
                                    bias=i == 0 or norm == "none"))
            if i > 0 and norm == "batch":
                layers.append(nn.BatchNorm2d(widths[i + 1]))
            elif i > 0 and norm == "layer":
                layers.append(nn.GroupNorm(1, widths[i + 1]))
            layers.append(nn.LeakyReLU(LEAK))
        self.convs = nn.Sequential(*layers)
        h, w = feature_sizes(shape, channels)[-1]
        self.features = channels[-1] * h * w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x.reshape(-1, *self.shape)).flatten(1)


class MLPBody(nn.Module):
    """An MLP discriminator body (LeakyReLU(0.2) after every layer) on flattened rows."""

    def __init__(self, in_dim: int, hidden: list[int]):
        super().__init__()
        self.net = mlp([in_dim, *hidden], act=lambda: nn.LeakyReLU(LEAK))
        if hidden:
            self.net.append(nn.LeakyReLU(LEAK))
        self.features = hidden[-1] if hidden else in_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


def resolve_arch(options, data: DataSpec, name: str):
    """arch=auto -> conv for (C, H, W) images, else mlp; conv on other data is refused."""
    from dataclasses import replace

    image = is_image(data)
    if options.arch == "conv" and not image:
        raise ConfigError(f"model {name} arch=conv needs (C, H, W) images; {data.source} rows have shape "
                          f"{list(data.shape)} (use arch=mlp)")
    if options.arch == "auto":
        options = replace(options, arch="conv" if image else "mlp")
    if options.arch == "conv" and not getattr(options, "channels", None):
        raise ConfigError(f"channels=[]: model {name} with arch=conv needs at least one convolution")
    return options


def generator(arch: str, in_dim: int, data: DataSpec, hidden: list[int], channels: list[int],
              batch_norm: bool = True) -> nn.Module:
    """The generator network of `arch` from `in_dim` inputs to model-space rows (flat for mlp)."""
    dim = int(np.prod(data.shape))
    if arch == "conv":
        return ConvGenerator(in_dim, data.shape, channels, data.unit_range, batch_norm)
    return mlp([in_dim, *hidden, dim], last_act=nn.Sigmoid() if data.unit_range else None)


def body(arch: str, data: DataSpec, hidden: list[int], channels: list[int], norm: str = "batch",
         extra: int = 0, pack: int = 1) -> nn.Module:
    """The discriminator body of `arch` (features out; `extra` inputs appended for mlp). With
    `pack` m > 1 it takes packs of m rows (`pack_rows`): m times the inputs of an MLP, m times
    the channels of a convolutional body (PacGAN's packing of images along the channels)."""
    if arch == "conv":
        c, *rest = data.shape
        return ConvBody([pack * c, *rest], channels, norm)
    return MLPBody(pack * (int(np.prod(data.shape)) + extra), list(reversed(hidden)))


class GeneratorAverage(nn.Module):
    """An exponential moving average of a generator's weights (Yazici et al. 2019, "The unusual
    effectiveness of averaging in GAN training"): GAN training circles around an equilibrium,
    and the average of the iterates sits nearer it than the last one. After every generator
    step, avg <- d avg + (1 - d) w with d = min(decay, (1 + t) / (10 + t)) at update t (the
    warm-up of TensorFlow's ExponentialMovingAverage, so a short run is not held near its
    initial weights); buffers (batch-norm statistics) are copied from the trained generator, so
    with batch norm they are those of the trained weights, not of the average (gan, the one
    family averaging by default, has none). The average is what a network
    samples from in eval mode (the held-out check, export, --refine); training uses the
    generator itself."""

    def __init__(self, generator: nn.Module, decay: float):
        super().__init__()
        import copy

        self.decay = float(decay)
        self.net = copy.deepcopy(generator).requires_grad_(False)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, generator: nn.Module) -> None:
        t = self.updates.to(torch.float32)  # kept a tensor: no device sync per step
        d = torch.clamp((1.0 + t) / (10.0 + t), max=self.decay)
        for avg, w in zip(self.net.parameters(), generator.parameters()):
            avg.lerp_(w, (1.0 - d).to(w.dtype))
        for avg, b in zip(self.net.buffers(), generator.buffers()):
            avg.copy_(b)
        self.updates += 1


class AveragedGenerator:
    """For a network with a generator `netG` and `netG_average` (a GeneratorAverage or None):
    the generator that samples (the average outside training) and its update. (No class-level
    default for netG_average: it would hide the submodule that nn.Module keeps apart.)"""

    def generator_in_use(self) -> nn.Module:
        return self.netG if self.training or self.netG_average is None else self.netG_average.net

    def update_average(self) -> None:
        """After a generator step."""
        if self.netG_average is not None:
            self.netG_average.update(self.netG)


def variant_words(o) -> str:
    """The words a GAN family's variant ends with for packing and a generator average."""
    return ((f", PacGAN{o.pack}" if getattr(o, "pack", 1) > 1 else "")
            + (f", G averaged ({o.average:g})" if getattr(o, "average", 0) > 0 else ""))


def average_option(default: float = 0.999):
    return option(default, "Decay of the moving average of the generator's weights that is sampled and exported "
                  "(Yazici et al. 2019; the held-out check and --refine see it too); 0: the last weights.",
                  Interval(float, 0, 1, "left"))


class Adversarial(AveragedGenerator, nn.Module):
    """A generator netG (z -> rows) and a discriminator: `body` (rows -> features) and `head`
    (features -> one logit or critic value).

    PacGAN: with `pack` m > 1, `body` takes packs of m rows (`body(..., pack=m)`) and judges
    them through `discriminate_packs`; `row_body` (a body of the same kind for one row, with
    its own `row_head`) is the per-row discriminator trained beside it on the same batches,
    which `discriminate` runs and the exported graph holds. Without a `row_body` (a component
    whose discriminator is never exported) `discriminate` is refused with packs."""

    def __init__(self, shape: list[int], latent_dim: int, netG: nn.Module, body: nn.Module,
                 pack: int = 1, row_body: nn.Module | None = None, average: float = 0.0):
        super().__init__()
        self.shape, self.latent_dim, self.pack = list(shape), latent_dim, pack
        self.netG, self.body = netG, body
        self.netG_average = GeneratorAverage(netG, average) if average > 0 else None
        self.head = nn.Linear(body.features, 1)
        self.row_body = row_body if pack > 1 else None
        self.row_head = nn.Linear(row_body.features, 1) if self.row_body is not None else None

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """G(z): the averaged weights' in eval mode (sampling, export) where there is an average."""
        return self.generator_in_use()(z).reshape(-1, *self.shape)

    @property
    def trains_row_discriminator(self) -> bool:
        """Whether a per-row discriminator trains beside a packed one."""
        return self.row_body is not None

    def discriminate(self, x: torch.Tensor) -> torch.Tensor:
        """The discriminator's logit (a critic's value) per row (the per-row one's, with packs)."""
        if self.pack == 1:
            return self.head(self.body(x)).squeeze(1)
        if self.row_body is None:
            raise RuntimeError("a packed discriminator without a per-row one judges packs only")
        return self.row_head(self.row_body(x)).squeeze(1)

    def discriminate_packs(self, x: torch.Tensor) -> torch.Tensor:
        """The logit (critic value) per pack of `pack` consecutive rows: per row, unpacked."""
        if self.pack == 1:
            return self.discriminate(x)
        return self.head(self.body(pack_rows(x.flatten(1), self.pack))).squeeze(1)

    def generator_parameters(self):
        return self.netG.parameters()

    def discriminator_parameters(self):
        rows = [*self.row_body.parameters(), *self.row_head.parameters()] if self.row_body is not None else []
        return [*self.body.parameters(), *self.head.parameters(), *rows]


def discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """-log D(x) - log(1 - D(G(z))), the discriminator's side of the GAN game, as logits."""
    return (F.binary_cross_entropy_with_logits(logits_real, torch.ones_like(logits_real))
            + F.binary_cross_entropy_with_logits(logits_fake, torch.zeros_like(logits_fake)))


def generator_loss(logits_fake: torch.Tensor, kind: str = "non_saturating") -> torch.Tensor:
    """Non-saturating -log D(G(z)) or minimax log(1 - D(G(z))), from D's logits on fakes."""
    if kind == "minimax":
        return -F.binary_cross_entropy_with_logits(logits_fake, torch.zeros_like(logits_fake))
    return F.binary_cross_entropy_with_logits(logits_fake, torch.ones_like(logits_fake))


def interpolates(real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
    """eps x + (1 - eps) x~ with one eps ~ U(0, 1) per row (WGAN-GP's sampling of x^)."""
    if eps is None:
        eps = torch.rand(len(real), device=real.device)
    eps = eps.reshape(-1, *([1] * (real.ndim - 1)))
    return eps * real + (1 - eps) * fake


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor,
                     eps: torch.Tensor | None = None, pack: int = 1) -> torch.Tensor:
    """WGAN-GP's penalty E[(||grad_x^ f(x^)||_2 - 1)^2] at the interpolates x^ of real and
    fake rows, kept in the graph (create_graph) so it trains the critic. With `pack` m > 1 the
    critic judges packs of m rows: one eps per pack (a pack's interpolate is that of the real
    and the fake pack) and the norm taken over the whole pack's input."""
    if pack > 1:
        n = len(real) // pack * pack
        real, fake = real[:n], fake[:n]
        if eps is None:
            eps = torch.rand(n // pack, device=real.device)
        eps = eps.repeat_interleave(pack)
    x_hat = interpolates(real, fake.detach(), eps).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return ((pack_rows(grad.flatten(1), pack).norm(dim=1) - 1.0) ** 2).mean()


def gan_graphs(net: Adversarial, data: DataSpec, role: str = "discriminator", output: str = "logit",
               extra: dict | None = None) -> dict[str, GraphDef]:
    """The generator (z -> x) and the discriminator or critic (x -> one value per row)."""
    return {
        "generator": GraphDef(Method(net, "generate"), [Port("z", "latent", [net.latent_dim])], [data_port("x", data)]),
        role: GraphDef(Method(net, "discriminate"), [data_port("x", data)], [Port(output, "value")]),
        **(extra or {}),
    }


def pack_rows(x: torch.Tensor, m: int) -> torch.Tensor:
    """PacGAN's packing (Lin et al. 2018): rows (n, ...) -> (n // m, m * row size), each packed row
    m consecutive rows flattened side by side; the n % m rows left over are dropped."""
    n = len(x) // m * m
    return x[:n].reshape(n // m, -1)


def sample_normal(n: int, dim: int, like: torch.Tensor) -> torch.Tensor:
    return torch.randn(n, dim, device=like.device)


def check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    return norm


def fidelity_check(net, x_val: torch.Tensor, seed: int, n_fake: int = 2000, k: int = 3, beta: float = 1.0):
    """A validation loss that keeps the best epoch of a generator (lower is better): 1 - the
    F-`beta` score (beta 1: the harmonic mean; below 1 precision weighs more) of the improved
    precision and recall of Kynkaanniemi et al. (2019) between
    `n_fake` generated rows (the same noise every epoch, drawn from `seed`) and the held-out
    rows `x_val`. Precision: the share of generated rows inside some held-out row's ball (its
    radius the distance to its k-th nearest held-out neighbour); recall: the share of held-out
    rows inside some generated row's ball (radius likewise among the generated rows). Where
    rows are points of a few values, precision tracks the share of samples near a mode and
    recall the modes covered, without knowing the modes; GAN training oscillates, so the last
    epoch is seldom the best. A network that draws more than normal noise (InfoGAN's codes, a
    mixture's component) says how with `check_noise(n, generator)` -> tensors and
    `generate_from_noise(*tensors)`. (Naeem et al.'s coverage in place of recall chose the same epochs
    or worse ones on Grid-25 seeds 0-2.)"""
    real = x_val.flatten(1).float()
    k = max(1, min(k, len(real) - 1, n_fake - 1))
    radius_real = torch.cdist(real, real).kthvalue(k + 1, dim=1).values  # +1: a row's own distance 0
    noise = net.check_noise(n_fake, torch.Generator().manual_seed(int(seed))) if hasattr(net, "check_noise") \
        else (torch.randn(n_fake, net.latent_dim, generator=torch.Generator().manual_seed(int(seed))),)
    noise = tuple(t.to(real.device) for t in noise)
    draw = getattr(net, "generate_from_noise", net.generate)

    def check() -> float:
        net.eval()
        with torch.no_grad():
            fake = draw(*noise).flatten(1).float()
        between = torch.cdist(fake, real)
        precision = float((between <= radius_real[None, :]).any(dim=1).float().mean())
        radius_fake = torch.cdist(fake, fake).kthvalue(k + 1, dim=1).values
        recall = float((between <= radius_fake[:, None]).any(dim=0).float().mean())
        net.train()
        b2 = beta * beta
        return 1.0 - ((1 + b2) * precision * recall / (b2 * precision + recall) if precision + recall > 0 else 0.0)

    return check
