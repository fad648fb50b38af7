"""A method's loss hook called as under data-parallel training: through a wrapper model."""

from __future__ import annotations

from typing import Any

from torch import nn

from ssl_core.training.distributed import calls_through


class RecordingWrapper(nn.Module):
    """Stands for DistributedDataParallel: records each call's number of views and calls the
    model back."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.inner = [module]  # not a submodule
        self.calls: list[int] = []

    def forward(self, *args: Any) -> Any:
        self.calls.append(len(args[0]))
        return self.inner[0](*args)


def loss_through_wrapper(run: Any, model: nn.Module, views: Any, **kwargs: Any) -> tuple:
    """``run.ssl_compute_loss`` with the model's calls going through a wrapper: the hook's
    output, and the number of views of each call the wrapper saw."""
    wrapper = RecordingWrapper(model)
    with calls_through(model, wrapper):
        out = run.ssl_compute_loss(model=model, views=views, **kwargs)
    return out, wrapper.calls
