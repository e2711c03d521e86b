"""GLocal-K (Han et al., CIKM 2021): matrix completion with local and global kernels.

An item-based (or user-based) autoencoder like AutoRec, with two changes:

- Local kernels. Every weight matrix W (n_in x n_out) is used as W * K(U, V), where each
  input unit i and output unit j has a small embedding (u_i, v_j; 5 dimensions) and
  K(u, v) = max(0, 1 - ||u - v||^2) is a finite-support kernel: pairs whose embeddings drift
  apart get an exact zero weight, so the network learns which connections to keep. The
  objective is the sum of squared errors on the observed ratings plus lambda_2/2 ||W||^2 and
  lambda_s/2 ||K||^2 (the latter pushes the kernels towards sparsity).
- A global kernel. After pre-training, the ratings a row feeds to the network are first
  convolved with a small kernel built from the whole model: the pre-trained network's
  outputs on every training row, averaged per row, times a learned matrix (a scaled dot
  product) give the kernel's weights; the input becomes relu(conv(ratings, kernel)) and the
  network is fine-tuned on it, kernel included.

Departure from the paper (said in the README): the paper convolves the whole items x users
matrix with a 3 x 3 kernel, so a row's input mixes in its neighbouring rows (items adjacent by
id). Here the convolution runs along the row only (1 x width), so each row is completed from
its own ratings: rows are independent, a batch's composition changes nothing, and a row the
model never saw (a new item, item-based) is folded in without retraining, as with AutoRec.
The global kernel is fixed at the end of training and stored in the graph.

Training follows the paper: full-batch L-BFGS (strong Wolfe line search), rounds of a few
iterations (the paper's ML-100K settings: 500-500 hidden units, kernel dimension 5,
lambda_2 20, lambda_s 0.006, 5 iterations a round, 30 pre-training rounds), ratings in raw
units with zeros where unobserved. The paper reports the best fine-tuning round chosen on the
test set; here the number of fine-tuning rounds is the run's epochs (see `epochs` in the
registration), fixed before any test rating is seen.

Beyond the paper: `members` networks (3 by default) are trained the same way from different
initial weights and their completions averaged inside the graph (on MovieLens-100K split seed 0,
one network 0.8919 test RMSE, three 0.8899; a fit then takes three times as long).

Exported as one graph, `complete`: (x, mask) -> completed, raw ratings in and out, clipped to
the rating range; a row with no observed entry gets the global mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from gen.runtime.errors import ConfigError
from gen.runtime.manifest import DataSpec

from ..options import Choice, Interval, ListOf, option
from ..registry import Family, Preset, register
from .autorec import graphs  # the same `complete` graph: (x, mask) -> completed


@dataclass
class Options:
    orientation: str = option("item", "Rows are items (item-based, the paper's) or users (user-based).",
                              Choice("item", "user"))
    hidden: list[int] = option([500, 500], "Hidden widths; the output layer maps the last back to the row.",
                               ListOf(Interval(int, 1, None)))
    kernel_dim: int = option(5, "Dimension of the local kernels' unit embeddings.", Interval(int, 1, None))
    weight_decay: float = option(20.0, "lambda_2: L2 penalty lambda_2/2 ||W||^2 on the weights (sum of squared "
                                 "errors units).", Interval(float, 0, None))
    kernel_reg: float = option(0.006, "lambda_s: penalty lambda_s/2 ||K||^2 on the local kernels (sparsity).",
                               Interval(float, 0, None))
    global_kernel: int = option(3, "Width of the global kernel's convolution along a row (odd; 0: local "
                                "kernels only, no fine-tuning stage, so --epochs trains nothing more).",
                                Interval(int, 0, None))
    dot_scale: float = option(1.0, "Scale of the dot product that builds the global kernel.",
                              Interval(float, 0, None, "left"))
    pretrain_epochs: int = option(30, "Pre-training rounds (local kernels only) before the global kernel.",
                                  Interval(int, 0, None))
    iterations: int = option(5, "L-BFGS iterations per round (pre-training and fine-tuning).",
                             Interval(int, 1, None))
    members: int = option(3, "Networks trained from different initial weights whose completions are "
                          "averaged (an ensemble in one graph; 1 trains a third of the time).",
                          Interval(int, 1, None))


def local_kernel(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """max(0, 1 - ||u_i - v_j||^2) for every pair: (n_in, d), (n_out, d) -> (n_in, n_out). The
    squared distance is summed from the differences: torch.cdist's matrix-product form loses the
    tiny distances of the initial embeddings (about 1e-3) to cancellation, and its square root
    has no useful gradient at 0."""
    return torch.clamp(1.0 - (u[:, None, :] - v[None, :, :]).pow(2).sum(-1), min=0.0)


class KernelLayer(nn.Module):
    """y = act(x (W * K(U, V)) + b); `penalty` is lambda_s/2 ||K||^2 + lambda_2/2 ||W||^2."""

    def __init__(self, n_in: int, n_out: int, dim: int, activation: bool):
        super().__init__()
        self.weight = nn.Parameter(nn.init.xavier_uniform_(torch.empty(n_in, n_out)))
        self.u = nn.Parameter(nn.init.trunc_normal_(torch.empty(n_in, dim), 0.0, 1e-3, -2e-3, 2e-3))
        self.v = nn.Parameter(nn.init.trunc_normal_(torch.empty(n_out, dim), 0.0, 1e-3, -2e-3, 2e-3))
        self.bias = nn.Parameter(torch.zeros(n_out))
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x @ (self.weight * local_kernel(self.u, self.v)) + self.bias
        return torch.sigmoid(y) if self.activation else y

    def penalty(self, weight_decay: float, kernel_reg: float) -> torch.Tensor:
        return 0.5 * kernel_reg * local_kernel(self.u, self.v).pow(2).sum() + 0.5 * weight_decay * self.weight.pow(2).sum()


class GLocalK(nn.Module):
    def __init__(self, data: DataSpec, hidden: list[int], kernel_dim: int, global_kernel: int, members: int = 1):
        super().__init__()
        width = data.size
        sizes = [width, *hidden, width]
        self.members = nn.ModuleList(
            nn.ModuleList(KernelLayer(a, b, kernel_dim, i < len(sizes) - 2)
                          for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))) for _ in range(members))
        self.width = int(global_kernel)
        r = data.ratings
        self.offset, self.scale = float(data.preprocessing.offset), float(data.preprocessing.scale)
        self.register_buffer("low", torch.tensor((r.rating_range[0] - self.offset) / self.scale))
        self.register_buffer("high", torch.tensor((r.rating_range[1] - self.offset) / self.scale))
        self.register_buffer("mean", torch.tensor((r.global_mean - self.offset) / self.scale))
        # Each member's global kernel, fixed at the end of training; until then the identity
        # (a 1 in the middle), so a run without fine-tuning rounds feeds the ratings as they are.
        self.register_buffer("kernel", torch.zeros(members, max(self.width, 1)))
        for m in range(members):
            self.identity_kernel(m)
        # The paper's relu after the convolution assumes ratings >= 0 (zeros stand for unobserved).
        self.rectify = r.rating_range[0] >= 0

    @torch.no_grad()
    def identity_kernel(self, member: int) -> None:
        """Set a member's global kernel to the identity (a 1 in the middle)."""
        self.kernel[member].zero_()
        self.kernel[member, self.kernel.shape[1] // 2] = 1.0

    def local(self, r: torch.Tensor, member: int = 0) -> torch.Tensor:
        """A member's local-kernel network on raw ratings (zeros where unobserved) -> raw ratings."""
        for layer in self.members[member]:
            r = layer(r)
        return r

    def convolve(self, r: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        """The row-wise convolution (same length, zero padding) with `kernel`, then relu (ratings
        that may be negative skip the relu)."""
        out = nn.functional.conv1d(r.unsqueeze(1), kernel.view(1, 1, -1), padding=self.width // 2).squeeze(1)
        return torch.relu(out) if self.rectify else out

    def raw_input(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return (x * self.scale + self.offset) * mask

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Predicted rows in model space (unclipped), from the observed entries only."""
        r = self.raw_input(x, mask)
        out = 0.0
        for m in range(len(self.members)):
            out = out + self.local(self.convolve(r, self.kernel[m]) if self.width else r, m)
        return (out / len(self.members) - self.offset) / self.scale

    def penalty(self, weight_decay: float, kernel_reg: float, member: int = 0) -> torch.Tensor:
        return sum(layer.penalty(weight_decay, kernel_reg) for layer in self.members[member])

    def complete(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Rows completed: predictions clipped to the rating range; a row with no observed
        entry gets the global mean everywhere."""
        out = torch.clamp(self(x, mask), min=self.low, max=self.high)
        seen = mask.sum(dim=1, keepdim=True) > 0
        return torch.where(seen, out, self.mean.expand_as(out))


class Trainer:
    """The paper's schedule on all training rows at once: `pretrain_epochs` rounds of L-BFGS on
    the local-kernel network, then `epochs` rounds fine-tuning it with the global kernel (each
    round `iterations` L-BFGS iterations with a fresh history, as the paper's rounds of
    scipy's L-BFGS-B). The loss is the sum of squared errors on the observed ratings plus the
    penalties, in raw units."""

    batches_per_step = 1

    def __init__(self, net: GLocalK, options: Options):
        if options.global_kernel and options.global_kernel % 2 == 0:
            raise ConfigError(f"global_kernel={options.global_kernel}: expected an odd width (or 0 for none)")
        self.net, self.o = net, options

    def _rounds(self, params, loss_fn, rounds: int, stage: str, progress) -> list[dict]:
        history = []
        last = {}
        for _ in range(rounds):
            opt = torch.optim.LBFGS(params, lr=1.0, max_iter=self.o.iterations, history_size=10,
                                    line_search_fn="strong_wolfe")

            def closure():
                opt.zero_grad(set_to_none=True)
                sse, pen = loss_fn()
                loss = sse + pen
                loss.backward()
                last.update(sse=float(sse.detach()), loss=float(loss.detach()))
                return loss

            opt.step(closure)
            # The figures of the last evaluation (the line search's, at or beside the point it
            # accepts): logging costs no extra pass over the matrix.
            record = {"fine_tuning": 1.0 if stage == "finetune" else 0.0, "loss": last["loss"],
                      "train_rmse": (2 * last["sse"] / self.n_observed) ** 0.5}
            history.append(record)
            progress.advance(info=f"{stage} loss {record['loss']:.1f}  train rmse {record['train_rmse']:.4f}")
        return history

    def fit(self, x: torch.Tensor, epochs: int, batch_size: int, rng) -> list[dict]:
        from ..progress import phase

        net, o = self.net, self.o
        mask = (~torch.isnan(x)).to(x.dtype)
        r = net.raw_input(torch.nan_to_num(x), mask)
        self.n_observed = float(mask.sum().clamp(min=1.0))

        def sse(pred: torch.Tensor) -> torch.Tensor:
            return 0.5 * ((pred - r) * mask).pow(2).sum()

        fine = epochs if o.global_kernel else 0
        if o.pretrain_epochs + fine < 1:
            raise ConfigError(f"glocal-k: pretrain_epochs={o.pretrain_epochs} and " + (
                f"epochs={epochs}" if o.global_kernel else "global_kernel=0 (no fine-tuning)")
                + " leave no training round; give at least one")
        members = len(net.members)
        history: list[dict] = []
        with phase("glocal-k on the rating matrix", members * (o.pretrain_epochs + fine), "rounds") as progress:
            for m in range(members):
                params = list(net.members[m].parameters())
                start = len(history)

                def pretrain_loss(m=m):
                    return sse(net.local(r, m)), net.penalty(o.weight_decay, o.kernel_reg, m)

                history += self._rounds(params, pretrain_loss, o.pretrain_epochs, "pretrain", progress)
                if fine:
                    mix = nn.Parameter(nn.init.trunc_normal_(torch.empty(r.shape[0], o.global_kernel,
                                                                         device=r.device), 0.0, 0.1, -0.2, 0.2))

                    def kernel(m=m, mix=mix) -> torch.Tensor:
                        # Row-wise average of the network's outputs (the paper's average pooling)
                        # times the learned matrix: the global kernel, as a scaled dot product.
                        return (net.local(r, m).mean(dim=1) @ mix) * o.dot_scale

                    def fine_loss(m=m, kernel=kernel):
                        return (sse(net.local(net.convolve(r, kernel()), m)),
                                net.penalty(o.weight_decay, o.kernel_reg, m))

                    with torch.no_grad():
                        # A kernel with no positive tap makes relu(conv(ratings >= 0)) zero: no
                        # input, no gradient, a member stuck at its biases (1 draw in 8 of a
                        # 1 x 3 kernel). Such a draw is turned round (same size, positive taps).
                        if net.rectify and float(kernel().max()) <= 0:
                            mix.neg_()
                    pretrained = {k: v.detach().clone() for k, v in net.members[m].state_dict().items()}
                    history += self._rounds(params + [mix], fine_loss, fine, "finetune", progress)
                    with torch.no_grad():
                        net.kernel[m].copy_(kernel())
                        if o.pretrain_epochs and history[-1]["loss"] > history[-1 - fine]["loss"]:
                            # Fine-tuning ended worse on the training objective than pre-training:
                            # keep the pre-trained member, fed the ratings as they are.
                            net.members[m].load_state_dict(pretrained)
                            net.identity_kernel(m)
                            history[-1]["fine_tuning_kept"] = 0.0
                if members > 1:
                    for record in history[start:]:
                        record["member"] = float(m + 1)
        return history


register(Family(
    name="glocal-k", description="GLocal-K: an autoencoder with local kernelised weights, fine-tuned with a "
                                 "global convolution kernel, for matrix completion; folds in new rows.",
    options=Options,
    build=lambda o, data: GLocalK(data, o.hidden, o.kernel_dim, o.global_kernel, o.members),
    trainer=Trainer, graphs=graphs, capabilities=("complete",), score_kind=None, sampler=None, latent_prior=None,
    variant=lambda o: f"{o.orientation}-based, hidden {o.hidden}, "
                      + (f"global kernel 1x{o.global_kernel}" if o.global_kernel else "local kernels only")
                      + (f", {o.members} members averaged" if o.members > 1 else ""),
    data_kinds=("ratings",), ratings_rows=lambda o: o.orientation, default_epochs=120,
    test=Preset(2, {"hidden": [16], "pretrain_epochs": 2, "iterations": 2, "members": 1}, data="lowrank",
                normal_class=None),
    bench=Preset(None),
))
