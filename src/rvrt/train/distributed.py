"""torchrun integration: process-group setup from the environment, small collectives, samplers.

``torchrun --nproc-per-node N -m rvrt train RECIPE`` starts N processes with ``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` set; nothing else is needed
(no ``--local_rank``). CUDA processes use NCCL, CPU processes gloo.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

__all__ = ["DistInfo", "setup", "teardown", "all_reduce", "all_gather_object", "barrier", "ResumableSampler"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the job."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls) -> DistInfo:
        """From torchrun's variables (a single process when they are absent)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return cls(
            rank=int(os.environ.get("RANK", "0")), local_rank=int(os.environ.get("LOCAL_RANK", "0")), world_size=world
        )


def setup(device: torch.device) -> DistInfo:
    """Join the process group described by the environment (when ``WORLD_SIZE > 1``)."""
    info = DistInfo.from_env()
    if info.enabled and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, init_method="env://")
        log.info("process %d/%d joined the %s process group", info.rank, info.world_size, backend)
    return info


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce(t: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In-place all-reduce (``sum`` or ``max``); a no-op in a single process."""
    if _active():
        red = dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX
        if dist.get_backend() == "nccl" and not t.is_cuda:  # NCCL reduces CUDA tensors only
            tmp = t.to(torch.device("cuda", torch.cuda.current_device()))
            dist.all_reduce(tmp, op=red)
            t.copy_(tmp)
        else:
            dist.all_reduce(t, op=red)
    return t


def all_gather_object(obj: Any) -> list[Any]:
    """Objects of all processes, by rank (``[obj]`` in a single process)."""
    if not _active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if _active():
        dist.barrier()


class ResumableSampler(Sampler):
    """Shuffled, rank-sharded indices that can start in the middle of an epoch.

    Epoch ``e`` is a permutation of the dataset drawn from ``seed + e``, cut to a multiple of
    ``world_size * batch_size`` (every process gets the same number of full batches); process
    ``r`` takes every ``world_size``-th index from ``r``. Items are ``(index, epoch)`` so that
    datasets can derive each sample's randomness from them.

    Args:
        length: dataset length.
        rank, world_size: this process and the number of processes.
        batch_size: per-process batch size (the epoch is cut to whole batches).
        seed: base of the permutations.
        shuffle: permute (else the natural order).
    """

    def __init__(
        self,
        length: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        batch_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
    ) -> None:
        self.length, self.rank, self.world_size = length, rank, world_size
        self.batch_size, self.seed, self.shuffle = batch_size, seed, shuffle
        self.epoch = 0
        self.start = 0  # samples of this process to skip in the current epoch

    @property
    def per_rank(self) -> int:
        """Samples each process draws per epoch."""
        return self.length // (self.world_size * self.batch_size) * self.batch_size

    def set_position(self, epoch: int, start: int = 0) -> None:
        """Continue epoch ``epoch`` after its first ``start`` samples (of this process)."""
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return max(0, self.per_rank - self.start)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.length, generator=g)
        else:
            order = torch.arange(self.length)
        mine = order[: self.per_rank * self.world_size][self.rank :: self.world_size]
        for i in mine[self.start :].tolist():
            yield (i, self.epoch)
