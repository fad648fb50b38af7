"""The training loader: shuffled, seeded, resumable batches of per-sample transforms.

Training batches come from :class:`EpochBatchSampler`: the order of an epoch and a seed for
every sample in it are functions of ``(trainer.seed, epoch)`` alone, and each sample's
transform runs with torch, numpy and ``random`` seeded from its own seed. So the views of a
run do not depend on the number of workers, and a run resumed in the middle of an epoch sees
exactly the batches the uninterrupted run would have seen. Under several processes each takes
its share of every global batch, and the samples keep their seeds, so a run sees the same
images with the same views whatever the number of processes.
"""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ssl_core.errors import UserError


def default_workers(requested: int, device_type: str) -> int:
    """DataLoader workers for ``trainer.num_workers=requested`` (-1: sized to the machine).

    Training on the CPU, the model's threads already use every core; worker processes would
    take cores from them in the middle of a step (OpenMP threads then wait on each other), and
    a run was slower with one or two workers than with the views made in the main process
    between steps (docs/performance.md). On an accelerator: one per core, at most 8.
    """
    if requested >= 0:
        return requested
    if device_type == "cpu":
        return 0
    return max(0, min(len(os.sched_getaffinity(0)), 8))


def seed_sample(seed: int) -> None:
    """Seed torch's CPU generator, numpy and ``random`` for the transform of one sample.

    Only the CPU generator: ``torch.manual_seed`` also seeds every accelerator's generators,
    which on a CUDA build takes ~0.25 ms, more than the whole transform of a small image.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.default_generator.manual_seed(seed)


class SampleDataset(Dataset):
    """``(image, label)`` items seen through a per-sample transform.

    ``transform`` is the callable returned by ``ssl_sample_transform`` (image → dict of
    tensors); ``dataset[i]`` is that dict plus ``"label"`` (an ``int``, ``-1`` when
    unlabelled). ``dataset[(i, seed)]`` first seeds the RNGs with ``seed`` (see
    :class:`EpochBatchSampler`). Picklable when ``items`` and ``transform`` are.
    """

    def __init__(
        self,
        items: Sequence[tuple[np.ndarray, int]],
        transform: Callable[[np.ndarray], dict[str, Any]],
    ) -> None:
        self.items = items
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        if isinstance(key, tuple):
            index, seed = key
            seed_sample(seed)
        else:
            index = key
        image, label = self.items[index]
        sample = dict(self.transform(image))
        sample["label"] = int(label)
        return sample


def epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 63-bit seed for one epoch of a run seeded with ``seed``."""
    state = np.random.SeedSequence([seed % 2**63, epoch]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class EpochBatchSampler(Sampler[list[tuple[int, int]]]):
    """Shuffled full batches of ``(index, sample_seed)``, resumable at any optimizer step.

    The permutation and the per-sample seeds of epoch ``e`` depend only on ``(seed, e)``; this
    sampler plays the role of torch's ``DistributedSampler`` with per-epoch reseeding. An
    optimizer step consumes one *global batch* of ``batch_size × world_size × accumulate``
    consecutive positions of the permutation; it is cut into ``world_size × accumulate``
    micro-batches of ``batch_size``, and process ``rank`` takes micro-batch
    ``k × world_size + rank`` as its ``k``-th. Each sample keeps the seed of its position in the
    epoch, so which images an optimizer step sees, and their views, do not depend on the number
    of processes or of accumulation steps, only on the global batch.

    ``set_epoch(e, start_batch=b)`` makes the next iteration yield epoch ``e`` from its
    optimizer step ``b`` on; the incomplete last global batch is dropped.
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        seed: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        accumulate: int = 1,
    ) -> None:
        if not 0 <= rank < world_size or accumulate < 1:
            raise ValueError(f"invalid rank {rank} of {world_size} or accumulate {accumulate}")
        self.num_items = num_items
        self.batch_size = batch_size
        self.seed = seed
        self.rank, self.world_size, self.accumulate = rank, world_size, accumulate
        self.epoch = 0
        self.start_batch = 0

    @property
    def global_batch_size(self) -> int:
        """Images per optimizer step over all processes and accumulation steps."""
        return self.batch_size * self.world_size * self.accumulate

    @property
    def batches_per_epoch(self) -> int:
        """Optimizer steps per epoch (global batches)."""
        return self.num_items // self.global_batch_size

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.start_batch) * self.accumulate

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        order = torch.randperm(self.num_items, generator=generator).tolist()
        seeds = torch.randint(0, 2**62, (self.num_items,), generator=generator).tolist()
        size, world = self.batch_size, self.world_size
        for b in range(self.start_batch, self.batches_per_epoch):
            for k in range(self.accumulate):
                start = b * self.global_batch_size + (k * world + self.rank) * size
                yield [(order[i], seeds[i]) for i in range(start, start + size)]


def _init_worker(worker_id: int) -> None:
    # Ctrl-C reaches the whole process group; only the main process decides how to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def build_train_loader(
    items: Sequence[tuple[np.ndarray, int]],
    transform: Callable[[np.ndarray], dict[str, Any]],
    *,
    batch_size: int,
    num_workers: int,
    seed: int,
    pin_memory: bool,
    rank: int = 0,
    world_size: int = 1,
    accumulate: int = 1,
) -> DataLoader:
    """The shuffled training loader over ``items`` seen through ``transform``.

    Batches are the default collate of :class:`SampleDataset` samples (dicts of tensors, lists
    of tensors, ``"label"`` an int64 tensor). ``loader.batch_sampler`` is the
    :class:`EpochBatchSampler` to call ``set_epoch`` on; this process gets its micro-batches
    of ``batch_size`` (see there for ``rank``, ``world_size`` and ``accumulate``). Workers stay
    alive between epochs.

    :raises UserError: when there are fewer items than one global batch.
    """
    global_batch = batch_size * world_size * accumulate
    if len(items) < global_batch:
        shown = f"trainer.batch_size={batch_size}"
        if global_batch != batch_size:
            shown += f" x {world_size} processes x trainer.accumulate={accumulate}"
        raise UserError(
            f"the training set has {len(items)} images, fewer than one batch "
            f"({shown}); lower trainer.batch_size or add images"
        )
    workers = max(0, num_workers)
    return DataLoader(
        SampleDataset(items, transform),
        batch_sampler=EpochBatchSampler(
            len(items),
            batch_size,
            seed,
            rank=rank,
            world_size=world_size,
            accumulate=accumulate,
        ),
        num_workers=workers,
        persistent_workers=workers > 0,
        worker_init_fn=_init_worker if workers > 0 else None,
        pin_memory=pin_memory,
        # The loader draws its workers' base seed when an iterator starts; from a generator of
        # its own, so that the training RNG does not depend on when the loop (re)started.
        generator=torch.Generator().manual_seed(seed),
    )


def to_device(batch: Any, device: torch.device | str) -> Any:
    """``batch`` with every tensor in its dicts, lists and tuples moved to ``device``.

    Copies are ``non_blocking`` (asynchronous from pinned memory); other values are kept.
    """
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {key: to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(value, device) for value in batch)
    return batch
