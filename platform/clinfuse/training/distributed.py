"""Data-parallel training over processes started by ``torchrun`` (one per GPU, or several on CPU with gloo).

Every rank loads the cohort, builds the same splits and models, and trains on its share of each training
batch; ``DistributedDataParallel`` averages the gradients so all ranks hold the same weights. Evaluation
(validation, test, explanations) is cheap, so it runs on the full set rather than on shards: early stopping
then decides identically on every rank without gathering predictions. Only rank 0 talks to MLflow and writes
the run folder.

The training batches keep the single-process order: each rank draws the same shuffled global batches of
``batch_size`` (same seeded generator as :func:`clinfuse.training.data.make_loader`) and takes every
``world_size``-th patient of each. With the loss weighted by each rank's share of the global batch, the
averaged gradient is the single-process gradient (for batch-decomposable losses), so a 2-process run
reproduces a 1-process run up to float summation order.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler

from clinfuse.training.data import make_loader


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job.

    Args:
        rank: global rank (0 is the main process).
        world_size: number of processes (1 when not launched by torchrun).
        local_rank: rank on this node (selects the GPU).
        is_main: ``rank == 0``: tracks, checkpoints and writes the run folder.
        device: this rank's device (``cuda:<local_rank>`` or ``cpu``).
    """

    rank: int
    world_size: int
    local_rank: int
    is_main: bool
    device: torch.device

    @property
    def distributed(self) -> bool:
        """More than one process."""
        return self.world_size > 1


_context: DistContext | None = None


def _rank_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    # One GPU per process: the rank on this node picks it, whatever index the config names.
    return torch.device("cuda", local_rank) if device.type == "cuda" else device


def init_from_env(device: str = "auto") -> DistContext:
    """Join the process group described by torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``).

    Without those variables (a plain ``clinfuse run``) this is a no-op returning a single-process context.
    The backend is NCCL on CUDA and gloo on CPU. Calling it again returns the same context.

    Args:
        device: the config's ``device`` (``auto``, ``cpu``, ``cuda``).
    """
    global _context
    if _context is not None:
        return _context
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return current_context()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    target = _rank_device(device, local_rank)
    if not dist.is_initialized():
        if target.type == "cuda":
            torch.cuda.set_device(target)
        dist.init_process_group("nccl" if target.type == "cuda" else "gloo", init_method="env://")
        atexit.register(shutdown)
    _context = DistContext(rank, world_size, local_rank, rank == 0, target)
    return _context


def current_context() -> DistContext:
    """The context of :func:`init_from_env`, else one read from an existing process group, else single."""
    if _context is not None:
        return _context
    if dist.is_available() and dist.is_initialized():
        rank = dist.get_rank()
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        return DistContext(rank, dist.get_world_size(), local_rank, rank == 0, torch.device("cpu"))
    return DistContext(0, 1, 0, True, torch.device("cpu"))


def shutdown() -> None:
    """Leave the process group (registered at exit by :func:`init_from_env`)."""
    global _context
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _context = None


def wrap_model(model: nn.Module, ctx: DistContext) -> nn.Module:
    """``model`` in ``DistributedDataParallel`` when distributed, else ``model`` itself.

    ``find_unused_parameters`` is needed: an encoder whose modality is absent (or dropped) from a rank's whole
    batch gets no gradient there, and the learned missing embeddings go unused when every modality is present.
    """
    if not ctx.distributed:
        return model
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=True)


class ShardedBatchSampler(Sampler[list[int]]):
    """This rank's part of each global batch: ``batch[rank::world_size]``.

    A global batch smaller than ``world_size`` (a short last batch) is padded by repeating its patients, since
    every rank must run the same number of steps.

    Args:
        batches: the global batch sampler (identical on every rank).
        rank: this rank.
        world_size: number of ranks.
    """

    def __init__(self, batches: BatchSampler, rank: int, world_size: int) -> None:
        self.batches, self.rank, self.world_size = batches, rank, world_size

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches:
            shard = batch[self.rank :: self.world_size]
            yield shard or [batch[self.rank % len(batch)]]

    def __len__(self) -> int:
        return len(self.batches)


def make_train_loader(
    dataset: Dataset,
    batch_size: int,
    seed: int,
    ctx: DistContext,
    num_workers: int = 0,
    pin: bool = False,
) -> DataLoader:
    """Shuffled training batches: the single-process loader, or this rank's shards of the same global batches.

    Args:
        dataset: the fold's training patients.
        batch_size: global batch size (the config's ``batch_size``, summed over ranks).
        seed: shuffling seed (the same on every rank).
        ctx: the distributed context.
        num_workers: loader workers per rank.
        pin: pin host memory (CUDA).
    """
    if not ctx.distributed:
        return make_loader(dataset, batch_size, True, seed, num_workers, pin)
    # The generator is shared by the sampler and the loader, exactly as DataLoader(shuffle=True, generator=g)
    # shares it, so the global batches follow the single-process sequence epoch after epoch.
    generator = torch.Generator()
    generator.manual_seed(seed)
    batches = BatchSampler(RandomSampler(dataset, generator=generator), batch_size, drop_last=False)
    return DataLoader(
        dataset,
        batch_sampler=ShardedBatchSampler(batches, ctx.rank, ctx.world_size),
        generator=generator,
        num_workers=num_workers,
        pin_memory=pin,
        persistent_workers=num_workers > 0,
    )


def shard_weight(n_local: int, ctx: DistContext) -> float:
    """Loss weight ``n_local * world_size / n_global``: DDP's gradient mean becomes the global-batch mean."""
    if not ctx.distributed:
        return 1.0
    total = reduce_sums([float(n_local)], ctx)[0]
    return n_local * ctx.world_size / total


def reduce_sums(values: Sequence[float], ctx: DistContext) -> list[float]:
    """Sum each value over ranks (e.g. a loss total and a patient count for the epoch's mean loss)."""
    if not ctx.distributed:
        return [float(v) for v in values]
    tensor = torch.tensor(list(values), dtype=torch.float64, device=_comm_device(ctx))
    dist.all_reduce(tensor)
    return tensor.cpu().tolist()


def sync_buffers(model: nn.Module, ctx: DistContext) -> None:
    """Copy rank 0's buffers (batch-norm statistics) to every rank so evaluation is identical everywhere.

    DDP keeps parameters equal, but each rank updates its running statistics from its own shard; without this
    the ranks could disagree on early stopping and wait on each other forever.
    """
    if not ctx.distributed:
        return
    for buffer in model.buffers():
        dist.broadcast(buffer.data, src=0)


def broadcast_object(obj: Any, ctx: DistContext | None = None) -> Any:
    """Rank 0's ``obj`` on every rank (picklable objects: a run id, a loaded checkpoint)."""
    ctx = ctx or current_context()
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def rank_seed(seed: int, ctx: DistContext) -> int:
    """A per-rank seed for random draws on local data (modality dropout); rank 0 keeps ``seed``."""
    return seed + 1_000_003 * ctx.rank


def _comm_device(ctx: DistContext) -> torch.device:
    return ctx.device if dist.get_backend() == "nccl" else torch.device("cpu")
