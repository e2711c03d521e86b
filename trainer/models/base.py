"""Building blocks shared by the family modules."""

from __future__ import annotations

from torch import nn


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
