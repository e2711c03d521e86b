"""What every family module provides to the training loop and the exporter."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class GraphDef:
    """One exportable graph: a module taking a single (batch, *input_shape) float32 tensor.

    input_kind says what the runtime feeds it: `data` rows (model space) or `latent` codes.
    """

    module: nn.Module
    input_name: str
    input_shape: list[int]
    output_names: list[str]
    input_kind: str = "data"


class Graph(nn.Module):
    """Exposes one method of a network as `forward`, so each role exports on its own."""

    def __init__(self, net: nn.Module, method: str):
        super().__init__()
        self.net = net
        self.method = method

    def forward(self, x: torch.Tensor):
        return getattr(self.net, self.method)(x)


def mlp(sizes: list[int], act: type[nn.Module] = nn.ReLU, last_act: nn.Module | None = None) -> nn.Sequential:
    """Linear layers of `sizes` with `act` between them and `last_act` (if any) at the end."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(act())
    if last_act is not None:
        layers.append(last_act)
    return nn.Sequential(*layers)
