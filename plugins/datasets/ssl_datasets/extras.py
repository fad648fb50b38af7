"""Optional libraries some datasets need: imported when a run selects the dataset, or one line."""

from __future__ import annotations

import importlib
from types import ModuleType

from ssl_core import UserError


def require(module: str, *, dataset: str, package: str, extra: str) -> ModuleType:
    """Import ``module``, or say which extra of ssl-core installs it.

    :raises UserError: ``data=<dataset> needs the <package> package: pip install
        'ssl-core[<extra>]'`` when the import fails (exit code 2, no traceback).
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(
            f"data={dataset} needs the {package} package: pip install 'ssl-core[{extra}]'"
        ) from None
