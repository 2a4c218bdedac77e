"""Temperature sampling ``p ∝ mu^(1/T)``, optionally with a linear schedule of T."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field, PositiveFloat

from ado.policy.base import Policy, PolicyConfig, register_policy
from ado.stats import F64, StepStats, normalised

__all__ = ["Temperature"]


@register_policy
class Temperature(Policy):
    """``p_k ∝ mu_k^(1/T)``: T = 1 is the prior (natural), T → ∞ uniform over the domains with
    ``mu_k > 0`` (``.inf`` in YAML gives exactly that). With ``final_temperature`` and
    ``schedule_steps``, T moves linearly from ``temperature`` to ``final_temperature`` over
    batches ``0 .. schedule_steps`` and stays there."""

    class Config(PolicyConfig):
        """``kind: temperature``."""

        kind: Literal["temperature"] = "temperature"
        temperature: PositiveFloat = Field(2.0, allow_inf_nan=True)  # .inf: uniform
        final_temperature: PositiveFloat | None = Field(None, allow_inf_nan=True)
        schedule_steps: int = Field(0, ge=0)

    config: Config

    def __init__(
        self, config: PolicyConfig, domains: Sequence[str], prior: npt.ArrayLike | None = None
    ) -> None:
        super().__init__(config, domains, prior)
        self._support = self.prior > 0
        self._log_mu = np.log(np.where(self._support, self.prior, 1.0))
        self._set_weights(self._at(0))

    def temperature_at(self, batch: int) -> float:
        """T used for batch ``batch``."""
        cfg = self.config
        if cfg.final_temperature is None or cfg.schedule_steps == 0:
            return cfg.temperature
        frac = min(1.0, batch / cfg.schedule_steps)
        return cfg.temperature + (cfg.final_temperature - cfg.temperature) * frac

    def _at(self, batch: int) -> F64:
        inv_t = 1.0 / self.temperature_at(batch)
        z = self._log_mu * inv_t
        w = np.where(self._support, np.exp(z - z[self._support].max()), 0.0)
        return normalised(w)

    def _update(self, stats: StepStats) -> F64:
        if self.config.final_temperature is None:
            return self._weights
        return self._at(stats.step + 1)

    def metrics(self) -> dict[str, float]:
        """Weights and the current temperature."""
        out = super().metrics()
        out["temperature"] = self.temperature_at(self.step + 1)
        return out
