"""The options of the DINO method: the ``dino`` config group."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ssl_core import option


@dataclass
class DINOOptions:
    """DINO's head, temperatures, centre and teacher momentum (Caron et al. 2021, arXiv 2104.14294).

    The defaults of the reference code: head of 3 layers D→2048→2048→256 with GELU and no
    BatchNorm, ℓ2-normalized, then a weight-normalized linear layer to K = 65536 prototypes
    whose norm is fixed to 1 and which stays frozen for the first epoch; student temperature
    0.1, teacher temperature 0.04 (the paper's ViT-S/16 recipe warms it up from 0.04 to 0.07
    over 30 epochs); centre momentum 0.9; teacher momentum 0.996 raised to 1 along a cosine.
    """

    out_dim: int = option(65536, "prototypes K: output width of the head", min=1)
    hidden_dim: int = option(2048, "hidden width of the head's MLP", min=1)
    bottleneck_dim: int = option(256, "width of the MLP's output, before the last layer", min=1)
    head_layers: int = option(3, "linear layers of the head's MLP", min=1)
    use_bn_in_head: bool = option(False, "BatchNorm after the hidden layers of the head")
    norm_last_layer: bool = option(True, "fix the norm of the last layer's weight to 1")
    freeze_last_layer_epochs: int = option(
        1, "epochs during which the last layer of the head is not trained", min=0
    )
    student_temp: float = option(0.1, "temperature of the student softmax", min=1e-6)
    teacher_temp: float = option(0.04, "temperature of the teacher softmax after warm-up", min=1e-6)
    warmup_teacher_temp: float = option(
        0.04, "temperature of the teacher softmax at the first epoch", min=1e-6
    )
    warmup_teacher_temp_epochs: int = option(
        0, "epochs of linear warm-up of the teacher temperature", min=0
    )
    center_momentum: float = option(
        0.9, "momentum of the centre of the teacher outputs", min=0.0, max=1.0
    )
    momentum_teacher: float = option(
        0.996, "EMA decay of the teacher at step 0; rises to 1 by the last step", min=0.0, max=1.0
    )

    @classmethod
    def from_config(cls, config: Any) -> DINOOptions:
        """The options in ``config.dino``; keys it leaves out keep their defaults."""
        group = config.get("dino") if hasattr(config, "get") else None
        if group is None:
            return cls()
        return cls(**{f.name: group[f.name] for f in fields(cls) if f.name in group})
