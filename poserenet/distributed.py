"""Multi-process training through PyTorch's own launcher (torchrun) and DDP.

`torchrun --nproc_per_node=N -m poserenet train CONFIG` (multi-node: torchrun's --nnodes,
--node_rank and --rdzv_* flags) starts N processes with RANK/WORLD_SIZE/LOCAL_RANK set; each
calls `setup()`. The same code runs on CPUs (gloo) and GPUs (nccl); a plain single process
needs none of it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist

from .errors import ConfigError


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device_name: str = "auto") -> DistContext:
    """Join the process group when started by torchrun, and pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device_name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device={device_name}, but PyTorch sees no CUDA GPU here; use auto or cpu")
    use_cuda = (device_name == "auto" and torch.cuda.is_available()) or device_name.startswith("cuda")
    if use_cuda:
        device = torch.device(f"cuda:{local}" if world > 1 or device_name == "auto" else device_name)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu" if device_name == "auto" else device_name)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistContext(rank, world, local, device)


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: list[float], ctx: DistContext) -> list[float]:
    if not ctx.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return t.tolist()


def gather_to_main(obj: Any, ctx: DistContext) -> list[Any] | None:
    """Every rank's `obj` on rank 0 (in rank order); None elsewhere."""
    if not ctx.enabled:
        return [obj]
    out = [None] * ctx.world_size if ctx.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def broadcast_from_main(obj: Any, ctx: DistContext) -> Any:
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def weights_in_sync(model: torch.nn.Module, ctx: DistContext) -> bool:
    """Whether every rank holds the same weights (a float64 fingerprint of the parameters)."""
    if not ctx.enabled:
        return True
    fp = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1)
    everyone = [torch.zeros_like(fp) for _ in range(ctx.world_size)]
    dist.all_gather(everyone, fp)
    return bool(all(torch.equal(e, everyone[0]) for e in everyone))


class EpochSampler(torch.utils.data.Sampler):
    """This rank's share of a per-epoch permutation, yielding (epoch, index) pairs.

    The epoch travels with each index, so augmentation (a function of seed, epoch and index)
    stays right with persistent workers, and `skip` resumes in the middle of an epoch with the
    very same batches. Like DistributedSampler, the permutation is padded to a multiple of the
    world size and ranks take interleaved slices.
    """

    def __init__(self, size: int, seed: int = 0, shuffle: bool = True, rank: int = 0, world_size: int = 1):
        self.size, self.seed, self.shuffle = size, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def __len__(self) -> int:
        return max(0, -(-self.size // self.world_size) - self.skip)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.size)
        else:
            order = np.arange(self.size)
        total = -(-self.size // self.world_size) * self.world_size
        order = np.resize(order, total)  # pad by repeating from the start
        mine = order[self.rank :: self.world_size][self.skip :]
        return iter([(self.epoch, int(i)) for i in mine])
