"""Data-mixture policies: the contract, built-in policies, guardrails, registry and loader.

Importing this package registers the built-in kinds: ``static``, ``temperature``, ``doremi``,
``odm`` and ``ado``.
"""

from __future__ import annotations

from ado.policy.ado import ADO, clip_min_probability
from ado.policy.base import (
    ENTRY_POINT_GROUP,
    STATE_FORMAT_VERSION,
    Guarded,
    Policy,
    PolicyConfig,
    load_policy,
    load_policy_config,
    policy_kinds,
    register_policy,
)
from ado.policy.doremi import DoReMi
from ado.policy.guardrails import (
    FallbackConfig,
    FloorConfig,
    GuardrailConfig,
    MaxChangeConfig,
    SmoothingConfig,
    TokenBudgetConfig,
    WarmupConfig,
    project_floor,
)
from ado.policy.odm import ODM
from ado.policy.presets import preset_dir, presets, resolve_policy
from ado.policy.static import Static
from ado.policy.temperature import Temperature

__all__ = [
    "ADO",
    "ENTRY_POINT_GROUP",
    "ODM",
    "STATE_FORMAT_VERSION",
    "DoReMi",
    "FallbackConfig",
    "FloorConfig",
    "Guarded",
    "GuardrailConfig",
    "MaxChangeConfig",
    "Policy",
    "PolicyConfig",
    "SmoothingConfig",
    "Static",
    "Temperature",
    "TokenBudgetConfig",
    "WarmupConfig",
    "clip_min_probability",
    "load_policy",
    "load_policy_config",
    "policy_kinds",
    "preset_dir",
    "presets",
    "project_floor",
    "register_policy",
    "resolve_policy",
]
