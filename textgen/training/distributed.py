"""This process's place in a torchrun job, and the few collectives the recipes and the loop use."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as torch_dist


@dataclass
class Distributed:
    """This process's place in a torchrun job (rank 0 of 1 when run alone)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @staticmethod
    def from_environment(device_type: str) -> "Distributed":
        """Join the process group torchrun set up, if any (nccl on GPUs, gloo on CPUs)."""
        world_size = int(os.environ.get("WORLD_SIZE", 1))
        if world_size == 1:
            return Distributed()
        if device_type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        if not torch_dist.is_initialized():
            torch_dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
        return Distributed(torch_dist.get_rank(), world_size, int(os.environ.get("LOCAL_RANK", 0)))

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """Element-wise sums of `values` over all ranks."""
        if self.world_size == 1:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        torch_dist.all_reduce(tensor)
        return tensor.tolist()

    def gather(self, value: Any) -> list[Any]:
        """`value` from every rank, in rank order."""
        if self.world_size == 1:
            return [value]
        values: list[Any] = [None] * self.world_size
        torch_dist.all_gather_object(values, value)
        return values

    def barrier(self) -> None:
        """Wait until every rank has come here."""
        if self.world_size > 1:
            torch_dist.barrier()
