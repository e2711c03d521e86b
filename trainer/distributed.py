"""Data-parallel training over several processes: the process group torchrun or Ray Train
starts (gloo on CPU, nccl on CUDA), and what keeps the replicas one model.

Every family's trainer drives its own optimisers over parts of the network (a GAN's generator
and discriminator, an RBM's CD gradients), not one forward call, so DistributedDataParallel's
forward-hook reducer does not fit them. What DDP does is done here in the same way for all of
them: the weights and buffers start as rank 0's (broadcast), and before every optimiser step the
gradients it is about to apply are averaged over the processes (one flattened all-reduce, as
DDP's buckets are). Every process then applies the same update to the same weights, so the
replicas stay equal; the validation score that stops training early is rank 0's (broadcast),
so every process stops at the same epoch. Only rank 0 writes the run folder.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch

from gen.runtime.errors import GenError

TIMEOUT = timedelta(minutes=30)  # a collective waiting longer than this fails the run
_PEER = re.compile(r"gloo|nccl|connection (reset|closed|refused)|remote worker|timed out|timeout", re.I)


class PeerLost(GenError):
    """Another process of the run stopped (killed, failed), so this one cannot go on (exit 1)."""


def lost_peer(exc: BaseException, group: "Group") -> PeerLost | None:
    """The PeerLost that `exc` (raised by a collective) means, or None for another error."""
    if group.world == 1 or not isinstance(exc, RuntimeError) or not _PEER.search(str(exc)):
        return None
    detail = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return PeerLost(f"rank {group.rank} of {group.world}: another training process stopped, so this one cannot "
                    f"go on; no run folder was written ({detail[:160]})")


@dataclass(frozen=True)
class Group:
    """This process's place in the run: rank `rank` of `world` processes (0 of 1 alone)."""

    rank: int = 0
    world: int = 1
    owned: bool = False  # started here (from torchrun's environment), so ended here

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def broadcast_float(self, value: float) -> float:
        """Rank 0's `value`, in every process."""
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64)
        torch.distributed.broadcast(t, 0)
        return float(t.item())

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """The mean over processes of each value (same keys in every process)."""
        if self.world == 1 or not values:
            return values
        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64)
        torch.distributed.all_reduce(t)
        return {k: float(v) / self.world for k, v in zip(keys, t.tolist())}


def join(device: torch.device) -> Group:
    """The group this process belongs to: the one already started (Ray Train starts it), one
    started here from torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR ...), or none."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return Group(dist.get_rank(), dist.get_world_size())
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Group()
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)
    return Group(dist.get_rank(), dist.get_world_size(), owned=True)


def leave(group: Group) -> None:
    """End a group this process started (torchrun's); Ray Train ends its own."""
    if group.owned and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def optimisers(trainer) -> list[torch.optim.Optimizer]:
    """The optimisers a family's trainer keeps as attributes."""
    return [v for v in vars(trainer).values() if isinstance(v, torch.optim.Optimizer)]


def synchronise(net: torch.nn.Module, trainer, group: Group, seed: int) -> None:
    """Start every process from rank 0's weights, average gradients before each optimiser step,
    and give each process its own noise (latents, Gibbs chains) from (seed, rank); rank 0 keeps
    the single-process stream."""
    if group.world == 1:
        return
    for tensor in net.state_dict().values():
        torch.distributed.broadcast(tensor, 0)
    for opt in optimisers(trainer):
        opt.register_step_pre_hook(lambda opt, args, kwargs: _average(opt, group.world))
    if group.rank:
        torch.manual_seed(int(np.random.SeedSequence([seed, group.rank]).generate_state(1)[0]))


def _average(opt: torch.optim.Optimizer, world: int) -> None:
    grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
    if not grads:
        return
    flat = torch._utils._flatten_dense_tensors(grads)
    torch.distributed.all_reduce(flat)
    flat /= world
    for grad, synced in zip(grads, torch._utils._unflatten_dense_tensors(flat, grads)):
        grad.copy_(synced)
