"""Excess loss over a reference model: ``max(loss_k - ref_k, 0)`` per domain (DoReMi's signal)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from ado._state import NonNegVector, StateModel, parse_state
from ado.errors import ConfigError, InvalidInputError
from ado.estimators.base import EstimatorConfigBase
from ado.stats import F64, StepStats

__all__ = ["ExcessLossConfig", "ExcessLossEstimator"]


class ExcessLossEstimator:
    """Per-domain clipped excess loss ``lambda_k = max(l_k - l_ref_k, 0)``.

    The reference loss comes from ``StepStats.ref_loss_sums`` (a reference model's losses on the
    same samples) when present, else from the fixed per-domain table ``reference_losses``. A domain
    absent from the batch keeps its last value (0 before its first observation). With ``decay > 0``
    the signal is an EMA of the excess loss instead of its last value.

    Args:
        num_domains: K.
        reference_losses: optional table of reference losses, shape ``(K,)``.
        decay: EMA weight of the old value (0: the last observation).
    """

    def __init__(
        self, num_domains: int, *, reference_losses: F64 | None = None, decay: float = 0.0
    ) -> None:
        if reference_losses is not None and reference_losses.shape != (num_domains,):
            raise InvalidInputError(
                f"reference_losses needs {num_domains} entries, got shape {reference_losses.shape}"
            )
        self._k = num_domains
        self.reference_losses = reference_losses
        self.decay = decay
        self._value = np.zeros(num_domains)

    @property
    def num_domains(self) -> int:
        """K."""
        return self._k

    def observe(self, stats: StepStats) -> None:
        """Update the present domains' excess loss."""
        present = stats.counts > 0
        loss = stats.loss_sums[present] / stats.counts[present]
        if stats.ref_loss_sums is not None:
            ref = stats.ref_loss_sums[present] / stats.counts[present]
        elif self.reference_losses is not None:
            ref = self.reference_losses[present]
        else:
            raise InvalidInputError(
                "excess-loss estimator: StepStats has no ref_loss_sums and no reference_losses "
                "table is configured"
            )
        excess = np.maximum(loss - ref, 0.0)
        self._value[present] = self.decay * self._value[present] + (1.0 - self.decay) * excess

    def signal(self) -> F64:
        """The excess loss, shape ``(K,)``."""
        return self._value.copy()

    def state_dict(self) -> dict[str, Any]:
        """JSON-safe state."""
        return {"value": self._value.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (validated first: ``StateError`` naming the field)."""
        st = parse_state(_ExcessState, state, "excess-loss state", k=self._k)
        self._value = np.asarray(st.value, dtype=np.float64)


class _ExcessState(StateModel):
    value: NonNegVector


class ExcessLossConfig(EstimatorConfigBase):
    """YAML form of :class:`ExcessLossEstimator`.

    ``reference_losses`` maps every domain name to its reference loss (or is a list in domain
    order);
    omit it to use ``StepStats.ref_loss_sums``.
    """

    kind: Literal["excess_loss"] = "excess_loss"
    reference_losses: dict[str, float] | list[float] | None = None
    decay: float = Field(0.0, ge=0.0, lt=1.0)

    def build(self, domains: list[str]) -> ExcessLossEstimator:
        """Construct the estimator (checks the table covers exactly ``domains``)."""
        table: F64 | None = None
        ref = self.reference_losses
        if isinstance(ref, dict):
            missing = [d for d in domains if d not in ref]
            extra = [d for d in ref if d not in domains]
            if missing or extra:
                raise ConfigError(
                    f"reference_losses must name every domain exactly: missing {missing}, "
                    f"unknown {extra}"
                )
            table = np.array([ref[d] for d in domains], dtype=np.float64)
        elif ref is not None:
            if len(ref) != len(domains):
                raise ConfigError(
                    f"reference_losses has {len(ref)} entries for {len(domains)} domains"
                )
            table = np.asarray(ref, dtype=np.float64)
        return ExcessLossEstimator(len(domains), reference_losses=table, decay=self.decay)
