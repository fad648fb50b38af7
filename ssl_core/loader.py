"""Loading images for training and evaluation.

Training batches come from :class:`EpochBatchSampler`: the order of an epoch and a seed for
every sample in it are functions of ``(trainer.seed, epoch)`` alone, and each sample's
transform runs with torch, numpy and ``random`` seeded from its own seed. So the views of a
run do not depend on the number of workers, and a run resumed in the middle of an epoch sees
exactly the batches the uninterrupted run would have seen. Under several processes each takes
its share of every global batch, and the samples keep their seeds, so a run sees the same
images with the same views whatever the number of processes.
"""

from __future__ import annotations

import random
import signal
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from .errors import UserError

# --- normalization ---------------------------------------------------------------------------

#: Per-channel mean and std of ImageNet (RGB, ``[0, 1]`` scale): what pretrained and SSL
#: encoders expect their inputs standardized with.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """Standardize images with :data:`IMAGENET_MEAN` and :data:`IMAGENET_STD`.

    :param x: float ``[B,3,H,W]`` in ``[0, 1]``, on any device and of any float dtype.
    :return: a new tensor of the same shape, device and dtype.
    """
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


# --- the training loader ---------------------------------------------------------------------


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


# --- evaluation ------------------------------------------------------------------------------


class EvalTransform:
    """The deterministic evaluation view: shorter side resized to ``S``, then center-cropped.

    ``transform(image)`` takes a ``uint8`` ``HxWx3`` numpy array of any size and returns
    ``float32 [3,S,S]`` in ``[0, 1]``. Torch-only and picklable (it holds only ``S``).
    """

    def __init__(self, image_size: int) -> None:
        self.image_size = int(image_size)

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        size = self.image_size
        array = np.asarray(image)
        if array.ndim == 2:
            array = np.repeat(array[..., None], 3, axis=2)
        x = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float() / 255.0
        height, width = x.shape[-2:]
        if min(height, width) != size:
            scale = size / min(height, width)
            new_size = (max(size, round(height * scale)), max(size, round(width * scale)))
            # antialias keeps large photos from aliasing when they are shrunk
            x = F.interpolate(
                x[None], size=new_size, mode="bilinear", align_corners=False, antialias=True
            )[0]
            height, width = new_size
        top = int(round((height - size) / 2.0))
        left = int(round((width - size) / 2.0))
        x = x[:, top : top + size, left : left + size]
        return x.clamp_(0.0, 1.0).contiguous()


def eval_transform(image_size: int) -> EvalTransform:
    """The evaluation view for ``S = image_size`` (see :class:`EvalTransform`)."""
    return EvalTransform(image_size)


class _AsSample:
    """Adapts an image → tensor transform to the image → dict contract of samples."""

    def __init__(self, transform: Callable[[np.ndarray], torch.Tensor]) -> None:
        self.transform = transform

    def __call__(self, image: np.ndarray) -> dict[str, torch.Tensor]:
        return {"image": self.transform(image)}


def extract_features(
    encoder: torch.nn.Module,
    items: Sequence[tuple[np.ndarray, int]],
    *,
    image_size: int,
    device: torch.device | str,
    batch_size: int = 256,
    num_workers: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode every item's evaluation view with a frozen encoder.

    Images go through :func:`eval_transform` and :func:`normalize`; the encoder runs in eval
    mode under ``torch.no_grad()`` and is put back in the train/eval mode it had.

    :return: features ``float32 [N, D]`` and labels ``int64 [N]``, both on the CPU, in the
        order of ``items``.
    """
    device = torch.device(device)
    dataset = SampleDataset(items, _AsSample(eval_transform(image_size)))
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    features: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            for batch in loader:
                x = normalize(batch["image"].to(device, non_blocking=True))
                features.append(encoder(x).flatten(1).float().cpu())
                labels.append(batch["label"].to(torch.int64))
    finally:
        encoder.train(was_training)
    if not features:
        return torch.empty(0, 0), torch.empty(0, dtype=torch.int64)
    return torch.cat(features), torch.cat(labels)


class Shard(Sequence):
    """Every ``world``-th item of ``items`` from ``rank`` on: one process's share of a split."""

    def __init__(self, items: Sequence[Any], rank: int, world: int) -> None:
        self.items, self.rank, self.world = items, rank, world

    def __len__(self) -> int:
        return max(0, (len(self.items) - self.rank + self.world - 1) // self.world)

    def __getitem__(self, index: int) -> Any:  # type: ignore[override]
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self.items[self.rank + index * self.world]
