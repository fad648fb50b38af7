"""ssl_core: a plugin framework for self-supervised learning.

Plugins import :data:`hookimpl` to mark their hook implementations and :func:`option` to
declare typed options. Importing this package does not import torch.
"""

from __future__ import annotations

import pluggy

from ssl_core.errors import ConfigError, UserError
from ssl_core.options import option

__version__ = "0.1.0"

#: Marker for hook implementations in plugins: ``@hookimpl def ssl_register_methods(register)``.
hookimpl = pluggy.HookimplMarker("ssl_core")

__all__ = ["ConfigError", "UserError", "__version__", "hookimpl", "option"]
