"""A dry forward of the backbone before training, so a view size it cannot take is a user error.

Some backbones take only one input size (timm ViTs and Swins assert it), others shrink the
image below their kernels at small sizes (ConvNeXt under 32 px). Without a probe that shows
as a traceback at the first training step; with it, as one line naming ``data.image_size``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ssl_core.errors import UserError

if TYPE_CHECKING:
    import torch

#: Largest view size tried when looking for one the backbone takes (beyond its own default).
_LARGEST_TRIED = 512


def _forward_error(backbone: torch.nn.Module, size: int, device: torch.device) -> Exception | None:
    """The exception a forward of one ``size``×``size`` image raises, or ``None``."""
    import torch

    x = torch.zeros(1, 3, size, size, device=device)
    try:
        backbone(x)
    except torch.OutOfMemoryError:
        raise  # not about the size; the user must see it as it is
    except (AssertionError, RuntimeError, ValueError, IndexError) as exc:
        return exc
    return None


#: Input sizes networks are commonly built for (ImageNet's 224, its 256 and 384 variants,
#: DINOv2's 518), tried besides the doublings of the asked size.
_COMMON_SIZES = (224, 256, 384, 518)


def _sizes_to_try(image_size: int) -> list[int]:
    """Larger sizes to try, ascending: doublings of ``image_size`` and :data:`_COMMON_SIZES`."""
    sizes = {image_size * 2**k for k in range(1, 10) if image_size * 2**k <= _LARGEST_TRIED}
    sizes |= {size for size in _COMMON_SIZES if size > image_size}
    return sorted(sizes)


def check_input_size(
    backbone: torch.nn.Module, image_size: int, device: torch.device | str, name: str
) -> None:
    """Run ``backbone`` once on a blank ``image_size`` view; fail clearly if it cannot take it.

    The backbone must already be on ``device``. It runs in eval mode under ``no_grad`` and
    with the CPU RNG forked, so neither its buffers (BatchNorm statistics), the train/eval
    mode of any submodule, nor a random stream is changed. The size is blamed only when a
    larger one works; any other failure is re-raised as it is.

    :param name: the backbone's name as the user gave it (``config.backbone.name``).
    :raises UserError: naming ``data.image_size``, the backbone, its own complaint, and a
        size that works.
    """
    import torch

    device = torch.device(device)
    modes = {module: module.training for module in backbone.modules()}
    backbone.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            error = _forward_error(backbone, image_size, device)
            if error is None:
                return
            larger = _sizes_to_try(image_size)
            works = next((s for s in larger if _forward_error(backbone, s, device) is None), None)
    finally:
        for module, training in modes.items():
            module.training = training
    if works is None:
        raise error
    text = str(error).strip()
    reason = text.splitlines()[0].rstrip(".") if text else type(error).__name__
    raise UserError(
        f"data.image_size={image_size} does not fit backbone '{name}' ({reason}); "
        f"data.image_size={works} works"
    ) from error
