"""Exported graphs run by torch in raw units, as the runtime runs them from the bundle: a
graph's output in batches, a runner with the runtime's GraphRunner interface, and samples drawn
by the runtime's own sampler over torch graphs (the run's preview, DRS fine-tuning)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from gen.runtime import samplers
from gen.runtime.manifest import DataSpec, LatentSpec

from .graphs import GraphDef, RawUnits


@torch.no_grad()
def batched(module, x: torch.Tensor, batch: int = 1024) -> np.ndarray:
    """Run `module` on model-space rows in batches; numpy float64 out."""
    outs = [module(x[i:i + batch]).detach().cpu().numpy() for i in range(0, len(x), batch)]
    return np.concatenate(outs, axis=0).astype(np.float64)


def output(graphs: dict, role: str, name: str):
    """A callable giving output `name` of graph `role` (model space in, like the graph's module)."""
    graph = graphs[role]
    index = [p.name for p in graph.outputs].index(name)

    def run(*inputs):
        out = graph.module(*inputs)
        return out[index] if isinstance(out, tuple) else out

    return run


class TorchRunner:
    """A graph run by torch in raw units, with the runtime's GraphRunner interface (plain
    runs: `device` None, nothing kept on a device)."""

    device = None

    def __init__(self, graph: GraphDef, data: DataSpec, device: torch.device):
        self.module = RawUnits(graph, data.preprocessing, data.shape).to(device).eval()
        self.device_ = device
        self.input_names = [p.name for p in graph.inputs]
        self.output_names = [p.name for p in graph.outputs]

    @torch.no_grad()
    def run(self, feeds: dict, outputs: list[str] | None = None, keep_on_device: bool = False) -> dict:
        out = self.module(*(torch.as_tensor(np.asarray(feeds[n])).to(self.device_) for n in self.input_names))
        values = dict(zip(self.output_names, out if isinstance(out, tuple) else (out,)))
        return {n: values[n].cpu().numpy() for n in (outputs or self.output_names)}


def draw_with_torch(graphs: dict, data: DataSpec, sampler, latent: LatentSpec | None, n: int, seed: int,
                    device: torch.device) -> np.ndarray:
    """n samples drawn by the runtime's own sampler over the torch graphs (wrapped in raw
    units), so they are what the exported bundle gives for `seed`, up to float rounding."""
    runners = {role: TorchRunner(graph, data, device) for role, graph in graphs.items()}

    def run_batched(role: str, feeds: dict, output: str) -> np.ndarray:
        return runners[role].run(feeds, outputs=[output])[output]

    def port_shape(role: str, name: str) -> list[int]:
        return next(p.shape for p in graphs[role].inputs if p.name == name)

    host = SimpleNamespace(manifest=SimpleNamespace(latent=latent, sampler=sampler), batch_size=1024,
                           runners=runners, run_batched=run_batched, port_shape=port_shape)
    return samplers.draw(host, n, np.random.default_rng(seed))
