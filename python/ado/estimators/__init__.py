"""Estimators: per-domain signals computed from the training-loss stream."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from ado.estimators.base import Estimator, EstimatorConfigBase
from ado.estimators.ema import LossEMAConfig, LossEMAEstimator
from ado.estimators.excess import ExcessLossConfig, ExcessLossEstimator
from ado.estimators.lr_law import LrFitConfig, LrLawFit, fit_lr_laws, lr_areas
from ado.estimators.power_law import (
    FitConfig,
    Limit,
    PowerLawEstimator,
    PowerLawEstimatorConfig,
    PowerLawFit,
    fit_power_laws,
    objective,
)
from ado.estimators.scaling import ScalingLawConfig, ScalingLawEstimator
from ado.estimators.target import HeldOutTargetConfig, HeldOutTargetEstimator
from ado.estimators.transfer import TransferConfig, TransferEstimator

#: The estimators a policy can be given in YAML (``estimator: {kind: loss_ema | excess_loss}``).
EstimatorConfig = Annotated[LossEMAConfig | ExcessLossConfig, Field(discriminator="kind")]

__all__ = [
    "Estimator",
    "EstimatorConfig",
    "EstimatorConfigBase",
    "ExcessLossConfig",
    "ExcessLossEstimator",
    "FitConfig",
    "HeldOutTargetConfig",
    "HeldOutTargetEstimator",
    "Limit",
    "LossEMAConfig",
    "LossEMAEstimator",
    "LrFitConfig",
    "LrLawFit",
    "PowerLawEstimator",
    "PowerLawEstimatorConfig",
    "PowerLawFit",
    "ScalingLawConfig",
    "ScalingLawEstimator",
    "TransferConfig",
    "TransferEstimator",
    "fit_lr_laws",
    "fit_power_laws",
    "lr_areas",
    "objective",
]
