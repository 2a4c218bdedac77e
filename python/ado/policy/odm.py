"""Online Data Mixing (Albalak et al. 2023): an EXP3-style bandit rewarded by the training loss.

Reward: the smoothed mean ``R_k <- beta * R_k + (1 - beta) * exp(l_k)`` over the steps where domain
k is present (``SmoothedMeanWeightUpdater`` of the ODM code, beta = 0.9), from a swappable
estimator. Exploration ``eps_t = min(1/K, sqrt(ln K / (K t)))`` with t the number of updates so far.
Weights:

* ``update: group`` (the ODM code's mixed-minibatch ``group_update``, default):
  ``pi_k = (1 - K eps_t) * R_k / sum_j R_j + eps_t``;
* ``update: gibbs`` (the per-sample EXP3 form):
  ``pi_k = (1 - K eps_t) * softmax(eps_{t-1} * R)_k + eps_t``.

Before the first update the weights are uniform (``eps_0 = 1/K``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ado._state import Count, StateModel, parse_state
from ado.estimators import EstimatorConfig, LossEMAConfig
from ado.policy.base import Policy, PolicyConfig, register_policy
from ado.stats import F64, StepStats, normalised

__all__ = ["ODM"]


@register_policy
class ODM(Policy):
    """Online Data Mixing (EXP3 with a smoothed-mean loss reward)."""

    class Config(PolicyConfig):
        """``kind: odm``."""

        kind: Literal["odm"] = "odm"
        update: Literal["group", "gibbs"] = "group"
        estimator: EstimatorConfig = LossEMAConfig(decay=0.9, transform="exp", init="zero")

    config: Config

    def __init__(
        self, config: PolicyConfig, domains: Sequence[str], prior: npt.ArrayLike | None = None
    ) -> None:
        super().__init__(config, domains, prior)
        self.estimator = self.config.estimator.build(self.domains)
        self._t = 0
        self._set_weights(np.full(self.num_domains, 1.0 / self.num_domains))

    def exploration(self, t: int) -> float:
        """``eps_t = min(1/K, sqrt(ln K / (K t)))`` (1/K at t = 0)."""
        k = self.num_domains
        if t <= 0:
            return 1.0 / k
        return min(1.0 / k, math.sqrt(math.log(k) / (k * t)))

    def _update(self, stats: StepStats) -> F64:
        self.estimator.observe(stats)
        prev_eps = self.exploration(self._t)
        self._t += 1
        eps = self.exploration(self._t)
        k = self.num_domains
        reward = np.nan_to_num(self.estimator.signal(), nan=0.0)
        if self.config.update == "group":
            # exp(loss) rewards can be huge: the overflow-safe normalisation
            share = normalised(reward) if reward.max() > 0 else np.full(k, 1.0 / k)
        else:
            z = prev_eps * reward
            share = np.exp(z - z.max())
            share /= share.sum()
        out: F64 = (1.0 - k * eps) * share + eps
        return out

    def metrics(self) -> dict[str, float]:
        """Weights, exploration rate and rewards."""
        out = super().metrics()
        out["exploration"] = self.exploration(self._t)
        for d, r in zip(self.domains, self.estimator.signal(), strict=True):
            out[f"reward/{d}"] = float(r)
        return out

    def _state(self) -> dict[str, Any]:
        return {"estimator": self.estimator.state_dict(), "t": self._t}

    def _load_state(self, state: dict[str, Any]) -> None:
        st = parse_state(_ODMState, state, "odm state")
        self.estimator.load_state_dict(st.estimator)
        self._t = st.t


class _ODMState(StateModel):
    estimator: dict[str, Any]
    t: Count
