"""Data-parallel training under ``torchrun`` (DistributedDataParallel), in small named pieces.

Launched by ``torchrun`` with more than one process, every step's global batch is split across
the ranks (:func:`rank_share`) and their gradients are averaged, so the run follows the
single-process one; only rank 0 writes checkpoints and prints. Without torchrun
:func:`distributed_from_env` returns None and none of this runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Distributed:
    """A process's place in a ``torchrun`` launch (DistributedDataParallel)."""

    rank: int
    world: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints and prints."""
        return self.rank == 0


def distributed_from_env() -> Distributed | None:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1), else None.

    ``nccl`` on GPUs, ``gloo`` on CPUs; the rendezvous comes from torchrun's environment
    (``MASTER_ADDR``/``MASTER_PORT`` or ``--rdzv-endpoint``), so multi-node works unchanged.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size(),
                       int(os.environ.get("LOCAL_RANK", "0")))


def rank_share(idx: list[int], order: list[int], ddp: Distributed) -> list[int]:
    """Return one rank's part of a global batch, padded from the epoch's order to split evenly."""
    short = -len(idx) % ddp.world
    return (idx + order[:short])[ddp.rank::ddp.world]


def check_batch_size(batch_size: int, ddp: Distributed | None) -> None:
    """Refuse a batch that the processes cannot share equally."""
    if ddp is not None and batch_size % ddp.world:
        raise ValueError(f"batch size {batch_size} must be a multiple of the {ddp.world} "
                         "processes (each takes an equal share of every batch)")


def rank_device(device: torch.device, ddp: Distributed | None) -> torch.device:
    """A rank's own GPU (its ``LOCAL_RANK``) when training on CUDA; ``device`` otherwise."""
    if ddp is None or device.type != "cuda":
        return device
    device = torch.device("cuda", ddp.local_rank)
    torch.cuda.set_device(device)
    return device


def wrap(model: torch.nn.Module, device: torch.device,
         ddp: Distributed | None) -> torch.nn.Module:
    """The module the training steps call: ``model`` itself, or its DDP wrapper."""
    if ddp is None:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                   else None)


def sum_over_ranks(total: float, count: int, device: torch.device) -> tuple[float, int]:
    """``(total, count)`` summed over every rank (an epoch's loss over all processes)."""
    import torch.distributed as dist

    t = torch.tensor([total, float(count)], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t[0]), int(t[1])
