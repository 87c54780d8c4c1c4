"""Data-parallel training across processes: torchrun + DistributedDataParallel, for one machine or many.

The paper trained on a CPU cluster with asynchronous SGD (DistBelief); the modern equivalent is synchronous
data parallelism, one process per GPU. Launch the ordinary CLI under ``torchrun`` and
:func:`inception_lib.train.train` picks the world up from the environment (``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK``, set by torchrun)::

    torchrun --standalone --nproc_per_node 8 -m inception_lib train --dataset imagenet_folder ...
    torchrun --nnodes 2 --node_rank 0 --master_addr host0 --nproc_per_node 8 -m inception_lib train ...

Conventions (so a run means the same at any world size):

* ``TrainConfig.batch_size`` is the **global** batch; each of the N processes computes ``batch_size / N``
  images per step and DDP averages the gradients, so the update equals the single-process one on the same
  batch (up to floating-point summation order, and BatchNorm: see below).
* Every rank walks the same (seed, epoch)-determined order and takes its own contiguous slice of each global
  batch (:class:`ShardedBatches` for the on-device loader, :class:`ShardedBatchSampler` for a ``DataLoader``),
  so the data seen per step does not depend on the number of processes.
* Validation is sharded too, and the sums (loss, correct, count) are all-reduced.
* Rank 0 alone prints, draws progress bars and writes files; the others wait at a barrier. Every rank reads
  ``last.pt`` to resume, so on several machines ``out_dir`` must be on a shared filesystem.
* BatchNorm statistics are per replica (each normalizes its ``batch_size / N`` images), so BN variants differ
  slightly from a single process on the global batch; ``TrainConfig(sync_bn=True)`` converts them
  to ``SyncBatchNorm`` (CUDA only). The ``"paper"`` variant (LRN, no BN) has no such effect.
* Backend: NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "ShardedBatchSampler", "ShardedBatches", "all_reduce_sum", "barrier", "cleanup",
           "env_info", "gather_objects", "init", "shard_eval", "shard_train"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job (a single process is rank 0 of a world of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: Optional[str] = None
    owns_group: bool = False  # this module initialised the process group (and so destroys it)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_info() -> DistInfo:
    """The world as torchrun describes it in the environment (nothing is initialised)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"inconsistent distributed environment: RANK={rank}, WORLD_SIZE={world}")
    return DistInfo(rank, world, local)


def init(device_type: str) -> DistInfo:
    """Join the process group described by the environment (NCCL on CUDA, gloo otherwise).

    A single process (no ``WORLD_SIZE`` or ``WORLD_SIZE=1``) gets a :class:`DistInfo` of one and nothing is
    initialised. An already initialised group (a notebook, a test harness) is used as it is.
    """
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")),
                        dist.get_backend(), owns_group=False)
    info = env_info()
    if not info.enabled:
        return info
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(backend=backend)
    return DistInfo(info.rank, info.world_size, info.local_rank, backend, owns_group=True)


def cleanup(info: DistInfo) -> None:
    """Leave the process group if :func:`init` created it."""
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum a tensor over ranks in place (a no-op for one process)."""
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_max(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``obj`` in rank order, on every rank (a one-element list for one process)."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


# ----------------------------------------------------------------------------------------------------
# Sharding the data
# ----------------------------------------------------------------------------------------------------


def _local_slice(n: int, info: DistInfo) -> slice:
    per = n // info.world_size
    return slice(info.rank * per, (info.rank + 1) * per)


class ShardedBatches:
    """Wrap a loader of global batches (e.g. a ``DeviceTensorLoader``): each rank gets its contiguous slice.

    Every rank draws the same global batch (order and augmentation depend on (seed, epoch) only) and keeps
    ``batch_size / world`` images of it. The augmentation of the other ranks' images is wasted work, which is
    small next to the network on the small in-memory datasets this is for.
    """

    def __init__(self, loader: Any, info: DistInfo) -> None:
        self.loader, self.info = loader, info

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.loader, "set_epoch"):
            self.loader.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in self.loader:
            s = _local_slice(len(y), self.info)
            yield x[s], y[s]


class ShardedBatchSampler:
    """Batch sampler: global batches from a base sampler, this rank's contiguous slice of each.

    The base sampler (``data.EpochSampler``) yields ``(index, augmentation_seed)`` pairs in an order set by
    (seed, epoch), so the images of step k are the same whatever the world size; incomplete global batches
    are dropped (as ``drop_last`` does in one process).
    """

    def __init__(self, sampler: Any, global_batch: int, info: DistInfo) -> None:
        if global_batch % info.world_size:
            raise ValueError(f"batch_size {global_batch} (the global batch) is not divisible by the "
                             f"{info.world_size} processes")
        self.sampler, self.global_batch, self.info = sampler, global_batch, info

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler) // self.global_batch

    def __iter__(self) -> Iterator[list[Any]]:
        batch: list[Any] = []
        s = _local_slice(self.global_batch, self.info)
        for item in self.sampler:
            batch.append(item)
            if len(batch) == self.global_batch:
                yield batch[s]
                batch = []


def _is_dataloader(loader: Any) -> bool:
    return isinstance(loader, torch.utils.data.DataLoader)


def _rebuild(loader: Any, **kw: Any) -> Any:
    return torch.utils.data.DataLoader(
        loader.dataset, num_workers=loader.num_workers, pin_memory=loader.pin_memory,
        worker_init_fn=loader.worker_init_fn, persistent_workers=loader.persistent_workers,
        generator=loader.generator, collate_fn=loader.collate_fn, **kw)


def shard_train(loader: Any, global_batch: int, info: DistInfo) -> Any:
    """This rank's view of the training loader (the loader itself for one process)."""
    if not info.enabled:
        return loader
    if global_batch % info.world_size:
        raise ValueError(f"batch_size {global_batch} (the global batch) is not divisible by the "
                         f"{info.world_size} processes")
    if _is_dataloader(loader):
        return _rebuild(loader, batch_sampler=ShardedBatchSampler(loader.sampler, global_batch, info))
    return ShardedBatches(loader, info)


class _RoundRobin:
    """Batches i with i % world == rank (evaluation of an on-device loader)."""

    def __init__(self, loader: Any, info: DistInfo) -> None:
        self.loader, self.info = loader, info

    def __iter__(self) -> Iterator[Any]:
        for i, batch in enumerate(self.loader):
            if i % self.info.world_size == self.info.rank:
                yield batch


def shard_eval(loader: Any, info: DistInfo) -> Any:
    """This rank's share of an evaluation loader; all-reduce the sums afterwards."""
    if not info.enabled:
        return loader
    if _is_dataloader(loader):
        indices = list(range(info.rank, len(loader.dataset), info.world_size))
        return _rebuild(loader, batch_size=loader.batch_size, sampler=indices, drop_last=False)
    return _RoundRobin(loader, info)
