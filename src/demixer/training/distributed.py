"""Data-parallel training on torch.distributed (DDP), launched by torchrun.

``demixer train --devices N [--nnodes M --node-rank R --master-addr HOST]`` re-runs itself under
``torch.distributed.run`` (torchrun); each process then finds its rank in the environment that
torchrun sets. NCCL is used on GPUs, Gloo on CPUs (so the same code path is tested without a GPU).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    """Where this process stands in the job."""

    rank: int = 0
    local_rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def launched_by_torchrun() -> bool:
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def setup(device: torch.device) -> Dist:
    """Join the process group torchrun prepared (a no-op for a single process)."""
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) <= 1:
        return Dist()
    import faulthandler

    faulthandler.enable()  # a rank that dies in native code (SIGABRT, SIGSEGV) prints its Python stacks first
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), int(os.environ["LOCAL_RANK"]), dist.get_world_size())


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_sum(t: torch.Tensor, d: Dist) -> torch.Tensor:
    """Sum a tensor over processes (identity for a single process)."""
    if d.active:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_cat(t: torch.Tensor, d: Dist) -> torch.Tensor:
    """Concatenate every process's 1-D tensor (lengths may differ; identity for a single process)."""
    if not d.active:
        return t
    parts: list[torch.Tensor | None] = [None] * d.world
    dist.all_gather_object(parts, t.cpu())
    return torch.cat([p for p in parts if p is not None]).to(t.device)


def from_main(value: float, d: Dist, device: torch.device | str = "cpu") -> float:
    """Rank 0's ``value`` on every process (``value`` itself for a single process).

    For decisions every rank must take at the same step, such as "the time is spent": each rank's own clock
    differs a little, and a rank that stops one step early leaves the others waiting in their next all-reduce."""
    if not d.active:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return float(t.item())


def barrier(d: Dist) -> None:
    if d.active:
        dist.barrier()


def torchrun_command(
    argv: list[str],
    devices: int,
    nnodes: int = 1,
    node_rank: int = 0,
    master_addr: str = "127.0.0.1",
    master_port: int = 29500,
) -> list[str]:
    """The command that re-runs ``demixer <argv>`` under torchrun with ``devices`` processes per node."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={devices}", f"--nnodes={nnodes}"]
    if nnodes > 1:
        cmd += [f"--node-rank={node_rank}", f"--master-addr={master_addr}", f"--master-port={master_port}"]
    else:
        cmd += ["--standalone"]
    return cmd + ["-m", "demixer", *argv]
