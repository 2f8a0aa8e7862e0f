"""torchrun / DistributedDataParallel plumbing: which rank this is, and each rank's share of a global batch.

Under `torchrun --nproc_per_node=N` (on each of --nnodes machines, meeting by c10d rendezvous) the environment
holds RANK, LOCAL_RANK and WORLD_SIZE; the process group uses gloo on CPU and nccl on GPUs, one GPU per process. Without them everything runs as a single process (rank 0 of 1).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: str = "cpu"  # this rank's device: cuda:LOCAL_RANK under torchrun on GPUs

    @property
    def main(self) -> bool:
        """Only the main rank writes checkpoints, logs and progress bars."""
        return self.rank == 0

    def shard(self, batch: list[int]) -> list[int]:
        """This rank's part of a global batch: every world-th index, so the ranks together see the whole batch."""
        return batch[self.rank :: self.world]

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def init(device: str = "cpu", timeout: timedelta | None = None) -> Dist:
    """`timeout`: how long a rank waits for the others at a barrier (torch's default, 30 minutes, when None)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(device=str(device))
    cuda = str(device).startswith("cuda")
    if cuda and str(device) == "cuda":  # one GPU per process on each node: nccl refuses two ranks on one device
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo", **({"timeout": timeout} if timeout else {}))
    return Dist(dist.get_rank(), dist.get_world_size(), str(device))


def wrap(module: torch.nn.Module, d: Dist) -> torch.nn.Module:
    """DDP-wrap a module when there are several ranks (its gradients are then averaged across them)."""
    if d.world == 1:
        return module
    return torch.nn.parallel.DistributedDataParallel(module)


def shutdown(d: Dist) -> None:
    if d.world > 1 and dist.is_initialized():
        dist.destroy_process_group()


def average_gradients(module: torch.nn.Module, d: Dist) -> None:
    """Average a module's gradients over the ranks by hand: for the STAA generator, whose loss is not computed
    through a DDP-wrapped forward (it calls `perturbation`), so DDP's hooks would not see it."""
    if d.world == 1:
        return
    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= d.world
