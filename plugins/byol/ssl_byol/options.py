"""The options of the BYOL method: the ``byol`` config group."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ssl_core import option


@dataclass
class BYOLOptions:
    """BYOL's head sizes and EMA decay (Grill et al. 2020, arXiv 2006.07733).

    The paper's recipe: projector D→4096→256 and predictor 256→4096→256, each
    Linear → BatchNorm → ReLU → Linear; τ_base = 0.996 for 1000 epochs (0.99 for 100–300),
    raised to 1 along a cosine over the run's optimizer steps. Each view goes through the
    networks on its own, as in the reference; ``concat_views`` trades that for speed.
    """

    tau_base: float = option(
        0.996, "EMA decay of the target at step 0; rises to 1 by the last step", min=0.0, max=1.0
    )
    proj_hidden_dim: int = option(4096, "hidden width of the projector", min=1)
    proj_dim: int = option(256, "output width of the projector and predictor", min=1)
    pred_hidden_dim: int = option(4096, "hidden width of the predictor", min=1)
    concat_views: bool = option(
        False,
        "one forward pass over both views (faster; BatchNorm statistics then span both views, "
        "unlike the paper)",
    )

    @classmethod
    def from_config(cls, config: Any) -> BYOLOptions:
        """The options in ``config.byol``; keys it leaves out keep their defaults."""
        group = config.get("byol") if hasattr(config, "get") else None
        if group is None:
            return cls()
        return cls(**{f.name: group[f.name] for f in fields(cls) if f.name in group})
