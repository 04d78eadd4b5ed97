"""Data-parallel training under ``torchrun``: one process per device, gradients averaged across them.

``torchrun --nproc_per_node=N script.py`` starts N copies of the script with RANK, WORLD_SIZE and
LOCAL_RANK set. Each copy holds a full model replica wrapped in DistributedDataParallel, reads its own
shard of every batch (DistributedSampler) and, during ``backward``, all-reduces the gradients, so every
replica takes the same optimizer step. NCCL carries the all-reduce between GPUs, gloo between CPU processes.
"""
from __future__ import annotations

import os
from typing import Any, Iterable

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from bertmini.utils import check_device, get_device

__all__ = ["init_distributed", "shard_loader", "gather_from_ranks"]


def init_distributed(device: str = "auto") -> tuple[int, int, torch.device, bool]:
    """``(rank, world_size, device, created)`` from torchrun's variables; one process: ``(0, 1, device, False)``.

    Joins the process group unless the caller already did (``created`` says whether we did, so that
    whoever created it destroys it). Each process drives the GPU numbered by its LOCAL_RANK.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = get_device(device)
    if world == 1:
        return 0, 1, dev, False
    if dev.type == "cuda":
        dev = check_device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")  # more processes than GPUs: say so
        torch.cuda.set_device(dev)
    created = not dist.is_initialized()
    if created:
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return dist.get_rank(), world, dev, created


def shard_loader(loader: Iterable, rank: int, world: int, seed: int) -> Iterable:
    """Give each rank its own slice of the data: a DataLoader rebuilt around a DistributedSampler
    (shuffled when the original was). Loaders that already shard, and non-DataLoaders, are kept as they are."""
    if world == 1 or not isinstance(loader, DataLoader) or isinstance(loader.sampler, DistributedSampler):
        return loader
    if loader.batch_size is None:
        raise ValueError("under DDP pass a DataLoader with a DistributedSampler (a custom batch_sampler "
                         "cannot be sharded automatically)")
    sampler = DistributedSampler(loader.dataset, num_replicas=world, rank=rank, seed=seed,
                                 shuffle=isinstance(loader.sampler, RandomSampler), drop_last=loader.drop_last)
    return DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=sampler, collate_fn=loader.collate_fn,
                      num_workers=loader.num_workers, pin_memory=loader.pin_memory, drop_last=loader.drop_last)


def gather_from_ranks(local: Any) -> list[Any]:
    """``[rank 0's local, rank 1's, ...]`` on every rank (a collective: all ranks must call it).

    Checkpoints use it for what differs per rank: RNG streams (dropout masks) and collator generators.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [local]
    states: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(states, local)
    return states
