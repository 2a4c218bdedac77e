"""Scaling-law learning potential: the ADO estimator.

Wraps the online :class:`~ado.estimators.PowerLawEstimator` (smoothing, subsampling, bounded fit
points, all in Rust) with ADO's x-axis bookkeeping and refit schedule, and turns the current fit
into a per-domain signal: the learning potential ``max(alpha, alpha_floor) * (L(n) - eps) / n``,
i.e. ``-dL/dn`` with the exponent floored in the multiplier (the reference code's rule).

Refits never move the policy at a non-deterministic step:

* ``fit_delay = 0`` (default): the refit runs synchronously inside
  :meth:`ScalingLawEstimator.observe` at the scheduled step. The Rust fitter fits all K domains in
  parallel with the GIL released; its cost grows with the number of fit points (bounded by
  ``max_points``).
* ``fit_delay = d > 0``: at the scheduled step t the fit points are copied and fitted on a
  background thread (the GIL is released, so training continues); the result is applied at step
  ``t + d`` exactly, waiting for it only if it is not ready by then. The weights therefore do not
  depend on timing, and ``state_dict`` (which waits for a pending fit) restores them bitwise.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import (
    AfterValidator,
    Field,
    NonNegativeInt,
    PositiveInt,
    StrictStr,
    ValidationInfo,
    model_validator,
)

from ado._state import Count, FiniteFloat, NonNegVector, StateModel, Step, Vector, parse_state
from ado.errors import FitError, InvalidInputError
from ado.estimators.power_law import (
    FitConfig,
    PowerLawEstimator,
    PowerLawEstimatorConfig,
    PowerLawFit,
    config_or_fields,
    fit_power_laws,
)
from ado.stats import F64, StepStats

__all__ = ["ScalingLawConfig", "ScalingLawEstimator"]

_sum = np.add.reduce
_FIT_FIELDS = ("eps", "beta", "alpha", "objective", "n_points", "iterations")


def _fit_to_dict(fit: PowerLawFit) -> dict[str, list[Any]]:
    return {f: getattr(fit, f).tolist() for f in _FIT_FIELDS}


def _fit_from_dict(data: dict[str, Any]) -> PowerLawFit:
    def f64(name: str) -> npt.NDArray[np.float64]:
        return np.asarray(data[name], dtype=np.float64)

    def i64(name: str) -> npt.NDArray[np.int64]:
        return np.asarray(data[name], dtype=np.int64)

    return PowerLawFit(
        eps=f64("eps"),
        beta=f64("beta"),
        alpha=f64("alpha"),
        objective=f64("objective"),
        n_points=i64("n_points"),
        iterations=i64("iterations"),
    )


logger = logging.getLogger(__name__)


class ScalingLawConfig(PowerLawEstimatorConfig):
    """ADO's estimator: what it keeps of the loss stream (:class:`PowerLawEstimatorConfig`),
    when it refits, what it fits, and its slope rule. The defaults are those of
    ``policies/ado.yaml``; ``ADO.Config`` is this model plus the policy's own fields.

    Attributes:
        ignore_steps: observations at steps below this never become fit points.
        start_step: no refit before this step.
        update_interval: refit at steps ``t >= start_step`` with ``t % update_interval == 0``.
        x_axis: ``"total"``: n = all samples trained so far, the same for every domain (the
            reference); ``"domain"``: n_k = samples of domain k so far (floored at 1).
        fit: the fitting objective: ``"default"`` (:class:`FitConfig` ``()``), ``"reference"``
            (:meth:`FitConfig.reference`) or a :class:`FitConfig`.
        min_points: a refit is skipped while any domain has fewer fit points (>= 3, the
            fitter's minimum).
        alpha_floor: the exponent floor in the slope multiplier (0.05, the reference's; 0 gives
            the paper's ``-dL/dn``, which drops an unlearnable domain, see ``policies/ado.yaml``).
        fit_delay: 0: refit synchronously; d > 0: fit in the background and apply the result
            at the scheduled step + d (must be < ``update_interval``).
    """

    ignore_steps: int = Field(1000, ge=0, le=2**63 - 1)
    start_step: NonNegativeInt = 2000
    update_interval: PositiveInt = 1000
    x_axis: Literal["total", "domain"] = "total"
    fit: Literal["default", "reference"] | FitConfig = "default"
    min_points: int = Field(50, ge=3)
    alpha_floor: float = Field(0.05, ge=0.0)
    fit_delay: int = Field(
        0,
        ge=0,
        description="0: refit synchronously; d: in the background, "
        "applied d steps after the scheduled step",
    )

    @model_validator(mode="after")
    def _delay_within_interval(self) -> ScalingLawConfig:
        if self.fit_delay >= self.update_interval:
            raise ValueError(
                f"fit_delay ({self.fit_delay}) must be < update_interval ({self.update_interval})"
            )
        return self

    def fit_config(self) -> FitConfig:
        """The fitting objective."""
        if self.fit == "default":
            return FitConfig()
        if self.fit == "reference":
            return FitConfig.reference()
        return self.fit

    def estimator_config(self) -> PowerLawEstimatorConfig:
        """The part that configures the online estimator."""
        return PowerLawEstimatorConfig(
            **self.model_dump(include=set(PowerLawEstimatorConfig.model_fields))
        )


class ScalingLawEstimator:
    """Online per-domain power laws and their learning potential.

    Args:
        num_domains: K.
        config: a :class:`ScalingLawConfig` (``ADO.Config`` is one); or give its fields as
            keywords.

    Raises:
        InvalidInputError: a bad configuration (the message names the field).
    """

    def __init__(
        self, num_domains: int, config: ScalingLawConfig | None = None, **fields: Any
    ) -> None:
        self.config = config = config_or_fields(ScalingLawConfig, config, fields)
        self.fit_delay = config.fit_delay
        self._pool: ThreadPoolExecutor | None = None
        # (scheduled step, apply step, result): a Future while running, then the fit or the error
        self._pending: tuple[int, int, Future[PowerLawFit] | PowerLawFit | FitError] | None = None
        self._k = num_domains
        self.start_step = config.start_step
        self.update_interval = config.update_interval
        self.x_axis = config.x_axis
        self.fit_config = config.fit_config()
        self.min_points = config.min_points
        self.alpha_floor = config.alpha_floor
        self._est = PowerLawEstimator(num_domains, config.estimator_config())
        self._total = 0.0
        self.last_batch = 0.0
        self._domain_n = np.zeros(num_domains)
        self._x = np.empty(num_domains)
        self._losses = np.empty(num_domains)
        self._current: PowerLawFit | None = None
        self._slope_mult = np.zeros(num_domains)
        self.num_fits = 0
        self.num_rejected = 0
        self.num_skipped = 0
        self.last_fit_step = -1
        self.last_fit_ms = 0.0

    @property
    def num_domains(self) -> int:
        """K."""
        return self._k

    @property
    def current(self) -> PowerLawFit | None:
        """The fit in use (None before the first accepted fit)."""
        return self._current

    @current.setter
    def current(self, fit: PowerLawFit | None) -> None:
        self._current = fit
        if fit is not None:
            self._slope_mult = np.maximum(fit.alpha, self.alpha_floor)

    @property
    def total_samples(self) -> float:
        """All samples observed so far."""
        return self._total

    def x(self) -> F64:
        """The current x-axis value of each domain."""
        if self.x_axis == "total":
            self._x.fill(self._total)
        else:
            np.maximum(self._domain_n, 1.0, out=self._x)
        return self._x

    def observe(self, stats: StepStats) -> bool:
        """Ingest one step and refit if one is due; returns whether a new fit was accepted.

        All or nothing: a step that raises (bad statistics, or ``KeyboardInterrupt`` during a
        refit) leaves the estimator exactly as it was."""
        counts = stats.counts
        batch = float(_sum(counts))
        if batch <= 0.0:
            raise InvalidInputError(f"step {stats.step}: the batch has no samples (counts all 0)")
        total = self._total + batch
        domain_n = self._domain_n + counts if self.x_axis == "domain" else self._domain_n
        x = np.full(self._k, total) if self.x_axis == "total" else np.maximum(domain_n, 1.0)
        losses = self._losses
        losses.fill(np.nan)  # absent domains stay NaN
        np.divide(stats.loss_sums, counts, out=losses, where=counts > 0)
        # The batch mean, for a domain absent at the first step (carry mode): afterwards every
        # domain has a value to carry forward, so the fill is not needed.
        fill = float(_sum(stats.loss_sums)) / batch if self._est.last_step is None else None
        t = stats.step
        refit_due = t >= self.start_step and t % self.update_interval == 0
        apply_due = self._pending is not None and t >= self._pending[1]
        # What a refit or a wait might leave half-done if interrupted (taken only on those steps).
        saved = (self._est.copy(), self.__dict__.copy()) if refit_due or apply_due else None
        self._est.update(t, losses, x, fill)  # validates everything before it changes anything
        self._total, self.last_batch, self._domain_n = total, batch, domain_n
        if saved is None:
            return False
        try:
            accepted = self._apply_pending() if apply_due else False
            if refit_due:
                if self.fit_delay == 0:
                    return self.refit(t)
                self._submit(t)
        except BaseException:
            self.__dict__.update(saved[1])
            self._est = saved[0]
            raise
        return accepted

    def _enough_points(self, step: int) -> bool:
        have = int(self._est.num_points().min())
        if have < self.min_points:
            self.num_skipped += 1
            logger.debug("step %d: refit skipped, %d < %d fit points", step, have, self.min_points)
            return False
        return True

    def _submit(self, step: int) -> None:
        if not self._enough_points(step):
            return
        snapshot = [self._est.points(d) for d in range(self._k)]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ado-fit")
        future = self._pool.submit(self._fit_snapshot, snapshot, self.fit_config)
        self._pending = (step, step + self.fit_delay, future)

    def _fit_snapshot(self, snapshot: list[tuple[F64, F64]], config: FitConfig) -> PowerLawFit:
        start = time.perf_counter()
        try:
            if len({len(n) for n, _ in snapshot}) == 1:  # one batched, parallel solve
                return fit_power_laws(
                    np.stack([n for n, _ in snapshot]), np.stack([y for _, y in snapshot]), config
                )
            parts = [fit_power_laws(n, y, config) for n, y in snapshot]
            return _fit_from_dict(
                {f: np.concatenate([getattr(p, f) for p in parts]) for f in _FIT_FIELDS}
            )
        finally:
            self.last_fit_ms = (time.perf_counter() - start) * 1e3

    def _apply_pending(self) -> bool:
        assert self._pending is not None
        step, _, result = self._pending
        self._pending = None
        if isinstance(result, Future):
            try:
                result = result.result()
            except FitError as err:
                result = err
        return self._accept(step, result)

    def _accept(self, step: int, fit: PowerLawFit | FitError) -> bool:
        if isinstance(fit, FitError):
            self.num_rejected += 1
            logger.warning("step %d: power-law fit failed (%s); keeping the last", step, fit)
            return False
        if not fit.is_finite():
            self.num_rejected += 1
            logger.warning("step %d: power-law fit has NaN/inf parameters; keeping the last", step)
            return False
        self.current = fit
        self.num_fits += 1
        self.last_fit_step = step
        return True

    def refit(self, step: int) -> bool:
        """Fit now; keep the previous fit if this one is skipped (too few points) or rejected (the
        fitter failed, or returned NaN/inf parameters)."""
        if not self._enough_points(step):
            return False
        start = time.perf_counter()
        try:
            fit: PowerLawFit | FitError = self._est.fit(self.fit_config)
        except FitError as err:
            fit = err
        self.last_fit_ms = (time.perf_counter() - start) * 1e3
        return self._accept(step, fit)

    def signal(self) -> F64:
        """Learning potential ``max(alpha, floor) * (L(n) - eps) / n`` (NaN before the first
        fit)."""
        fit = self.current
        if fit is None:
            return np.full(self._k, np.nan)
        # total x-axis: one scalar n for every domain (cheaper than a vector)
        n: float | F64 = self._total if self.x_axis == "total" else self.x()
        eps = fit.eps
        with np.errstate(over="ignore"):  # an inf score is handled as degenerate by the policy
            predicted = eps + fit.beta * n**-fit.alpha  # reference: L(n), then minus eps
            out: F64 = self._slope_mult * (predicted - eps) / n
        return out

    def points(self, domain: int) -> tuple[F64, F64]:
        """Domain ``domain``'s current fit points ``(n, smoothed loss)``."""
        return self._est.points(domain)

    def state_dict(self) -> dict[str, Any]:
        """JSON-safe state; restores bitwise."""
        pending: dict[str, Any] | None = None
        if self._pending is not None:
            step, apply_step, result = self._pending
            if isinstance(result, Future):  # wait: the state must not depend on timing
                try:
                    result = result.result()
                except FitError as err:
                    result = err
                self._pending = (step, apply_step, result)
            pending = {
                "step": step,
                "apply_step": apply_step,
                "fit": _fit_to_dict(result) if isinstance(result, PowerLawFit) else None,
                "error": str(result) if isinstance(result, FitError) else None,
            }
        return {
            "estimator": self._est.state_dict(),
            "pending": pending,
            "total": self._total,
            "domain_n": self._domain_n.tolist(),
            "fit": None if self.current is None else _fit_to_dict(self.current),
            "num_fits": self.num_fits,
            "num_rejected": self.num_rejected,
            "num_skipped": self.num_skipped,
            "last_fit_step": self.last_fit_step,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (validated whole first; raises ``StateError``
        naming the field, and then changes nothing)."""
        st = parse_state(_ScalingState, state, "scaling-law estimator state", k=self._k)
        self._est.load_state_dict(st.estimator)  # Rust: validated against its invariants
        self._total = st.total
        self._domain_n = np.asarray(st.domain_n, dtype=np.float64)
        self.current = None if st.fit is None else _fit_from_dict(st.fit.model_dump())
        self._pending = None
        p = st.pending
        if p is not None:
            result: PowerLawFit | FitError = (
                _fit_from_dict(p.fit.model_dump()) if p.fit is not None else FitError(p.error)
            )
            self._pending = (p.step, p.apply_step, result)
        self.num_fits = st.num_fits
        self.num_rejected = st.num_rejected
        self.num_skipped = st.num_skipped
        self.last_fit_step = st.last_fit_step


def _positive(value: list[float]) -> list[float]:
    if any(not v > 0.0 for v in value):
        raise ValueError("must be > 0")
    return value


def _counts_per_domain(value: list[int], info: ValidationInfo) -> list[int]:
    k = (info.context or {}).get("k")
    if k is not None and len(value) != k:
        raise ValueError(f"has {len(value)} entries; expected one per domain ({k})")
    return value


class _FitState(StateModel):
    eps: Annotated[Vector, AfterValidator(_positive)]
    beta: Annotated[Vector, AfterValidator(_positive)]
    alpha: Vector
    objective: Vector
    n_points: Annotated[list[Count], AfterValidator(_counts_per_domain)]
    iterations: Annotated[list[Count], AfterValidator(_counts_per_domain)]


class _PendingState(StateModel):
    step: Count
    apply_step: Count
    fit: _FitState | None
    error: StrictStr | None

    @model_validator(mode="after")
    def _one_outcome(self) -> _PendingState:
        if (self.fit is None) == (self.error is None):
            raise ValueError("a pending fit has exactly one of fit and error")
        if self.apply_step < self.step:
            raise ValueError("apply_step is before step")
        return self


class _ScalingState(StateModel):
    estimator: dict[str, Any]
    pending: _PendingState | None
    total: Annotated[FiniteFloat, Field(ge=0.0)]
    domain_n: NonNegVector
    fit: _FitState | None
    num_fits: Count
    num_rejected: Count
    num_skipped: Count
    last_fit_step: Step
