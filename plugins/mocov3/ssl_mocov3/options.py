"""The options of the MoCo v3 method: the ``mocov3`` config group."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ssl_core import option


@dataclass
class MoCoV3Options:
    """MoCo v3's head sizes, temperature and momentum (Chen, Xie & He 2021, arXiv 2104.02057).

    The paper's ResNet-50 recipe (its reference code): projector of 2 layers D→4096→256 and
    predictor 256→4096→256, every hidden layer Linear → BatchNorm → ReLU, the projector's
    output followed by BatchNorm without affine parameters; temperature τ = 1.0 (0.2 for
    ViT, whose projector has 3 layers); momentum m = 0.99 raised to 1 along a cosine.
    """

    temperature: float = option(1.0, "InfoNCE temperature tau (0.2 for ViT)", min=1e-6)
    momentum: float = option(
        0.99,
        "momentum m of the key encoder at step 0; rises to 1 by the last step",
        min=0.0,
        max=1.0,
    )
    proj_layers: int = option(2, "linear layers of the projector (2 for ResNet, 3 for ViT)", min=1)
    proj_hidden_dim: int = option(4096, "hidden width of the projector", min=1)
    proj_dim: int = option(256, "output width of the projector and predictor", min=1)
    pred_hidden_dim: int = option(4096, "hidden width of the predictor", min=1)

    @classmethod
    def from_config(cls, config: Any) -> MoCoV3Options:
        """The options in ``config.mocov3``; keys it leaves out keep their defaults."""
        group = config.get("mocov3") if hasattr(config, "get") else None
        if group is None:
            return cls()
        return cls(**{f.name: group[f.name] for f in fields(cls) if f.name in group})
