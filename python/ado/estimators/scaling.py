"""Scaling-law learning potential: the ADO estimator.

Wraps the online :class:`~ado.estimators.PowerLawEstimator` (smoothing, subsampling, bounded fit
points, all in Rust) with ADO's x-axis bookkeeping and refit schedule, and turns the current fit
into a per-domain signal: the learning potential ``max(alpha, alpha_floor) * (L(n) - eps) / n``,
i.e. ``-dL/dn`` with the exponent floored in the multiplier (the reference code's rule).

With ``law: lr`` the law is instead the learning-rate-aware one of Tissue et al.
(:func:`~ado.estimators.fit_lr_laws`, ``L(s) = L0 + A * S1(s)**-alpha - C * S2(s)`` over steps s),
fitted to the same smoothed points indexed by step, and the learning potential is the loss drop
the law attributes to the current step under the schedule, ``L(t-1) - L(t)`` (``-dL/ds``, which
for a constant rate is the plain law's ``-dL/dn`` up to a common factor). The schedule is
``lr_schedule`` (planned, known ahead) or, without one, learned from ``StepStats.lr`` (every step
must then carry its ``lr``; the estimator keeps one float per step).

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

import copy
import logging
import math
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Annotated, Any, Literal

import numpy as np
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
from ado.estimators.lr_law import LrFitConfig, LrLawFit, fit_lr_laws
from ado.estimators.power_law import (
    MAX_POINTS,
    FitConfig,
    PowerLawEstimator,
    PowerLawEstimatorConfig,
    PowerLawFit,
    config_or_fields,
    fit_power_laws,
)
from ado.schedule import MAX_STEPS, LrSchedule
from ado.stats import F64, StepStats

__all__ = ["ScalingLawConfig", "ScalingLawEstimator"]

_sum = np.add.reduce
_FIT_FIELDS = ("eps", "beta", "alpha", "objective", "n_points", "iterations")
_LR_FIT_FIELDS = ("l0", "a", "alpha", "c", "objective", "n_points", "evaluations")
_INT_FIELDS = ("n_points", "iterations", "evaluations")

#: A fit of either law.
AnyFit = PowerLawFit | LrLawFit


def _fields(fit: AnyFit) -> tuple[str, ...]:
    return _LR_FIT_FIELDS if isinstance(fit, LrLawFit) else _FIT_FIELDS


def _fit_to_dict(fit: AnyFit) -> dict[str, list[Any]]:
    return {f: getattr(fit, f).tolist() for f in _fields(fit)}


def _columns(data: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    return {
        f: np.asarray(data[f], dtype=np.int64 if f in _INT_FIELDS else np.float64) for f in fields
    }


def _fit_from_dict(data: dict[str, Any]) -> PowerLawFit:
    return PowerLawFit(**_columns(data, _FIT_FIELDS))


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
        alpha_floor: the exponent floor in the slope multiplier (0, the paper's ``-dL/dn``; 0.05
            is the reference's, which credits a flat, unlearnable domain with ``0.05 (L - eps)``,
            a reducible loss its fit does not identify, see ``policies/ado.yaml``).
        fit_delay: 0: refit synchronously; d > 0: fit in the background and apply the result
            at the scheduled step + d (must be < ``update_interval``).
        law: ``"power"`` (the paper's ``eps + beta * n**-alpha`` over samples) or ``"lr"`` (the
            learning-rate-aware law over steps, :func:`~ado.estimators.fit_lr_laws`).
        lr_fit: the ``lr`` law's fit (its ``decay`` is lambda).
        lr_schedule: the planned schedule for ``law: lr`` (None: learned from ``StepStats.lr``).
        point_budget: fit points of all domains together (None: no budget): each domain holds
            at most ``min(max_points, max(point_budget // K, 2 * min_points))`` (see
            :meth:`points_per_domain`), so memory and checkpoints stay bounded at any K.
    """

    ignore_steps: int = Field(1000, ge=0, le=2**63 - 1)
    start_step: NonNegativeInt = 2000
    update_interval: PositiveInt = 1000
    x_axis: Literal["total", "domain"] = "total"
    fit: Literal["default", "reference"] | FitConfig = "default"
    min_points: int = Field(50, ge=3)
    alpha_floor: float = Field(0.0, ge=0.0)
    fit_delay: int = Field(
        0,
        ge=0,
        description="0: refit synchronously; d: in the background, "
        "applied d steps after the scheduled step",
    )
    law: Literal["power", "lr"] = "power"
    lr_fit: LrFitConfig = Field(default_factory=LrFitConfig)
    lr_schedule: LrSchedule | None = None
    point_budget: int | None = Field(2**20, ge=3, le=2**40)

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

    def points_per_domain(self, num_domains: int) -> int | None:
        """Each domain's fit-point capacity with ``num_domains`` domains: ``max_points``,
        lowered to an equal share of ``point_budget`` when K is large, but never below
        ``2 * min_points`` (a buffer thinned to half must still hold ``min_points``, or refits
        would stop; only there can the budget be exceeded)."""
        cap = self.max_points
        if self.point_budget is None:
            return cap
        share = max(self.point_budget // max(num_domains, 1), 2 * self.min_points)
        share = min(share, MAX_POINTS)
        return share if cap is None else min(cap, share)

    def estimator_config(self, num_domains: int | None = None) -> PowerLawEstimatorConfig:
        """The part that configures the online estimator (with ``num_domains``: its
        ``max_points`` is :meth:`points_per_domain`)."""
        fields = self.model_dump(include=set(PowerLawEstimatorConfig.model_fields))
        if num_domains is not None:
            fields["max_points"] = self.points_per_domain(num_domains)
        return PowerLawEstimatorConfig(**fields)


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
        self._pool_pid = 0
        # (scheduled step, apply step, result): a Future while running, then the fit or the error
        self._pending: tuple[int, int, Future[AnyFit] | AnyFit | FitError] | None = None
        self._k = num_domains
        self.start_step = config.start_step
        self.update_interval = config.update_interval
        self.x_axis = config.x_axis
        self.fit_config = config.fit_config()
        self.min_points = config.min_points
        self.alpha_floor = config.alpha_floor
        self._est = PowerLawEstimator(num_domains, config.estimator_config(num_domains))
        self._total = 0.0
        self.last_batch = 0.0
        self._domain_n = np.zeros(num_domains)
        self._x = np.empty(num_domains)
        self._losses = np.empty(num_domains)
        self._current: AnyFit | None = None
        self._slope_mult = np.zeros(num_domains)
        self._neg_alpha = np.zeros(num_domains)
        self.law = config.law
        self.lr_fit = config.lr_fit
        self._planned = None if config.lr_schedule is None else config.lr_schedule.values()
        self._lr_seen: list[float] = []  # law lr without a planned schedule: every step's lr
        self._areas = _RunningAreas(config.lr_fit)
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
    def current(self) -> AnyFit | None:
        """The fit in use (None before the first accepted fit): a :class:`PowerLawFit`, or with
        ``law: lr`` an :class:`~ado.estimators.LrLawFit`."""
        return self._current

    @current.setter
    def current(self, fit: AnyFit | None) -> None:
        self._current = fit
        if fit is not None:
            self._slope_mult = np.maximum(fit.alpha, self.alpha_floor)
            self._neg_alpha = -fit.alpha  # (exact) the exponent of every step's signal

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
        new_lrs: list[float] = []
        if self.law == "lr":
            x = np.full(self._k, t + 1.0)  # the lr law's points are indexed by step
            new_lrs = self._lr_steps(stats)  # validated before anything changes
        # What a refit or a wait might leave half-done if interrupted (taken only on those steps).
        saved = (
            (self._est.copy(), self.__dict__.copy(), len(self._lr_seen), self._areas.state())
            if refit_due or apply_due
            else None
        )
        self._est.update(t, losses, x, fill)  # validates everything before it changes anything
        self._total, self.last_batch, self._domain_n = total, batch, domain_n
        for lr in new_lrs:
            if self._planned is None:
                self._lr_seen.append(lr)
            self._areas.advance(lr)
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
            del self._lr_seen[saved[2] :]
            self._areas.load(saved[3])
            raise
        return accepted

    def _lr_steps(self, stats: StepStats) -> list[float]:
        """``law: lr``: the learning rates of the steps since the last one up to ``stats.step``
        (a gap repeats this step's rate), from the planned schedule or ``StepStats.lr``."""
        t = stats.step
        last = self._areas.step
        if t <= last:
            return []  # the power-law estimator rejects it with a clear message
        if self._planned is not None:
            if t >= self._planned.shape[0]:
                raise InvalidInputError(
                    f"step {t} is past the planned lr_schedule ({self._planned.shape[0]} steps)"
                )
            return [float(v) for v in self._planned[last + 1 : t + 1]]
        if stats.lr is None:
            raise InvalidInputError(
                f"step {t}: law 'lr' without an lr_schedule learns the schedule from "
                "StepStats.lr, and this step has none"
            )
        if t >= MAX_STEPS:
            raise InvalidInputError(
                f"step {t}: law 'lr' keeps the learning rate of every step, and steps must be "
                f"< {MAX_STEPS} (ado.schedule.MAX_STEPS)"
            )
        lrs = [stats.lr] * (t - last)
        self._areas.check(lrs)
        return lrs

    def lr_history(self) -> F64:
        """``law: lr``: the learning rate of every step so far (the planned schedule's, or the
        observed ones)."""
        n = self._areas.step + 1
        if self._planned is not None:
            return self._planned[:n]
        return np.asarray(self._lr_seen, dtype=np.float64)

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
        if self._pool is None or self._pool_pid != os.getpid():
            # (a forked child has the parent's pool object but not its thread)
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ado-fit")
            self._pool_pid = os.getpid()
        lr = self.lr_history().copy() if self.law == "lr" else None
        future = self._pool.submit(self._fit_snapshot, snapshot, lr)
        self._pending = (step, step + self.fit_delay, future)

    def close(self) -> None:
        """Stop the fit thread, after the fit in flight (its result is applied as usual).
        Idempotent; a later refit starts the thread again."""
        if self._pool is not None and self._pool_pid == os.getpid():
            self._pool.shutdown(wait=True)
        self._pool = None

    def _fit_snapshot(self, snapshot: list[tuple[F64, F64]], lr: F64 | None) -> AnyFit:
        """Fit the points of every domain (``lr``: the schedule so far, for ``law: lr``)."""
        start = time.perf_counter()
        try:
            if lr is not None:
                return self._fit_lr(snapshot, lr)
            config = self.fit_config
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

    def _fit_lr(self, snapshot: list[tuple[F64, F64]], lr: F64) -> LrLawFit:
        # the points' x-axis is step + 1
        steps = [np.rint(x).astype(np.int64) - 1 for x, _ in snapshot]
        if all(np.array_equal(steps[0], s) for s in steps[1:]):  # one batched, parallel solve
            return fit_lr_laws(lr, steps[0], np.stack([y for _, y in snapshot]), self.lr_fit)
        parts = [
            fit_lr_laws(lr, s, y, self.lr_fit) for s, (_, y) in zip(steps, snapshot, strict=True)
        ]
        cols = {f: np.concatenate([getattr(p, f) for p in parts]) for f in _LR_FIT_FIELDS}
        return LrLawFit(**cols, lr=lr, config=self.lr_fit)

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

    def _accept(self, step: int, fit: AnyFit | FitError) -> bool:
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
        fit: AnyFit | FitError
        try:
            if self.law == "lr":
                snapshot = [self._est.points(d) for d in range(self._k)]
                fit = self._fit_snapshot(snapshot, self.lr_history())
            else:
                fit = self._est.fit(self.fit_config)
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
        if isinstance(fit, LrLawFit):
            return self._areas.drop(fit)
        # total x-axis: one scalar n for every domain, raised to the powers as a contiguous
        # vector (numpy's power runs twice as fast on it as on a broadcast scalar; the values
        # are the same: weights bitwise those of `n**-alpha` over whole runs, K = 10 and 10^4)
        n: float | F64 = self._total if self.x_axis == "total" else self.x()
        base = np.full(self._k, n) if self.x_axis == "total" else n
        eps = fit.eps
        with np.errstate(over="ignore"):  # an inf score is handled as degenerate by the policy
            predicted = eps + fit.beta * np.power(base, self._neg_alpha)  # reference: L(n) - eps
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
                "fit": _fit_to_dict(result) if isinstance(result, PowerLawFit | LrLawFit) else None,
                "error": str(result) if isinstance(result, FitError) else None,
            }
        return {
            "estimator": self._est.state_dict(),
            "pending": pending,
            "total": self._total,
            "domain_n": self._domain_n.tolist(),
            "fit": None if self.current is None else _fit_to_dict(self.current),
            "lr": None if self.law != "lr" else {"seen": self._lr_seen, **self._areas.state()},
            "num_fits": self.num_fits,
            "num_rejected": self.num_rejected,
            "num_skipped": self.num_skipped,
            "last_fit_step": self.last_fit_step,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (validated whole first; raises ``StateError``
        naming the field, and then changes nothing)."""
        model = _LrScalingState if self.law == "lr" else _ScalingState
        st = parse_state(model, state, "scaling-law estimator state", k=self._k)
        self._est.load_state_dict(st.estimator)  # Rust: validated against its invariants
        self._total = st.total
        self._domain_n = np.asarray(st.domain_n, dtype=np.float64)
        if st.lr is not None:
            self._lr_seen = list(st.lr.seen)
            self._areas.load(st.lr.model_dump())
        self.current = None if st.fit is None else self._load_fit(st.fit.model_dump())
        self._pending = None
        p = st.pending
        if p is not None:
            result: AnyFit | FitError = (
                self._load_fit(p.fit.model_dump()) if p.fit is not None else FitError(p.error)
            )
            self._pending = (p.step, p.apply_step, result)
        self.num_fits = st.num_fits
        self.num_rejected = st.num_rejected
        self.num_skipped = st.num_skipped
        self.last_fit_step = st.last_fit_step

    def _load_fit(self, data: dict[str, Any]) -> AnyFit:
        if self.law == "lr":
            return LrLawFit(
                **_columns(data, _LR_FIT_FIELDS), lr=self.lr_history(), config=self.lr_fit
            )
        return _fit_from_dict(data)


class _RunningAreas:
    """``S1`` and the annealing momentum ``m`` of the steps so far, one step at a time (the
    recurrence of :func:`~ado.estimators.lr_areas`, tested against it), and the law's loss drop at
    the latest step."""

    def __init__(self, config: LrFitConfig) -> None:
        self.decay = config.decay
        self.count_rises = config.count_rises
        self.step = -1
        self.s1 = self.s1_prev = self.m = self.prev = 0.0

    def check(self, lrs: list[float]) -> None:
        """Refuse rates whose areas overflow a double (S1 or S2 infinite: the law is undefined),
        before anything changes."""
        trial = copy.copy(self)
        for lr in lrs:
            trial.advance(lr)
            if not (math.isfinite(trial.s1) and math.isfinite(trial.m)):
                raise InvalidInputError(
                    f"step {trial.step}: lr = {lr} makes the area under the learning rates "
                    "overflow a double (S1 or S2 infinite); learning rates must have a finite sum"
                )

    def advance(self, lr: float) -> None:
        fall = (self.prev - lr) if self.step >= 0 else 0.0
        self.m = self.decay * self.m + (fall if self.count_rises else max(fall, 0.0))
        self.s1_prev = self.s1
        self.s1 += lr
        self.prev = lr
        self.step += 1

    def drop(self, fit: LrLawFit) -> F64:
        """``L(t-1) - L(t)`` at the latest step t: ``A (S1(t-1)^-alpha - S1(t)^-alpha) + C m_t``
        (NaN while ``S1(t-1) = 0``)."""
        if self.s1_prev <= 0.0:
            return np.full(fit.num_domains, np.nan)
        out: F64 = fit.a * (self.s1_prev**-fit.alpha - self.s1**-fit.alpha) + fit.c * self.m
        return out

    def state(self) -> dict[str, float]:
        return {
            "step": self.step,
            "s1": self.s1,
            "s1_prev": self.s1_prev,
            "m": self.m,
            "prev": self.prev,
        }

    def load(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.s1, self.s1_prev = float(state["s1"]), float(state["s1_prev"])
        self.m, self.prev = float(state["m"]), float(state["prev"])


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


class _LrFitState(StateModel):
    l0: Vector
    a: Vector
    alpha: Vector
    c: Vector
    objective: Vector
    n_points: Annotated[list[Count], AfterValidator(_counts_per_domain)]
    evaluations: Annotated[list[Count], AfterValidator(_counts_per_domain)]


class _LrState(StateModel):
    seen: list[Annotated[FiniteFloat, Field(ge=0.0)]]
    step: Step
    s1: Annotated[FiniteFloat, Field(ge=0.0)]
    s1_prev: Annotated[FiniteFloat, Field(ge=0.0)]
    m: FiniteFloat
    prev: Annotated[FiniteFloat, Field(ge=0.0)]


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
    lr: None = None  # the state of a 'law: lr' estimator: _LrScalingState
    num_fits: Count
    num_rejected: Count
    num_skipped: Count
    last_fit_step: Step


class _LrPendingState(_PendingState):
    fit: _LrFitState | None  # type: ignore[assignment]


class _LrScalingState(_ScalingState):
    """The state of a ``law: lr`` estimator: its fits are of the learning-rate-aware law."""

    pending: _LrPendingState | None
    fit: _LrFitState | None  # type: ignore[assignment]
    lr: _LrState  # type: ignore[assignment]
