"""Guardrails: policy-independent constraints applied, in order, to any policy's weights.

Every policy config has a ``guardrails:`` list; each entry is one of the configs below (``kind``
selects it). After the wrapped policy's update, each guardrail maps the proposed weights to new
ones, given the weights currently in force (``prev``), in the order listed. Put ``token_budget``
last if it must be able to zero a domain (a later ``floor`` would lift it again), and ``fallback``
first if it should judge the raw policy output.

>>> from ado.policy.guardrails import FloorConfig
>>> import numpy as np
>>> rail = FloorConfig(min_prob=0.1).build(["a", "b", "c"], np.full(3, 1 / 3))
>>> rail.apply(np.array([0.9, 0.1, 0.0]), np.full(3, 1 / 3), None).round(3).tolist()
[0.8, 0.1, 0.1]
"""

from __future__ import annotations

import logging
import math
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, model_validator

from ado._state import Count, NonNegVector, StateModel, parse_state
from ado.errors import ConfigError, InvalidInputError
from ado.stats import F64, StepStats, normalised

__all__ = [
    "FallbackConfig",
    "FloorConfig",
    "Guardrail",
    "GuardrailConfig",
    "MaxChangeConfig",
    "SmoothingConfig",
    "TokenBudgetConfig",
    "WarmupConfig",
    "project_floor",
]

logger = logging.getLogger(__name__)


def project_floor(w: F64, min_prob: float) -> F64:
    """Raise every weight to at least ``min_prob`` and scale the others down to keep the sum at 1.

    The weights above the floor keep their ratios. Needs ``len(w) * min_prob <= 1``.
    """
    w = normalised(w)
    low = w < min_prob
    if not low.any():
        return w
    while True:
        if low.all():  # K * min_prob == 1 (up to rounding): the only feasible point
            return np.full(w.shape, 1.0 / w.size)
        rest = w[~low]
        budget = 1.0 - min_prob * float(low.sum())
        total = float(rest.sum())
        scaled = rest * (budget / total) if total > 0 else np.full(rest.shape, budget / rest.size)
        newly = scaled < min_prob
        if not newly.any():
            out = np.full(w.shape, min_prob)
            out[~low] = scaled
            return out
        idx = np.flatnonzero(~low)[newly]
        low[idx] = True


class Guardrail:
    """Runtime guardrail: ``apply`` maps proposed weights to admissible ones."""

    name = "guardrail"

    def apply(self, w: F64, prev: F64, stats: StepStats | None) -> F64:
        """New weights from the proposal ``w``, the weights in force ``prev`` and the step's stats
        (``None`` at construction, to shape the initial weights)."""
        raise NotImplementedError

    def check(self, stats: StepStats) -> None:
        """Raise if ``stats`` lacks what :meth:`apply` needs; called before the wrapped policy
        moves, so that a step this guardrail refuses changes nothing."""

    def metrics(self) -> dict[str, float]:
        """Counters for loggers."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """JSON-safe state."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""


class _RailConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    def build(self, domains: list[str], prior: F64) -> Guardrail:
        raise NotImplementedError


# --- floor ---------------------------------------------------------------------------------------


class _Floor(Guardrail):
    name = "floor"

    def __init__(self, min_prob: float) -> None:
        self.min_prob = min_prob

    def apply(self, w: F64, prev: F64, stats: StepStats | None) -> F64:
        return project_floor(w, self.min_prob)


class FloorConfig(_RailConfig):
    """Minimum probability: every domain gets at least ``min_prob``; the rest keep their ratios."""

    kind: Literal["floor"] = "floor"
    min_prob: float = Field(gt=0.0, lt=1.0)

    def build(self, domains: list[str], prior: F64) -> Guardrail:
        """Check ``K * min_prob <= 1`` and construct."""
        if len(domains) * self.min_prob > 1.0 + 1e-12:
            raise ConfigError(
                f"floor: min_prob={self.min_prob} is infeasible for {len(domains)} domains "
                f"(needs min_prob <= 1/K = {1 / len(domains):.6g})"
            )
        return _Floor(self.min_prob)


# --- smoothing -----------------------------------------------------------------------------------


