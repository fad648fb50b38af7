"""What a loss needs to see the whole batch when a run spans several processes.

Contrastive and self-distillation losses compare each sample with the rest of the *global*
batch (InfoNCE, NT-Xent) or average over it (DINO's centre). Under ``torch.distributed`` each
process holds only its slice; :func:`gather` concatenates the slices of every process in rank
order, and :func:`rank` says where the local slice sits, so a loss can find its positives.

Without an initialized process group (one process, the usual case) :func:`gather` returns its
input, :func:`world_size` is 1 and :func:`rank` is 0, so a loss written with these helpers runs
unchanged on one device and on many.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_initialized() -> bool:
    """Whether a ``torch.distributed`` process group is up."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Processes taking part in the run (1 without a process group)."""
    return dist.get_world_size() if is_initialized() else 1


def rank() -> int:
    """This process's place among them, ``0 <= rank() < world_size()`` (0 without a group)."""
    return dist.get_rank() if is_initialized() else 0


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward hands each process the gradient of its slice.

    Each process computes its loss over its own rows against every gathered row, so the
    gradient of a process's slice is the sum of what every process's loss sends it: the
    backward all-reduces (sums) the incoming gradient and keeps the local slice. Data-parallel
    training then averages gradients over processes as usual.
    """

    @staticmethod
    def forward(ctx: object, tensor: torch.Tensor) -> torch.Tensor:
        slices = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(slices, tensor.contiguous())
        return torch.cat(slices, dim=0)

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad.chunk(dist.get_world_size(), dim=0)[dist.get_rank()]


def gather(tensor: torch.Tensor) -> torch.Tensor:
    """Every process's ``tensor`` concatenated along dim 0, in rank order.

    ``tensor`` is ``[B, ...]`` with the same shape on every process; the result is
    ``[world_size() * B, ...]`` and rows ``rank() * B`` to ``(rank() + 1) * B`` are this
    process's. Gradients flow back to the local slice (see :class:`_GatherWithGrad`); a tensor
    that needs no gradient is gathered without building a graph. Without a process group the
    input itself is returned.
    """
    if not is_initialized() or dist.get_world_size() == 1:
        return tensor
    if tensor.requires_grad:
        return _GatherWithGrad.apply(tensor)
    slices = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(slices, tensor.contiguous())
    return torch.cat(slices, dim=0)
