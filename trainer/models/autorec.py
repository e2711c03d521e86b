"""AutoRec (Sedhain et al. 2015): an autoencoder for matrix completion, trained with a
masked loss on the observed ratings only.

Each row is one item's ratings by every user (item-based, I-AutoRec, the stronger one in
the paper) or one user's ratings of every item (user-based). The network reads a row with
its unobserved entries zeroed (in model space, where zero is the global mean rating) and
predicts the whole row; the loss is the squared error on the observed entries only, plus an
L2 penalty on the weights. The mask is an explicit input, never read from the values: a 0
may be a real value in other data.

Exported as one graph, `complete`: (x, mask) -> completed, raw ratings in and out. The graph clips
predictions to the rating range and returns the global mean for a row with no observed
entry. A row the model has never seen (a new item for item-based, a new user for
user-based) is completed from its given ratings without retraining: that is the point of
an inductive model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from gen.runtime.manifest import DataSpec

from ..graphs import GraphDef, Method, Port, data_port
from ..options import Choice, Interval, ListOf, option
from ..registry import Family, Preset, register

ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "elu": nn.ELU}


@dataclass
class Options:
    orientation: str = option("item", "Rows are items (item-based, I-AutoRec) or users (user-based, U-AutoRec).",
                              Choice("item", "user"))
    hidden: list[int] = option([500], "Hidden widths of the encoder; the decoder mirrors them except the last "
                               "(the lecture's 128-64-32-64-128 is [128, 64, 32]).", ListOf(Interval(int, 1, None)))
    activation: str = option("sigmoid", "Hidden activation (AutoRec's is sigmoid).", Choice(*ACTIVATIONS))
    weight_decay: float = option(1e-3, "L2 penalty on the weights (AutoRec's lambda), per observed rating.",
                                 Interval(float, 0, None))
    dropout: float = option(0.0, "Share of observed inputs hidden at random in each step (the loss still "
                            "counts them): a denoising variant.", Interval(float, 0, 1, "left"))
    lr: float = option(1e-3, "Adam learning rate.", Interval(float, 0, None, "neither"))


class AutoRec(nn.Module):
    def __init__(self, data: DataSpec, hidden: list[int], activation: str):
        super().__init__()
        width = data.size
        act = ACTIVATIONS[activation]
        sizes = [width, *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), act()]
        back = [*reversed(hidden[:-1]), width]
        for i, (a, b) in enumerate(zip([hidden[-1], *back[:-1]], back)):
            layers.append(nn.Linear(a, b))
            if i < len(back) - 1:
                layers.append(act())
        self.net = nn.Sequential(*layers)
        r = data.ratings
        offset, scale = data.preprocessing.offset, data.preprocessing.scale
        # The rating range and the global mean, in model space (the graph's preprocessing
        # centres ratings on the training mean).
        self.register_buffer("low", torch.tensor((r.rating_range[0] - offset) / scale, dtype=torch.float32))
        self.register_buffer("high", torch.tensor((r.rating_range[1] - offset) / scale, dtype=torch.float32))
        self.register_buffer("mean", torch.tensor((r.global_mean - offset) / scale, dtype=torch.float32))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Predicted rows (unclipped), from the observed entries only."""
        return self.net(x * mask)

    def complete(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Rows completed: predictions clipped to the rating range; a row with no observed
        entry gets the global mean everywhere."""
        out = torch.clamp(self(x, mask), min=self.low, max=self.high)
        seen = mask.sum(dim=1, keepdim=True) > 0
        return torch.where(seen, out, self.mean.expand_as(out))


def masked_mse(pred: torch.Tensor, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the observed entries only: unobserved ones add nothing."""
    return (((pred - x) * mask) ** 2).sum() / mask.sum().clamp(min=1.0)


class Trainer:
    """Adam on the masked MSE plus the L2 penalty, one step per batch of rows. Rows arrive
    with NaN where no rating was observed."""

    batches_per_step = 1

    def __init__(self, net: AutoRec, options: Options):
        self.net, self.options = net, options
        self.weights = [m.weight for m in net.net if isinstance(m, nn.Linear)]
        self.opt = torch.optim.Adam(net.parameters(), lr=options.lr)

    def step(self, rows: torch.Tensor) -> dict[str, float]:
        mask = (~torch.isnan(rows)).to(rows.dtype)
        x = torch.nan_to_num(rows, nan=0.0)
        seen = mask
        if self.options.dropout > 0:
            seen = mask * (torch.rand_like(mask) >= self.options.dropout).to(mask.dtype)
        self.opt.zero_grad(set_to_none=True)
        mse = masked_mse(self.net(x, seen), x, mask)
        l2 = sum((w ** 2).sum() for w in self.weights)
        loss = mse + self.options.weight_decay * 0.5 * l2 / mask.sum().clamp(min=1.0)
        loss.backward()
        self.opt.step()
        return {"loss": float(loss.detach()), "mse": float(mse.detach())}


def graphs(net: AutoRec, data: DataSpec) -> dict[str, GraphDef]:
    return {"complete": GraphDef(Method(net, "complete"), [data_port("x", data), Port("mask", "mask", list(data.shape))],
                                 [Port("completed", "data", list(data.shape))])}


register(Family(
    name="autorec", description="AutoRec masked autoencoder for matrix completion (item- or user-based); "
                                "completes rating rows, folding in new rows without retraining.",
    options=Options, build=lambda o, data: AutoRec(data, o.hidden, o.activation),
    trainer=Trainer, graphs=graphs, capabilities=("complete",), score_kind=None, sampler=None, latent_prior=None,
    variant=lambda o: f"{o.orientation}-based, hidden {o.hidden}", data_kinds=("ratings",),
    ratings_rows=lambda o: o.orientation,
    test=Preset(20, {"hidden": [16]}, data="lowrank", normal_class=None),
    demo=None, bench=Preset(100),
))
