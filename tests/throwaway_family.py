"""A throwaway family that lives only in the tests: a diagonal Gaussian density (mean and
log-std per feature, fitted by maximum likelihood). It exists to show that adding a family is
its own file plus one registration line: loaded as a pytest plugin
(`pytest -p tests.throwaway_family`), it is picked up by the common contract test with no
other edit."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from gen.runtime.manifest import AncestralSampler
from gen.trainer.graphs import GraphDef, Method, Port, data_port
from gen.trainer.options import Interval, option
from gen.trainer.registry import Family, Preset, register


@dataclass
class Options:
    lr: float = option(0.05, "Adam learning rate.", Interval(float, 0, None, "neither"))


class DiagonalGaussian(nn.Module):
    def __init__(self, shape: list[int]):
        super().__init__()
        self.shape, self.dim = list(shape), int(np.prod(shape))
        self.mean = nn.Parameter(torch.zeros(self.dim))
        self.log_std = nn.Parameter(torch.zeros(self.dim))

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        return (self.mean + z * self.log_std.exp()).reshape(-1, *self.shape)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood per row."""
        u = (x.flatten(1) - self.mean) / self.log_std.exp()
        return 0.5 * (u ** 2).sum(1) + self.log_std.sum() + 0.5 * self.dim * math.log(2 * math.pi)


class Trainer:
    batches_per_step = 1

    def __init__(self, net: DiagonalGaussian, options: Options):
        self.net, self.opt = net, torch.optim.Adam(net.parameters(), lr=options.lr)

    def step(self, x: torch.Tensor) -> dict[str, float]:
        self.opt.zero_grad(set_to_none=True)
        loss = self.net.score(x).mean()
        loss.backward()
        self.opt.step()
        return {"nll": float(loss.detach())}


def graphs(net: DiagonalGaussian, data) -> dict[str, GraphDef]:
    return {"generator": GraphDef(Method(net, "generate"), [Port("z", "latent", [net.dim])], [data_port("x", data)]),
            "score": GraphDef(Method(net, "score"), [data_port("x", data)], [Port("score", "value")])}


register(Family(
    name="throwaway", description="Diagonal Gaussian density (a test-only family).", options=Options,
    build=lambda o, data: DiagonalGaussian(data.shape), trainer=Trainer, graphs=graphs,
    capabilities=("sample", "score"), score_kind="negative_log_likelihood",
    sampler=lambda net, o: AncestralSampler(graph="generator"), latent_prior="normal",
    variant=lambda o: "diagonal", test=Preset(5),
))
