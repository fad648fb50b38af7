"""MoCo v3's InfoNCE loss over the keys of the whole batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ssl_core.training import distributed


def infonce_loss(q: torch.Tensor, k: torch.Tensor, temperature: float) -> torch.Tensor:
    """ctr(q, k) = 2τ · CrossEntropy(q·kᵀ/τ, own key), q and k ℓ2-normalized.

    ``q`` (queries) and ``k`` (keys of the other view, no gradient needed) are ``[B, d]`` on
    each process. Keys are gathered from every process, so each query is told apart from the
    keys of the global batch; its positive is the key of the same image, at row
    ``rank·B + i``. The 2τ factor is the reference code's, making the gradient scale free of
    τ (Chen, Xie & He 2021, arXiv 2104.02057, Algorithm 1). Returns a float32 scalar.
    """
    # fp32 even under autocast: logits divided by a small τ overflow in fp16.
    q = F.normalize(q.float(), dim=1)
    k = F.normalize(k.detach().float(), dim=1)
    k = distributed.gather(k)
    logits = q @ k.T / temperature
    labels = torch.arange(q.shape[0], device=q.device) + q.shape[0] * distributed.rank()
    return F.cross_entropy(logits, labels) * (2.0 * temperature)
