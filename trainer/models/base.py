"""Building blocks shared by the family modules."""

from __future__ import annotations

from dataclasses import replace

from torch import nn

from gen.runtime.errors import ConfigError
from gen.runtime.manifest import DataSpec


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
