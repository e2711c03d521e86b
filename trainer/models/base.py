"""Building blocks shared by the family modules."""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from gen.runtime.errors import ConfigError
from gen.runtime.manifest import DataSpec

from ..graphs import GraphDef, Method, Port, data_port


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


def resolve_by_range(options, data: DataSpec, name: str, unit_value: str, other_value: str):
    """Option `name` = auto -> `unit_value` for data in [0, 1] (BCE, a Bernoulli decoder),
    else `other_value`; `unit_value` asked for on other data is refused."""
    value = getattr(options, name)
    if value == unit_value and not data.unit_range:
        raise ConfigError(f"{name}={unit_value} needs data scaled to [0, 1] (image data); use {name}={other_value}")
    if value == "auto":
        return replace(options, **{name: unit_value if data.unit_range else other_value})
    return options


class Reconstruction:
    """Scoring by reconstruction error, for networks with `encode`, `decode` and `shape` (the
    data's row shape): the score graph returns the row score and the per-feature errors it
    averages (anomaly maps)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def errors(self, x: torch.Tensor) -> torch.Tensor:
        """Squared reconstruction error per feature, in the data's shape. Written d * d: exported
        as one Mul, which onnxruntime's CPU provider runs about 3% faster end to end than the
        Pow that `** 2` exports to (MNIST autoencoder, batch 4,096), with identical values."""
        d = self(x) - x.reshape(-1, *self.shape)
        return d * d

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Mean squared reconstruction error per row (higher = more anomalous)."""
        return self.errors(x).flatten(1).mean(dim=1)

    def score_and_errors(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The score graph: the row score and the per-feature errors it averages."""
        errors = self.errors(x)
        return errors.flatten(1).mean(dim=1), errors


def reconstruction_graphs(net, data: DataSpec, score: str = "score_and_errors") -> dict[str, GraphDef]:
    """encoder x -> z, decoder z -> x, and score x -> (score, errors): the graphs of every
    reconstruction family; `score` names the method returning the row score and the
    per-feature errors."""
    z = Port("z", "latent", [net.latent_dim])
    return {
        "encoder": GraphDef(Method(net, "encode"), [data_port("x", data)], [z]),
        "decoder": GraphDef(Method(net, "decode"), [z], [data_port("x", data)]),
        "score": GraphDef(Method(net, score), [data_port("x", data)],
                          [Port("score", "value"), Port("errors", "value", list(data.shape))]),
    }
