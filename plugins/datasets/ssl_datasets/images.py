"""Image files as ``uint8 HxWx3`` RGB arrays, whatever their mode; why a file is unreadable."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ssl_core.errors import UserError

if TYPE_CHECKING:
    from PIL import Image

#: PIL modes with an alpha channel ("RGBa" and "La" are premultiplied).
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})


class UnreadableImage(UserError):
    """An image file that cannot be decoded when it is loaded, with ``data.strict=true``.

    The message is one line. A DataLoader worker's exception comes back to the main process
    rebuilt from a message that embeds the worker's traceback; only our own line is kept.
    """

    def __init__(self, message: str) -> None:
        lines = [line for line in str(message).splitlines() if line.strip()]
        if len(lines) > 1:
            marker = f"{type(self).__qualname__}: "
            last = lines[-1]
            message = last[last.index(marker) + len(marker) :] if marker in last else last
        super().__init__(message)


def _scale_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """A single-channel image of more than 8 bits per pixel, scaled (not clipped) to 0–255."""
    values = values.astype(np.float64)
    if mode.startswith("I;16") or (mode == "I" and values.min() >= 0 and values.max() <= 65535):
        # 16-bit PNGs open as I;16 or I; their full scale is 65535, and 65535 / 257 = 255.
        scaled = values / 257.0
    elif mode == "F" and values.min() >= 0.0 and values.max() <= 1.0:
        scaled = values * 255.0
    else:
        low, high = values.min(), values.max()
        scaled = (values - low) * (255.0 / (high - low)) if high > low else values * 0.0
    return np.rint(np.clip(scaled, 0.0, 255.0)).astype(np.uint8)


def pil_to_rgb(image: Image.Image) -> np.ndarray:
    """A PIL image as ``uint8 HxWx3`` RGB, whatever its mode.

    EXIF orientation is applied. Grayscale and palette images are expanded to RGB. An alpha
    channel (RGBA, LA, PA, or a palette/colour-key transparency) is composited on **black**:
    the colour under fully transparent pixels is arbitrary in many files, so it must not leak
    into the image. 16-bit (``I;16``, ``I``) and float (``F``) images are scaled to 8 bits.
    """
    from PIL import ImageOps

    image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return np.array(image, dtype=np.uint8)
    if mode.startswith("I") or mode == "F":
        gray = _scale_to_uint8(np.asarray(image), mode)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint16)
        alpha = rgba[..., 3:]
        # rounded integer rgb·α/255 (alpha 255 keeps the pixel, alpha 0 gives black)
        return ((rgba[..., :3] * alpha + 127) // 255).astype(np.uint8)
    return np.array(image.convert("RGB"), dtype=np.uint8)


def reason(exc: BaseException) -> str:
    """The first line of an exception's message, or its type when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0].rstrip(".") if text else type(exc).__name__


def check_image(path: Path | str) -> str | None:
    """Why ``path`` is not a readable image, or ``None`` when it is.

    Cheap enough to run on every file of a dataset: PIL reads the header and ``verify()``
    checks what the format allows without decoding pixels (PNG chunk checksums, so a
    truncated PNG is caught). A JPEG or BMP whose pixel data is cut short passes and is
    caught when it is loaded (see :class:`FolderImages`).
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.verify()
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, struct.error...
        return reason(exc)
    return None
