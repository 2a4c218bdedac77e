"""ado: adaptive data mixtures for language-model pretraining.

The public surface is re-exported here; ``import ado`` never imports torch.
"""

from __future__ import annotations

from ado._core import __version__
from ado.errors import (
    AdoError,
    ConfigError,
    FitError,
    InvalidInputError,
    ShardError,
    StateError,
)

__all__ = [
    "AdoError",
    "ConfigError",
    "FitError",
    "InvalidInputError",
    "ShardError",
    "StateError",
    "__version__",
]
