"""Multi-process training with DistributedDataParallel: set-up from torchrun's environment, reductions, gathering.

`torchrun --nproc_per_node=N main.py ...` (and multi-node torchrun) sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and
MASTER_PORT; `setup` reads them and joins the process group (NCCL on CUDA, gloo on CPU). Without them, or with
WORLD_SIZE 1, everything here is a no-op for a single process.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only rank 0 logs, writes files and talks to wandb."""
        return self.rank == 0


def setup(device_type: str) -> Distributed:
    """Join the process group described by torchrun's environment (a single process when there is none)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo", init_method="env://")
    return Distributed(rank=rank, world_size=world_size, local_rank=local_rank)


def cleanup(context: Distributed) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(value: torch.Tensor, context: Distributed) -> torch.Tensor:
    """The sum over ranks (the value itself in a single process)."""
    if not context.enabled:
        return value
    value = value.clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def reduce_means(values: dict[str, float], context: Distributed, summed: tuple[str, ...] = ()) -> dict[str, float]:
    """Logged statistics averaged over ranks (keys in `summed` are added instead, e.g. sample counts)."""
    if not context.enabled:
        return values
    keys = list(values)
    total = all_reduce_sum(torch.tensor([float(values[key]) for key in keys], dtype=torch.float64), context)
    return {key: (float(total[i]) if key in summed else float(total[i]) / context.world_size)
            for i, key in enumerate(keys)}


def gather_objects(items: list, context: Distributed) -> list:
    """Every rank's list, concatenated in rank order, on every rank."""
    if not context.enabled:
        return items
    gathered: list = [None] * context.world_size
    dist.all_gather_object(gathered, items)
    return [item for part in gathered for item in part]


def broadcast_buffers(module: torch.nn.Module, context: Distributed) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics). DDP broadcasts them at the start of each
    forward, but after the forward each rank has updated them with its own half batch; synchronising after the step
    keeps the EMA, checkpoints and evaluation identical on all ranks."""
    if context.enabled:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def state_fingerprint(state: dict[str, torch.Tensor]) -> str:
    """A hash of every tensor of a state dict, bit for bit."""
    digest = hashlib.sha256()
    for name, tensor in state.items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def check_identical_on_ranks(state: dict[str, torch.Tensor], context: Distributed) -> None:
    """Raise if the ranks' tensors (weights, EMA) are not bitwise identical (they must be after every DDP step)."""
    if not context.enabled:
        return
    fingerprints = gather_objects([state_fingerprint(state)], context)
    if len(set(fingerprints)) != 1:
        raise RuntimeError(f"the ranks' weights differ (fingerprints by rank: {fingerprints}); DDP synchronisation "
                           "failed")