class _Smoothing(Guardrail):
    name = "smoothing"

    def __init__(self, rate: float) -> None:
        self.rate = rate

    def apply(self, w: F64, prev: F64, stats: StepStats | None) -> F64:
        return (1.0 - self.rate) * prev + self.rate * w


class SmoothingConfig(_RailConfig):
    """Temporal smoothing: ``w <- (1 - rate) * w_prev + rate * w_proposed`` (an EMA)."""

    kind: Literal["smoothing"] = "smoothing"
    rate: float = Field(gt=0.0, le=1.0)

    def build(self, domains: list[str], prior: F64) -> Guardrail:
        """Construct."""
        return _Smoothing(self.rate)


# --- max change ----------------------------------------------------------------------------------


def _kl(p: F64, q: F64) -> float:
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


class _MaxChange(Guardrail):
    name = "max_change"

    def __init__(self, max_l1: float | None, max_kl: float | None) -> None:
        self.max_l1 = max_l1
        self.max_kl = max_kl
        self.clipped = 0

    def apply(self, w: F64, prev: F64, stats: StepStats | None) -> F64:
        d = w - prev
        if self.max_l1 is not None:
            l1 = float(np.abs(d).sum())
            if l1 <= self.max_l1:
                return w
            self.clipped += 1
            return prev + (self.max_l1 / l1) * d
        cap = float(self.max_kl)  # type: ignore[arg-type]
        if np.any((prev == 0) & (w > 0)):
            # KL(w || prev) is infinite for any step that moves mass onto a zero of prev; such a
            # step cannot be capped by a convex combination, so refuse it.
            self.clipped += 1
            return prev
        if _kl(w, prev) <= cap:
            return w
        self.clipped += 1
        lo, hi = 0.0, 1.0  # KL(prev + theta * d || prev) is convex and increasing in theta
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            if _kl(prev + mid * d, prev) <= cap:
                lo = mid
            else:
                hi = mid
        return prev + lo * d

    def metrics(self) -> dict[str, float]:
        return {"clipped": float(self.clipped)}

    def state_dict(self) -> dict[str, Any]:
        return {"clipped": self.clipped}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.clipped = parse_state(_ClippedState, state, "max_change state").clipped


class _ClippedState(StateModel):
    clipped: Count


class MaxChangeConfig(_RailConfig):
    """Trust region: the new weights move from the old ones along a straight line by at most
    ``max_l1`` in L1 distance, or at most ``max_kl`` in KL(new || old). Give exactly one."""

    kind: Literal["max_change"] = "max_change"
    max_l1: PositiveFloat | None = None
    max_kl: PositiveFloat | None = None

    @model_validator(mode="after")
    def _one(self) -> MaxChangeConfig:
        if (self.max_l1 is None) == (self.max_kl is None):
            raise ValueError("max_change needs exactly one of max_l1 and max_kl")
        return self

    def build(self, domains: list[str], prior: F64) -> Guardrail:
        """Construct."""
        return _MaxChange(self.max_l1, self.max_kl)


# --- warmup --------------------------------------------------------------------------------------


class _Warmup(Guardrail):
    name = "warmup"

    def __init__(self, steps: int, prior: F64) -> None:
        self.steps = steps
        self.prior = prior

    def apply(self, w: F64, prev: F64, stats: StepStats | None) -> F64:
        next_step = 0 if stats is None else stats.step + 1
        return self.prior.copy() if next_step < self.steps else w


class WarmupConfig(_RailConfig):
    """Warmup on the prior: batches ``0 .. steps-1`` are drawn from the prior; the wrapped policy
    still sees every step's statistics."""

    kind: Literal["warmup"] = "warmup"
    steps: int = Field(ge=0)

    def build(self, domains: list[str], prior: F64) -> Guardrail:
        """Construct."""
        return _Warmup(self.steps, prior)


# --- fallback ------------------------------------------------------------------------------------


