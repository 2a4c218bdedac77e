"""Exponential moving average of each domain's (optionally transformed) mean training loss."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import AfterValidator, Field, ValidationInfo

from ado._state import FiniteFloat, StateModel, parse_state
from ado.errors import InvalidInputError, StateError
from ado.estimators.base import EstimatorConfigBase
from ado.stats import F64, StepStats

__all__ = ["LossEMAConfig", "LossEMAEstimator"]


class LossEMAEstimator:
    """Per-domain EMA ``s_k <- decay * s_k + (1 - decay) * f(loss_k)`` over the steps where domain k
    is present; an absent domain keeps its value.

    Args:
        num_domains: K.
        decay: weight of the old value (0: the last observation).
        transform: ``f``: ``"none"`` (the loss) or ``"exp"`` (``exp(loss)``, ODM's reward).
        init: ``"zero"``: ``s`` starts at 0 (ODM's smoothed mean); ``"first"``: the first
            observation of a domain sets ``s`` (NaN before it).
    """

    def __init__(
        self,
        num_domains: int,
        *,
        decay: float = 0.9,
        transform: Literal["none", "exp"] = "none",
        init: Literal["zero", "first"] = "first",
    ) -> None:
        self._k = num_domains
        self.decay = decay
        self.transform = transform
        self.init = init
        self._value = np.zeros(num_domains) if init == "zero" else np.full(num_domains, np.nan)

    @property
    def num_domains(self) -> int:
        """K."""
        return self._k

    def observe(self, stats: StepStats) -> None:
        """Update the present domains from ``stats``."""
        present = stats.counts > 0
        x = stats.loss_sums[present] / stats.counts[present]
        if self.transform == "exp":
            if x.size and x.max() > 700.0:
                raise InvalidInputError(
                    f"loss-EMA with transform 'exp': mean loss {float(x.max())!r} overflows exp(); "
                    "losses are expected in nats"
                )
            x = np.exp(x)
        old = self._value[present]
        new = self.decay * old + (1.0 - self.decay) * x
        self._value[present] = np.where(np.isnan(old), x, new)

    def signal(self) -> F64:
        """The smoothed (transformed) loss, shape ``(K,)``."""
        return self._value.copy()

    def state_dict(self) -> dict[str, Any]:
        """JSON-safe state (NaN stored as None)."""
        return {"value": [None if np.isnan(v) else float(v) for v in self._value]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (validated first: ``StateError`` naming the field)."""
        st = parse_state(_EMAState, state, "loss-EMA state", k=self._k)
        if self.init == "zero" and None in st.value:
            raise StateError("loss-EMA state: value holds None (unset), but init is 'zero'")
        self._value = np.array([np.nan if v is None else v for v in st.value], dtype=np.float64)


def _per_domain(value: list[float | None], info: ValidationInfo) -> list[float | None]:
    k = (info.context or {}).get("k")
    if k is not None and len(value) != k:
        raise ValueError(f"has {len(value)} entries; expected one per domain ({k})")
    return value


class _EMAState(StateModel):
    value: Annotated[list[FiniteFloat | None], AfterValidator(_per_domain)]


class LossEMAConfig(EstimatorConfigBase):
    """YAML form of :class:`LossEMAEstimator`."""

    kind: Literal["loss_ema"] = "loss_ema"
    decay: float = Field(0.9, ge=0.0, lt=1.0)
    transform: Literal["none", "exp"] = "none"
    init: Literal["zero", "first"] = "first"

    def build(self, domains: list[str]) -> LossEMAEstimator:
        """Construct the estimator."""
        return LossEMAEstimator(
            len(domains), decay=self.decay, transform=self.transform, init=self.init
        )
