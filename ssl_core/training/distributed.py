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

import contextvars
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

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


# --- running as one of several processes ------------------------------------------------------


def launched_world_size() -> int:
    """Processes the launcher (``torchrun``, SLURM via ``torchrun``) started: ``$WORLD_SIZE``."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    """This process's place on its machine: ``$LOCAL_RANK`` (0 without a launcher)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """Whether this process is rank 0: the one that writes files and talks to trackers."""
    return rank() == 0


@contextmanager
def process_group(device_type: str) -> Iterator[bool]:
    """Join the launcher's process group for the duration of a run; yields whether one is up.

    Under ``torchrun`` (``$WORLD_SIZE`` > 1) the group is initialized from the environment
    (``MASTER_ADDR``, ``MASTER_PORT``, ``RANK``) with NCCL when training on CUDA, each process
    on device ``cuda:$LOCAL_RANK``, and gloo otherwise; it is destroyed on the way out. A group
    that is already up (started by the caller) is used and left alone. One process: nothing.
    """
    if launched_world_size() <= 1 or is_initialized():
        yield is_initialized()
        return
    if device_type == "cuda":
        torch.cuda.set_device(local_rank())
        dist.init_process_group("nccl", timeout=TIMEOUT)
    else:
        dist.init_process_group("gloo", timeout=TIMEOUT)
    try:
        yield True
    finally:
        dist.destroy_process_group()


#: How long a process waits at a collective for the others: rank 0 may spend a while on
#: a kNN evaluation or a checkpoint write on a slow disk while the rest wait.
TIMEOUT = timedelta(minutes=60)


def barrier() -> None:
    """Wait until every process gets here (nothing without a group)."""
    if is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """``values`` summed over processes, in place and returned (unchanged in one process)."""
    if is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def any_process(flag: bool, device: Any) -> bool:
    """Whether ``flag`` is true on any process (a collective: every process must call it)."""
    if not (is_initialized() and dist.get_world_size() > 1):
        return flag
    return bool(all_reduce_sum(torch.tensor([float(flag)], device=device)).item() > 0)


def gather_objects(obj: Any) -> list[Any] | None:
    """Every process's picklable ``obj`` in rank order on rank 0, ``None`` elsewhere."""
    if not is_initialized() or dist.get_world_size() == 1:
        return [obj]
    gathered: list[Any] | None = [None] * dist.get_world_size() if is_main() else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered


def broadcast_object(obj: Any) -> Any:
    """Rank 0's picklable ``obj`` on every process (``obj`` itself in one process)."""
    if not is_initialized() or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# --- the model a step hook gets ----------------------------------------------------------------

_THROUGH_WRAPPER: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "ssl_core_through_wrapper", default=False
)


class _CallsThroughWrapper:
    """Mixin over a model's class: calling the model runs its data-parallel wrapper.

    The wrapper calls the model back, which then runs its own ``forward`` (the context
    variable tells the two calls apart).
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        wrapper = self.__dict__.get("_ssl_wrapper")
        if wrapper is None or _THROUGH_WRAPPER.get():
            return super().__call__(*args, **kwargs)  # type: ignore[misc]
        token = _THROUGH_WRAPPER.set(True)
        try:
            return wrapper(*args, **kwargs)
        finally:
            _THROUGH_WRAPPER.reset(token)


@contextmanager
def calls_through(model: torch.nn.Module, wrapper: torch.nn.Module) -> Iterator[None]:
    """While inside, ``model(...)`` runs ``wrapper(...)`` (``DistributedDataParallel(model)``).

    Step hooks are given the model itself, with its attributes and methods, and a method
    calls it as on one device; its forward pass still goes through the wrapper, which
    synchronizes gradients. The model's class is swapped in place for a subclass of its own
    and put back on the way out (parameters, state-dict keys and ``isinstance`` checks are
    unchanged).
    """
    cls = type(model)
    model.__class__ = type(cls.__name__, (_CallsThroughWrapper, cls), {})
    # Not an attribute set through nn.Module: the wrapper must not become a submodule.
    model.__dict__["_ssl_wrapper"] = wrapper
    try:
        yield
    finally:
        model.__dict__.pop("_ssl_wrapper", None)
        model.__class__ = cls