class _Fallback(Guardrail):
    name = "fallback"

    def __init__(self, tol: float, max_weight: float | None) -> None:
        self.tol = tol
        self.max_weight = max_weight
        self.count = 0

    def _problem(self, w: F64) -> str | None:
        if not np.all(np.isfinite(w)):
            return "non-finite weights"
        if w.min() < -self.tol:
            return "negative weights"
        if abs(float(w.sum()) - 1.0) > self.tol:
            return f"weights sum to {float(w.sum())!r}"
        if self.max_weight is not None and w.max() > self.max_weight:
            return f"collapse: max weight {float(w.max()):.6g} > {self.max_weight}"
        return None

    def apply(self, w: F64, prev: F64, stats: StepStats | None) -> F64:
        problem = self._problem(w)
        if problem is None:
            return normalised(np.maximum(w, 0.0))
        self.count += 1
        step = "init" if stats is None else stats.step
        logger.warning(
            "step %s: %s; keeping the previous weights (fallback #%d)", step, problem, self.count
        )
        return prev

    def metrics(self) -> dict[str, float]:
        return {"count": float(self.count)}

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count = parse_state(_CountState, state, "fallback state").count


class _CountState(StateModel):
    count: Count


class FallbackConfig(_RailConfig):
    """NaN/degenerate fallback: keep the previous weights when the proposal is non-finite,
    negative, does not sum to 1 (within ``tol``), or puts more than ``max_weight`` on one domain;
    counted in the metrics and logged as a warning."""

    kind: Literal["fallback"] = "fallback"
    tol: PositiveFloat = 1e-6
    max_weight: float | None = Field(None, gt=0.0, le=1.0)

    def build(self, domains: list[str], prior: F64) -> Guardrail:
        """Construct."""
        return _Fallback(self.tol, self.max_weight)


# --- token budget --------------------------------------------------------------------------------


class _TokenBudget(Guardrail):
    name = "token_budget"

    def __init__(self, budgets: F64, prior: F64) -> None:
        self.budgets = budgets
        self.prior = prior
        self.spent = np.zeros(budgets.shape)
        self.all_spent_steps = 0

    def check(self, stats: StepStats) -> None:
        if stats.token_counts is None:
            raise InvalidInputError(
                "token_budget guardrail needs StepStats.token_counts (tokens per domain)"
            )

    def apply(self, w: F64, prev: F64, stats: StepStats | None) -> F64:
        if stats is not None:
            tokens = stats.token_counts
            if tokens is None:
                self.check(stats)  # raises
            else:
                self.spent = self.spent + tokens
        open_ = self.spent < self.budgets
        if open_.all():
            return w
        if not open_.any():
            self.all_spent_steps += 1
            logger.warning("every domain's token budget is spent; keeping the weights")
            return w
        out = np.where(open_, w, 0.0)
        total = float(out.sum())
        if total <= 0.0:  # the policy put all mass on spent domains: fall back to the prior
            out = np.where(open_, self.prior, 0.0)
            total = float(out.sum())
            if total <= 0.0:
                out = open_.astype(np.float64)
                total = float(out.sum())
        return normalised(out)

    def metrics(self) -> dict[str, float]:
        return {
            "spent_domains": float(np.sum(self.spent >= self.budgets)),
            "all_spent_steps": float(self.all_spent_steps),
        }

    def state_dict(self) -> dict[str, Any]:
        return {"spent": self.spent.tolist(), "all_spent_steps": self.all_spent_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        st = parse_state(_TokenBudgetState, state, "token_budget state", k=self.spent.size)
        self.spent = np.asarray(st.spent, dtype=np.float64)
        self.all_spent_steps = st.all_spent_steps


class _TokenBudgetState(StateModel):
    spent: NonNegVector
    all_spent_steps: Count


class TokenBudgetConfig(_RailConfig):
    """Per-domain token budget: once a domain has been trained on ``budgets[domain]`` tokens its
    weight is 0 and the others are renormalised. Domains not named are unlimited. Needs
    ``StepStats.token_counts``."""

    kind: Literal["token_budget"] = "token_budget"
    budgets: dict[str, PositiveFloat]

    def build(self, domains: list[str], prior: F64) -> Guardrail:
        """Check the names and construct."""
        unknown = [d for d in self.budgets if d not in domains]
        if unknown:
            raise ConfigError(f"token_budget names unknown domains {unknown}; domains: {domains}")
        budgets = np.array([self.budgets.get(d, math.inf) for d in domains], dtype=np.float64)
        return _TokenBudget(budgets, prior)


GuardrailConfig = Annotated[
    FloorConfig
    | SmoothingConfig
    | MaxChangeConfig
    | WarmupConfig
    | FallbackConfig
    | TokenBudgetConfig,
    Field(discriminator="kind"),
]
