"""Estimators: per-domain signals computed from the training-loss stream."""

from __future__ import annotations

from ado.estimators.power_law import (
    FitConfig,
    Limit,
    PowerLawEstimator,
    PowerLawFit,
    fit_power_laws,
    objective,
)

__all__ = [
    "FitConfig",
    "Limit",
    "PowerLawEstimator",
    "PowerLawFit",
    "fit_power_laws",
    "objective",
]
