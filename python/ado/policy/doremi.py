"""DoReMi-style online exponentiated-gradient reweighting (Xie et al. 2023), without the proxy loop:
the weights drive sampling directly.

Each step: ``alpha <- softmax(log alpha + eta * lambda)``, then ``alpha <- (1 - c) * alpha + c /
K``, with ``lambda_k = max(l_k - l_ref_k, 0)`` the clipped excess loss over a reference model (from
``StepStats.ref_loss_sums``, or a per-domain reference-loss table), an absent domain keeping its
last ``lambda``. The estimator can be swapped in YAML (``estimator: {kind: loss_ema}`` reweights by
plain loss instead).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field, NonNegativeFloat

from ado._state import Count, Distribution, StateModel, parse_state
from ado.estimators import EstimatorConfig, ExcessLossConfig
from ado.policy.base import Policy, PolicyConfig, register_policy
from ado.stats import F64, StepStats, normalised

__all__ = ["DoReMi"]


@register_policy
class DoReMi(Policy):
    """Online DoReMi: multiplicative weights on the excess loss, smoothed towards uniform.

    ``alpha_0`` is the prior (``init: prior``) or uniform (``init: uniform``); ``weights`` is the
    current ``alpha``, and the metrics also report the running average ``alpha_bar`` (DoReMi's
    output for a subsequent static run).
    """

    class Config(PolicyConfig):
        """``kind: doremi``."""

        kind: Literal["doremi"] = "doremi"
        eta: NonNegativeFloat = 1.0
        smoothing: float = Field(1e-3, ge=0.0, le=1.0, description="c: mixing with uniform")
        init: Literal["prior", "uniform"] = "prior"
        estimator: EstimatorConfig = ExcessLossConfig()

        def harness_needs(self) -> frozenset[str]:
            """Reference losses, when its excess-loss estimator has no table of its own."""
            est = self.estimator
            if isinstance(est, ExcessLossConfig) and est.reference_losses is None:
                return frozenset({"reference_losses"})
            return frozenset()

    config: Config

    def __init__(
        self, config: PolicyConfig, domains: Sequence[str], prior: npt.ArrayLike | None = None
    ) -> None:
        super().__init__(config, domains, prior)
        self.estimator = self.config.estimator.build(self.domains)
        k = self.num_domains
        alpha0 = self.prior.copy() if self.config.init == "prior" else np.full(k, 1.0 / k)
        self._avg = alpha0.copy()
        self._updates = 0
        self._set_weights(alpha0)

    def _update(self, stats: StepStats) -> F64:
        self.estimator.observe(stats)
        # A domain the estimator has not seen yet carries no signal: lambda = 0 leaves it alone.
        lam = np.nan_to_num(self.estimator.signal(), nan=0.0)
        with np.errstate(divide="ignore"):
            z = np.log(self._weights) + self.config.eta * lam
        z = z - z.max()
        alpha = normalised(np.exp(z))
        c = self.config.smoothing
        alpha = (1.0 - c) * alpha + c / self.num_domains
        out: F64 = alpha
        self._updates += 1
        self._avg += (alpha - self._avg) / (self._updates + 1)
        return out

    def metrics(self) -> dict[str, float]:
        """Weights, the average weights and the estimator's signal."""
        out = super().metrics()
        sig = self.estimator.signal()
        for d, a, s in zip(self.domains, self._avg, sig, strict=True):
            out[f"avg_weight/{d}"] = float(a)
            out[f"signal/{d}"] = float(s)
        return out

    def _state(self) -> dict[str, Any]:
        return {
            "estimator": self.estimator.state_dict(),
            "avg": self._avg.tolist(),
            "updates": self._updates,
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        st = parse_state(_DoReMiState, state, "doremi state", k=self.num_domains)
        self.estimator.load_state_dict(st.estimator)
        self._avg = np.asarray(st.avg, dtype=np.float64)
        self._updates = st.updates


class _DoReMiState(StateModel):
    estimator: dict[str, Any]
    avg: Distribution
    updates: Count
