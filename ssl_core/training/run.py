"""The state of one training run, as the engine shares it with lifecycle hooks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from omegaconf import DictConfig

    from ssl_core.config import Selection
    from ssl_core.data import ImageData


@dataclass
class RunContext:
    """What trackers and monitors may read during a run.

    The engine owns every field; hooks read them and may add entries to ``extra``. ``step``
    counts optimizer steps taken; ``artifacts`` maps a name (``checkpoint``, ``encoder``,
    ``config``) to a file written in ``output_dir``. ``batch`` is the current training batch
    (on the device, with ``"label"``) while a step runs. A resumed run has ``resumed_from`` set
    and ``tracking_run_id`` taken from the checkpoint, so trackers continue the same run. ``encoder_prefix`` is where the
    encoder sits in ``model.state_dict()`` (``"online_encoder"`` → ``"online_encoder.*"``).
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
