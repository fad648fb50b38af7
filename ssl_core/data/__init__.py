"""Images for training and evaluation: the dataset contract, loaders and transforms.

Importing this package does not import torch: dataset plugins import :class:`ImageData` from
here when plugins are listed. The loaders are in :mod:`ssl_core.data.loader`, the evaluation
view and normalization in :mod:`ssl_core.data.transforms`, frozen features in
:mod:`ssl_core.data.features`.
"""

from __future__ import annotations

from ssl_core.data.image_data import ImageData

__all__ = ["ImageData"]
