"""Image data as the engine sees it: a contract for dataset plugins, and the loaders.

Importing this module does not import torch (dataset plugins import :class:`ImageData` from
here when plugins are listed); the loaders and helpers import it when called.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import UserError

if TYPE_CHECKING:
    import torch
    from torch.utils.data import DataLoader


@dataclass
class ImageData:
    """What a dataset plugin's ``ssl_build_dataset`` returns.

    ``train`` and ``val`` are sequences of ``(image, label)``: ``image`` a ``uint8`` ``HxWx3``
    numpy array of any size, ``label`` an ``int`` (``-1`` when unlabelled). Labels are used for
    evaluation only. ``val`` is the labelled held-out split for kNN, or ``None``.
    """

    train: Sequence[tuple[np.ndarray, int]]
    val: Sequence[tuple[np.ndarray, int]] | None = None
    classes: list[str] | None = None

    @property
    def labelled(self) -> bool:
        return self.classes is not None and self.val is not None and len(self.val) > 0


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
    import torch

    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


# --- the training loader ---------------------------------------------------------------------


def _define_sample_dataset() -> type:
    from torch.utils.data import Dataset

    class SampleDataset(Dataset):
        """``(image, label)`` items seen through a per-sample transform.

        ``transform`` is the callable returned by ``ssl_sample_transform`` (image → dict of
        tensors); ``dataset[i]`` is that dict plus ``"label"`` (an ``int``, ``-1`` when
        unlabelled). Picklable when ``items`` and ``transform`` are, so it works in workers.
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

        def __getitem__(self, index: int) -> dict[str, Any]:
            image, label = self.items[index]
            sample = dict(self.transform(image))
            sample["label"] = int(label)
            return sample

    SampleDataset.__module__ = __name__
    SampleDataset.__qualname__ = "SampleDataset"
    return SampleDataset


if TYPE_CHECKING:
    from torch.utils.data import Dataset

    class SampleDataset(Dataset):
        def __init__(
            self,
            items: Sequence[tuple[np.ndarray, int]],
            transform: Callable[[np.ndarray], dict[str, Any]],
        ) -> None: ...
        def __len__(self) -> int: ...
        def __getitem__(self, index: int) -> dict[str, Any]: ...


def _sample_dataset_class() -> type[SampleDataset]:
    # ``SampleDataset`` subclasses a torch class; it is defined once, on first use, so that
    # dataset plugins can import ``ImageData`` from here without paying for ``import torch``.
    # It is kept as a module global because pickle finds the class of instances by name.
    cls = globals().get("SampleDataset")
    if cls is None:
        cls = globals()["SampleDataset"] = _define_sample_dataset()
    return cls


def __getattr__(name: str) -> Any:
    if name == "SampleDataset":
        return _sample_dataset_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _seed_worker(worker_id: int) -> None:
    """Seed numpy and ``random`` in a DataLoader worker from the seed torch gave it."""
    import torch

    # torch derives each worker's seed from the loader's generator, so this is reproducible
    # and differs between workers (without it, forked workers share numpy's state).
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def build_train_loader(
    items: Sequence[tuple[np.ndarray, int]],
    transform: Callable[[np.ndarray], dict[str, Any]],
    *,
    batch_size: int,
    num_workers: int,
    seed: int,
    pin_memory: bool,
) -> DataLoader:
    """The shuffled training loader over ``items`` seen through ``transform``.

    Batches are the default collate of :class:`SampleDataset` samples (dicts of tensors, lists
    of tensors, ``"label"`` an int64 tensor); the last incomplete batch is dropped. The order
    depends only on ``seed``; workers stay alive between epochs and have numpy and ``random``
    seeded per worker.

    :raises UserError: when there are fewer items than ``batch_size``.
    """
    import torch
    from torch.utils.data import DataLoader

    if len(items) < batch_size:
        raise UserError(
            f"the training set has {len(items)} images, fewer than one batch "
            f"(trainer.batch_size={batch_size}); lower trainer.batch_size or add images"
        )
    generator = torch.Generator()
    generator.manual_seed(seed)
    workers = max(0, num_workers)
    return DataLoader(
        _sample_dataset_class()(items, transform),
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        worker_init_fn=_seed_worker if workers > 0 else None,
        generator=generator,
        pin_memory=pin_memory,
    )


def to_device(batch: Any, device: torch.device | str) -> Any:
    """``batch`` with every tensor in its dicts, lists and tuples moved to ``device``.

    Copies are ``non_blocking`` (asynchronous from pinned memory); other values are kept.
    """
    import torch

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
        import torch
        import torch.nn.functional as F

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
    import torch
    from torch.utils.data import DataLoader

    device = torch.device(device)
    dataset = _sample_dataset_class()(items, _AsSample(eval_transform(image_size)))
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
