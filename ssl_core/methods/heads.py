"""The MLP heads of SSL methods (projectors, predictors), built by one function.

BYOL's projector and predictor, SimCLR's projection head, SimSiam's projector and predictor,
MoCo v3's MLPs, DINO's head MLP and Barlow Twins' projector are all one shape: ``layers``
linear layers, each hidden one followed by BatchNorm (or not) and an activation, the output
one followed by an affine-free BatchNorm or by nothing. :func:`mlp` builds each of them with
the paper's flags, so a method names its heads in its paper's words and says nothing else.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn


def _relu() -> nn.Module:
    return nn.ReLU(inplace=True)


def mlp(
    in_dim: int,
    hidden_dim: int,
    out_dim: int,
    *,
    layers: int = 2,
    batch_norm: bool = True,
    last_batch_norm: bool = False,
    bias: bool | None = None,
    last_bias: bool | None = None,
    activation: Callable[[], nn.Module] = _relu,
) -> nn.Sequential:
    """``layers`` linear layers ``in_dim → hidden_dim → … → out_dim``: ``[B, in_dim]`` to ``[B, out_dim]``.

    Each hidden layer is Linear → BatchNorm1d (when ``batch_norm``) → ``activation()``; the
    output layer is a Linear, followed by an affine-free BatchNorm1d when ``last_batch_norm``
    (SimSiam's and MoCo v3's projectors). A linear layer followed by BatchNorm gets no bias by
    default, BatchNorm's shift making it redundant: ``bias`` (hidden layers) and ``last_bias``
    (output layer) override that. The layers are the module's children ``0, 1, 2, ...`` in
    order, so state-dict keys read ``projector.0.weight``.

    Examples, with the papers' widths::

        mlp(2048, 4096, 256)                                   # BYOL projector / predictor
        mlp(2048, 2048, 2048, layers=3, last_batch_norm=True)  # SimSiam projector
        mlp(256, 4096, 256, last_bias=False)                   # MoCo v3 predictor

    :raises ValueError: when ``layers < 1``.
    """
    if layers < 1:
        raise ValueError(f"an MLP needs at least one layer, got layers={layers}")
    bias = (not batch_norm) if bias is None else bias
    last_bias = (not last_batch_norm) if last_bias is None else last_bias
    modules: list[nn.Module] = []
    width = in_dim
    for _ in range(layers - 1):
        modules.append(nn.Linear(width, hidden_dim, bias=bias))
        if batch_norm:
            modules.append(nn.BatchNorm1d(hidden_dim))
        modules.append(activation())
        width = hidden_dim
    modules.append(nn.Linear(width, out_dim, bias=last_bias))
    if last_batch_norm:
        modules.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*modules)
