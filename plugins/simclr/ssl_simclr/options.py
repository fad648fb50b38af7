"""The options of the SimCLR method: the ``simclr`` config group."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ssl_core import option


@dataclass
class SimCLROptions:
    """SimCLR's projection head and temperature (Chen et al. 2020, arXiv 2002.05709).

    The paper's ImageNet recipe: projection head g = W₂·ReLU(BN(W₁·h)) with a hidden layer as
    wide as the ResNet-50 features (2048) and a 128-d output; temperature τ = 0.1 (the paper
    finds 0.5 better on CIFAR-10 with small batches, appendix B.9).
    """

    temperature: float = option(0.1, "NT-Xent temperature tau (0.5 on CIFAR-size data)", min=1e-6)
    proj_hidden_dim: int = option(2048, "hidden width of the projection head", min=1)
    proj_dim: int = option(128, "output width of the projection head", min=1)

    @classmethod
    def from_config(cls, config: Any) -> SimCLROptions:
        """The options in ``config.simclr``; keys it leaves out keep their defaults."""
        group = config.get("simclr") if hasattr(config, "get") else None
        if group is None:
            return cls()
        return cls(**{f.name: group[f.name] for f in fields(cls) if f.name in group})
