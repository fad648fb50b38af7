"""Image data as the engine sees it: the contract of dataset plugins.

Importing this module does not import torch: dataset plugins import :class:`ImageData` from
here when plugins are listed. The loaders are in :mod:`ssl_core.data.loader`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


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
