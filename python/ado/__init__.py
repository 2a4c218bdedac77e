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
from ado.policy import (
    Policy,
    PolicyConfig,
    load_policy,
    load_policy_config,
    policy_kinds,
    register_policy,
)
from ado.schedule import LrSchedule
from ado.stats import StepStats

__all__ = [
    "AdoError",
    "ConfigError",
    "FitError",
    "InvalidInputError",
    "LrSchedule",
    "Policy",
    "PolicyConfig",
    "ShardError",
    "StateError",
    "StepStats",
    "__version__",
    "load_policy",
    "load_policy_config",
    "policy_kinds",
    "register_policy",
]
