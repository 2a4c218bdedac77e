"""The estimator contract: ingest per-step statistics, produce one signal per domain.

An estimator is any object with the methods of :class:`Estimator` (a ``runtime_checkable``
``Protocol``: no inheritance needed). Policies combine an estimator's signal with a rule; the
estimators a policy accepts are chosen in its YAML (``estimator: {kind: ...}``).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from ado.errors import InvalidInputError
from ado.stats import F64, StepStats

__all__ = ["Estimator", "EstimatorConfigBase"]


@runtime_checkable
class Estimator(Protocol):
    """Per-domain signal from the stream of :class:`~ado.StepStats`."""

    @property
    def num_domains(self) -> int:
        """K."""
        ...

    def observe(self, stats: StepStats) -> None:
        """Ingest the statistics of one step (steps strictly increase)."""
        ...

    def signal(self) -> F64:
        """The current per-domain signal, shape ``(K,)`` (NaN where nothing is known yet)."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """JSON-safe state; :meth:`load_state_dict` restores it exactly."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        ...


class EstimatorConfigBase(BaseModel):
    """Base of estimator configurations: frozen, no unknown fields, a ``kind`` discriminator."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    kind: str

    def build(self, domains: list[str]) -> Estimator:
        """Construct the estimator for ``domains``."""
        raise NotImplementedError


def checked_num_domains(num_domains: object, minimum: int = 1) -> int:
    """``num_domains`` if it is an integer (not a bool) >= ``minimum``; else
    ``InvalidInputError`` naming it (the estimators' constructors share this check)."""
    if isinstance(num_domains, bool) or not isinstance(num_domains, int) or num_domains < minimum:
        raise InvalidInputError(
            f"num_domains must be an integer >= {minimum}, got {num_domains!r}"
        )
    return num_domains
