"""Offline tools: a closed-loop simulator over synthetic scaling-law domains, and replay of logs."""

from __future__ import annotations

from ado.sim.replay import replay
from ado.sim.simulator import (
    DomainSpec,
    SimResult,
    SimSpec,
    default_spec,
    load_spec,
    plot_weights,
    simulate,
)

__all__ = [
    "DomainSpec",
    "SimResult",
    "SimSpec",
    "default_spec",
    "load_spec",
    "plot_weights",
    "replay",
    "simulate",
]
