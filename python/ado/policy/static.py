"""Static mixtures: natural (the prior), uniform, or explicit weights."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import NonNegativeFloat

from ado.errors import ConfigError
from ado.policy.base import Policy, PolicyConfig, register_policy
from ado.stats import F64, StepStats, normalised

__all__ = ["Static"]


@register_policy
class Static(Policy):
    """Fixed weights: ``natural`` (the prior mu given at build time), ``uniform``, or explicit
    weights (a mapping naming every domain, or a list in domain order; normalised)."""

    class Config(PolicyConfig):
        """``kind: static``; ``weights: natural | uniform | {domain: weight} | [w0, w1, ...]``."""

        kind: Literal["static"] = "static"
        weights: (
            Literal["natural", "uniform"] | dict[str, NonNegativeFloat] | list[NonNegativeFloat]
        ) = "natural"

    config: Config

    def __init__(
        self, config: PolicyConfig, domains: Sequence[str], prior: npt.ArrayLike | None = None
    ) -> None:
        super().__init__(config, domains, prior)
        self._set_weights(self._resolve(self.config.weights))

    def _resolve(self, spec: str | dict[str, float] | list[float]) -> F64:
        k = self.num_domains
        if spec == "natural":
            return self.prior.copy()
        if spec == "uniform":
            return np.full(k, 1.0 / k)
        if isinstance(spec, dict):
            missing = [d for d in self.domains if d not in spec]
            unknown = [d for d in spec if d not in self.domains]
            if missing or unknown:
                raise ConfigError(
                    f"static weights must name every domain: missing {missing}, unknown {unknown}"
                )
            w = np.array([spec[d] for d in self.domains], dtype=np.float64)
        else:
            if len(spec) != k:
                raise ConfigError(f"static weights has {len(spec)} entries for {k} domains")
            w = np.asarray(spec, dtype=np.float64)
        if w.max() <= 0:
            raise ConfigError("static weights are all 0")
        return normalised(w)

    def _update(self, stats: StepStats) -> F64:
        return self._weights
