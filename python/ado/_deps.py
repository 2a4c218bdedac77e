"""Optional dependencies: import one, or say which extra of ``ado`` brings it."""

from __future__ import annotations

import importlib
from types import ModuleType

from ado.errors import MissingDependencyError

__all__ = ["require"]


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module``; if it is missing, raise an error that names the extra to install.

    Args:
        module: what to import (``"matplotlib.pyplot"``).
        extra: the ``ado`` extra that installs it (``"plot"``).
        purpose: what needs it, for the message (``"ado simulate's plot"``).

    Raises:
        MissingDependencyError: (an ``ImportError``) the module cannot be imported.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        package = module.split(".")[0]
        raise MissingDependencyError(
            f"{purpose} needs {package!r}, which is not installed: pip install 'ado[{extra}]' "
            f"({err})"
        ) from err
