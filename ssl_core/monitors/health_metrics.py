"""Representation health of a batch of features: spread, effective rank, alignment, uniformity.

Each is computed on one batch of features ``z`` (``[N, d]``, the rows of one view) and, for
alignment, the same images' features under a second view. The formulas are the references':

- ``feature_std``: the per-dimension standard deviation of the L2-normalized rows, averaged
  over dimensions (SimSiam, Chen & He 2021, §4.1; lightly's ``std_of_l2_normalized``,
  solo-learn's ``z_std``). 0 when every row is the same vector (complete collapse);
  ``1/sqrt(d)`` for isotropic features, so ``feature_std_ratio = feature_std * sqrt(d)`` is 1
  there, about 0.6-0.8 for a healthy ResNet's pooled features.
- ``rankme``: the effective rank of the raw (uncentered) features, ``exp`` of the entropy of
  their normalized singular values, ``p_k = s_k / sum(s) + 1e-7`` (RankMe, Garrido et al.
  2023, eq. 1). In ``[1, min(N, d)]``; 1 for constant or rank-1 features. It grows with N, so
  ``rankme_ratio = rankme / min(N, d)`` is logged too and runs are compared at equal N.
- ``uniform``: ``log mean exp(-2 |x_i - x_j|^2)`` over the pairs of normalized rows (Wang &
  Isola 2020); about -4 for isotropic features, 0 when collapsed.
- ``align``: ``mean |x_i - y_i|^2`` between the normalized features of the two views of the
  same image (Wang & Isola 2020); 0 when the views agree (learned invariance, or collapse), 2
  when they are unrelated.

The singular values come from the eigenvalues of the float64 Gram matrix (``z z^T`` or
``z^T z``, the smaller): the same values as ``torch.linalg.svdvals`` to ~1e-6, and 5-10 times
faster (0.4 ms for all the metrics of 64 x 512 features on a CPU core).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: ε of RankMe's normalized singular values (the reference implementations' 1e-7).
RANKME_EPS = 1e-7

#: The metric names, in the order they are logged.
METRICS = ("feature_std", "feature_std_ratio", "rankme", "rankme_ratio", "uniform", "align")


def singular_values(z: torch.Tensor) -> torch.Tensor:
    """Singular values of ``z`` ``[N, d]`` from the float64 Gram matrix's eigenvalues."""
    z = z.double()
    if z.device.type == "mps":  # no float64 there
        z = z.cpu()
    gram = z @ z.T if z.shape[0] <= z.shape[1] else z.T @ z
    return torch.linalg.eigvalsh(gram).clamp_min(0).sqrt()


def rankme(z: torch.Tensor, eps: float = RANKME_EPS) -> torch.Tensor:
    """RankMe (Garrido et al. 2023, eq. 1) of the raw features ``z`` ``[N, d]``, a 0-d tensor."""
    s = singular_values(z)
    p = s / s.sum().clamp_min(torch.finfo(s.dtype).tiny) + eps
    return torch.exp(-(p * p.log()).sum())


def uniformity(x: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """Wang & Isola's uniformity of the L2-normalized rows ``x``: log E exp(-t |x_i - x_j|^2)."""
    return torch.pdist(x, p=2).pow(2).mul(-t).exp().mean().log()


@torch.no_grad()
def health(z1: torch.Tensor, z2: torch.Tensor | None = None) -> dict[str, float]:
    """The health metrics of features ``z1`` ``[N, d]`` (and ``align`` with ``z2``, same shape).

    Needs ``N >= 2``. Non-finite features give NaN for every metric.
    """
    z1 = z1.flatten(1).float()
    n, d = z1.shape
    if n < 2:
        raise ValueError(f"health metrics need at least 2 samples, got {n}")
    if z2 is not None and z2.shape != z1.shape:
        z2 = None
    if not bool(torch.isfinite(z1).all()) or (
        z2 is not None and not bool(torch.isfinite(z2).all())
    ):
        keys = METRICS if z2 is not None else METRICS[:-1]
        return {key: math.nan for key in keys}
    x = F.normalize(z1, dim=1)
    std = x.std(dim=0).mean()
    rank = rankme(z1).to(std)
    values = [std, std * math.sqrt(d), rank, rank / min(n, d), uniformity(x)]
    if z2 is not None:
        y = F.normalize(z2.flatten(1).float(), dim=1)
        values.append((x - y).pow(2).sum(dim=1).mean())
    # one transfer for all of them (one synchronization on CUDA)
    return dict(zip(METRICS, torch.stack(values).tolist(), strict=False))
