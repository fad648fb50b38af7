"""The options of the SimSiam method: the ``simsiam`` config group."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ssl_core import option


@dataclass
class SimSiamOptions:
    """SimSiam's head sizes (Chen & He 2021, arXiv 2011.10566, §4 and appendix A).

    The paper's ResNet-50 recipe: projector D→2048→2048→2048, three layers each followed by
    BatchNorm (ReLU on the two hidden ones); predictor 2048→512→2048, a bottleneck of a
    quarter of the width.
    """

    proj_hidden_dim: int = option(2048, "hidden width of the projector", min=1)
    proj_dim: int = option(2048, "output width of the projector and predictor", min=1)
    pred_hidden_dim: int = option(512, "hidden (bottleneck) width of the predictor", min=1)

    @classmethod
    def from_config(cls, config: Any) -> SimSiamOptions:
        """The options in ``config.simsiam``; keys it leaves out keep their defaults."""
        group = config.get("simsiam") if hasattr(config, "get") else None
        if group is None:
            return cls()
        return cls(**{f.name: group[f.name] for f in fields(cls) if f.name in group})
