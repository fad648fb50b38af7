"""What images look like to an encoder: ImageNet normalization and the evaluation view."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

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


class AsSample:
    """Adapts an image → tensor transform to the image → dict contract of samples."""

    def __init__(self, transform: Callable[[np.ndarray], torch.Tensor]) -> None:
        self.transform = transform

    def __call__(self, image: np.ndarray) -> dict[str, torch.Tensor]:
        return {"image": self.transform(image)}
