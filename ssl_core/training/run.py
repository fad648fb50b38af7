"""Where a run is, as the engine tells step hooks (:class:`StepInfo`) and lifecycle hooks
(:class:`RunContext`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from omegaconf import DictConfig

    from ssl_core.config import Selection
    from ssl_core.data import ImageData


@dataclass(frozen=True)
class StepInfo:
    """Where the run is, for a step hook.

    ``step`` counts optimizer steps taken before the one under way (0 for the first; for
    ``ssl_update_target``, the step just made); ``epoch`` is the 0-based epoch it belongs to;
    ``steps_per_epoch`` and ``total_steps`` are optimizer steps (``total_steps`` is the whole
    run's, ``trainer.max_steps`` included).
    """

    step: int
    epoch: int
    steps_per_epoch: int
    total_steps: int

    @property
    def progress(self) -> float:
        """The share of the run's optimizer steps taken, in ``[0, 1]``."""
        return min(max(self.step / self.total_steps, 0.0), 1.0) if self.total_steps else 0.0


@dataclass
class RunContext:
    """What trackers and monitors may read during a run.

    The engine owns every field; hooks read them and may add entries to ``extra``. ``step``
    counts optimizer steps taken; ``artifacts`` maps a name (``checkpoint``, ``encoder``,
    ``config``) to a file written in ``output_dir``. ``batch`` is the current training batch
    (on the device, with ``"label"``) while a step runs. A resumed run has ``resumed_from`` set
    and ``tracking_run_id`` taken from the checkpoint, so trackers continue the same run.
    ``encoder_prefix`` is where the encoder sits in ``model.state_dict()`` (``"online_encoder"`` → ``"online_encoder.*"``).
    A lifecycle plugin may end the run with :meth:`fail`, and may name in ``keep_checkpoint``
    a step checkpoint that the rotation (``trainer.keep_checkpoints``) must not delete (a
    guard keeps the last one written before trouble started).
    """

    config: DictConfig
    selection: Selection
    output_dir: Path
    device: torch.device
    model: torch.nn.Module
    encoder: torch.nn.Module
    optimizer: torch.optim.Optimizer
    total_steps: int
    steps_per_epoch: int
    batch_size: int
    data: ImageData | None = None
    encoder_prefix: str = ""
    batch: dict[str, Any] | None = None
    plugin_versions: dict[str, str] = field(default_factory=dict)
    artifacts: dict[str, Path] = field(default_factory=dict)
    step: int = 0
    epoch: int = 0
    tracking_run_id: str | None = None
    resumed_from: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    failure: str | None = None
    keep_checkpoint: Path | None = None

    def fail(self, message: str) -> None:
        """End the run as FAILED with ``message`` (one line, say what to change), exit code 1.

        For lifecycle plugins (a guard that watches the training): the engine raises
        :class:`ssl_core.errors.RunFailed` at the next optimizer step boundary, on every
        process at once, without a further optimizer step or checkpoint; ``ssl_run_end``
        then reports ``FAILED``. The first call's message wins.
        """
        if self.failure is None:
            self.failure = message

    @property
    def info(self) -> StepInfo:
        """The run's position as step hooks see it."""
        return StepInfo(self.step, self.epoch, self.steps_per_epoch, self.total_steps)

    @property
    def tags(self) -> dict[str, str]:
        """Tags naming what ran: method, backbone, view generator, dataset, plugin versions."""
        tags = {
            "method": self.selection.method.name,
            "backbone": str(self.config.backbone.name),
            "augment": self.selection.view_generator.name,
            "data": self.selection.dataset.name,
            "device": str(self.device),
        }
        tags.update({f"plugin.{dist}": ver for dist, ver in self.plugin_versions.items()})
        return tags
