"""Several views through a network in one forward pass, BatchNorm still normalizing each view.

Methods like BYOL pass each view through the network on its own, so that BatchNorm in training
mode normalizes a view over its own batch. One pass over the views concatenated is faster
(larger matrix products, half the layer calls) but would normalize over all views at once.
:func:`forward_views` gets both: it runs the concatenated batch, and every BatchNorm layer of
the network normalizes each view's chunk separately and updates its running statistics once
per view, in view order, as consecutive separate passes would. The outputs equal those of
separate passes up to floating-point rounding.

BatchNorm layers (any subclass of torch's ``_BatchNorm``: timm's ``BatchNormAct2d``,
``SyncBatchNorm``) are the only layers handled; a custom layer that mixes samples in another
way would see all views together.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class _PerViewBatchNorm:
    """Mixin over a BatchNorm class: in training, normalize each of ``views_in_batch`` chunks.

    In eval mode BatchNorm uses its running statistics, which treat every sample alike, so the
    batch goes through whole.
    """

    views_in_batch = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normalize = super().forward  # type: ignore[misc]
        views = self.views_in_batch
        if views == 1 or not self.training:
            return normalize(x)
        return torch.cat([normalize(chunk) for chunk in x.chunk(views)])


_PER_VIEW_CLASSES: dict[type, type] = {}


def _per_view_class(cls: type) -> type:
    if issubclass(cls, _PerViewBatchNorm):
        return cls
    if cls not in _PER_VIEW_CLASSES:
        _PER_VIEW_CLASSES[cls] = type(f"PerView{cls.__name__}", (_PerViewBatchNorm, cls), {})
    return _PER_VIEW_CLASSES[cls]


@contextmanager
def views_in_batch(network: nn.Module, views: int) -> Iterator[None]:
    """While inside, BatchNorm layers of ``network`` treat their batch as ``views`` equal chunks.

    The layers change class in place, once, to a subclass of their own (parameters, buffers,
    state-dict keys and ``isinstance`` checks are unchanged); that happens here rather than when
    the model is built so that layers replaced later (``SyncBatchNorm``) are covered too.
    """
    layers = [m for m in network.modules() if isinstance(m, _BatchNorm)]
    for layer in layers:
        layer.__class__ = _per_view_class(type(layer))
        layer.views_in_batch = views
    try:
        yield
    finally:
        for layer in layers:
            layer.views_in_batch = 1


def forward_views(
    network: nn.Module,
    views: Sequence[torch.Tensor],
    call: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> list[torch.Tensor]:
    """``[call(view) for view in views]``, in one pass over the views concatenated.

    :param network: the module whose BatchNorm layers ``call`` goes through.
    :param views: tensors of one shape, ``[B, ...]`` each; views of different shapes go
        through one at a time.
    :param call: what to run on the batch, ``network`` itself by default; it must treat the
        samples of its batch independently except in BatchNorm layers.
    :return: one output per view, in the order of ``views``.
    """
    call = call or network
    if len(views) < 2 or any(v.shape != views[0].shape for v in views):
        return [call(view) for view in views]
    with views_in_batch(network, len(views)):
        return list(call(torch.cat(list(views))).chunk(len(views)))
