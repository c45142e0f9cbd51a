"""Process-group set-up for one process, ``torchrun`` and the ``deepspeed``
launcher alike.

Launchers export ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``. A plain ``python -m trainer`` has none of them, so it
becomes rank 0 of 1 with a free loopback port. The backend is NCCL when CUDA
is available, else gloo (DeepSpeed then runs its CPU accelerator).
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass

import deepspeed
import torch
import torch.distributed as dist

__all__ = ["DistInfo", "all_reduce_mean", "free_port", "init_distributed"]

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    backend: str

    @property
    def is_main(self) -> bool:
        """True on global rank 0, the rank that logs and writes files."""
        return self.rank == 0


def free_port(host: str = "127.0.0.1") -> int:
    """An ephemeral TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def init_distributed() -> DistInfo:
    """Join (or, alone, create) the default process group."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(free_port()))
    os.environ.setdefault("LOCAL_RANK", "0")
    rank = int(os.environ["RANK"])
    world_size = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    deepspeed.init_distributed(dist_backend=backend)
    info = DistInfo(rank, world_size, local_rank, backend)
    _LOG.info(
        "rank %d of %d (local %d), backend %s, master %s:%s",
        rank,
        world_size,
        local_rank,
        backend,
        os.environ["MASTER_ADDR"],
        os.environ["MASTER_PORT"],
    )
    return info


def all_reduce_mean(values: list[float], device: torch.device) -> list[float]:
    """Element-wise mean of ``values`` over all ranks (one collective)."""
    t = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t)
        t /= dist.get_world_size()
    return [float(v) for v in t.tolist()]
