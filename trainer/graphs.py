"""Graphs a family exports: a module plus named, typed inputs and outputs, and the wrapper
that puts the bundle's preprocessing inside every graph.

A family's networks work in model space (e.g. pixels scaled to [0, 1]); `RawUnits` makes a
graph take and return raw units, so the runtime does no numeric work and any ONNX server can
serve a graph as it is. Training uses the same module to bring its data to model space, so
training and serving cannot disagree on the preprocessing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from gen.runtime.manifest import PORT_KINDS, DataSpec, PreprocessSpec


@dataclass
class Port:
    """One named graph input or output: its kind (gen.runtime.manifest.PORT_KINDS), the shape
    of one row (without the batch axis), and for noise-like inputs the distribution the
    export probe draws from."""

    name: str
    kind: str
    shape: list[int] = field(default_factory=list)
    distribution: str = "normal"

    def __post_init__(self):
        if self.kind not in PORT_KINDS:
            raise ValueError(f"port {self.name!r}: unknown kind {self.kind!r}")


@dataclass
class GraphDef:
    """One exportable graph: `module(*inputs)` in model space, inputs and outputs named and in
    order (a single output may be returned bare, several as a tuple)."""

    module: nn.Module
    inputs: list[Port]
    outputs: list[Port]


class Method(nn.Module):
    """Exposes one method of a network as `forward`, so each role exports on its own."""

    def __init__(self, net: nn.Module, method: str):
        super().__init__()
        self.net = net
        self.method = method

    def forward(self, *inputs: torch.Tensor):
        return getattr(self.net, self.method)(*inputs)


def data_port(name: str, data: DataSpec) -> Port:
    return Port(name, "data", list(data.shape))


class Preprocess(nn.Module):
    """raw -> model space ((raw - offset) / scale, then optional binarisation) and back."""

    def __init__(self, prep: PreprocessSpec, shape: list[int]):
        super().__init__()

        def constant(value) -> torch.Tensor:
            t = torch.tensor(value, dtype=torch.float32)
            return t.reshape(shape) if t.ndim else t

        self.register_buffer("offset", constant(prep.offset))
        self.register_buffer("scale", constant(prep.scale))
        self.binarize = prep.binarize

    def to_model(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.offset) / self.scale
        if self.binarize is not None:
            x = (x >= self.binarize).to(x.dtype)
        return x

    def to_raw(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.offset


class RawUnits(nn.Module):
    """A graph that takes and returns raw units: data inputs go through `to_model` first, data
    outputs through `to_raw` last; other ports pass unchanged."""

    def __init__(self, graph: GraphDef, prep: PreprocessSpec, shape: list[int]):
        super().__init__()
        self.inner = graph.module
        self.pre = Preprocess(prep, shape)
        self.data_in = [p.kind == "data" for p in graph.inputs]
        self.data_out = [p.kind == "data" for p in graph.outputs]

    def forward(self, *inputs: torch.Tensor):
        args = [self.pre.to_model(x) if is_data else x for x, is_data in zip(inputs, self.data_in)]
        out = self.inner(*args)
        outs = out if isinstance(out, tuple) else (out,)
        outs = tuple(self.pre.to_raw(y) if is_data else y for y, is_data in zip(outs, self.data_out))
        return outs if len(outs) > 1 else outs[0]
