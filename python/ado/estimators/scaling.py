"""Scaling-law learning potential: the ADO estimator.

Wraps the online :class:`~ado.estimators.PowerLawEstimator` (smoothing, subsampling, bounded fit
points, all in Rust) with ADO's x-axis bookkeeping and refit schedule, and turns the current fit
into
a per-domain signal: the learning potential ``max(alpha, alpha_floor) * (L(n) - eps) / n``, i.e.
``-dL/dn`` with the exponent floored in the multiplier (ado-method.md §1.6).

A refit runs synchronously inside :meth:`ScalingLawEstimator.observe` at the scheduled steps. The
Rust
fitter fits all K domains in parallel with the GIL released (a few ms for K = 22 and thousands of
points), so a refit costs a fraction of one training step and is applied at a deterministic step.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Literal

import numpy as np

from ado.errors import FitError, InvalidInputError, StateError
from ado.estimators.power_law import FitConfig, PowerLawEstimator, PowerLawFit
from ado.stats import F64, StepStats

__all__ = ["ScalingLawEstimator"]

_sum = np.add.reduce

logger = logging.getLogger(__name__)


class ScalingLawEstimator:
    """Online per-domain power laws and their learning potential.

    Args:
        num_domains: K.
        ignore_steps: observations at steps below this never become fit points.
        start_step: no refit before this step.
        update_interval: refit at steps ``t >= start_step`` with ``t % update_interval == 0``.
        subsample: keep every ``subsample``-th observation as a fit point.
        window: Savitzky-Golay window (odd; 1 disables smoothing).
        order: Savitzky-Golay polynomial order.
        max_points: per-domain fit-point capacity (None: unbounded, the reference).
        overflow: ``"thin"`` or ``"drop_oldest"`` when ``max_points`` is reached.
        missing: absent domain: ``"carry"`` its last loss forward (reference) or ``"skip"`` it.
        x_axis: ``"total"``: n = all samples trained so far, the same for every domain (reference);
            ``"domain"``: n_k = samples of domain k so far (floored at 1).
        fit: the fitting objective.
        min_points: a refit is skipped while any domain has fewer fit points (>= 3, the fitter's
            minimum).
        alpha_floor: the exponent floor in the slope multiplier (reference 0.05).
    """

    def __init__(
        self,
        num_domains: int,
        *,
        ignore_steps: int,
        start_step: int,
        update_interval: int,
        subsample: int = 10,
        window: int = 101,
        order: int = 3,
        max_points: int | None = 4096,
        overflow: Literal["thin", "drop_oldest"] = "thin",
        missing: Literal["carry", "skip"] = "carry",
        x_axis: Literal["total", "domain"] = "total",
        fit: FitConfig | None = None,
        min_points: int = 3,
        alpha_floor: float = 0.05,
    ) -> None:
        if update_interval < 1:
            raise InvalidInputError(f"update_interval must be >= 1, got {update_interval}")
        self._k = num_domains
        self.start_step = start_step
        self.update_interval = update_interval
        self.x_axis = x_axis
        self.fit_config = fit or FitConfig()
        self.min_points = max(3, min_points)
        self.alpha_floor = alpha_floor
        self._est = PowerLawEstimator(
            num_domains,
            ignore_steps=ignore_steps,
            subsample=subsample,
            window=window,
            order=order,
            max_points=max_points,
            overflow=overflow,
            missing=missing,
        )
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
        """Ingest one step and refit if one is due; returns whether a new fit was accepted."""
        counts = stats.counts
        batch = float(_sum(counts))
        if batch <= 0.0:
            raise InvalidInputError(f"step {stats.step}: the batch has no samples (counts all 0)")
        self._total += batch
        self.last_batch = batch
        if self.x_axis == "domain":
            self._domain_n += counts
        losses = self._losses
        losses.fill(np.nan)  # absent domains stay NaN
        np.divide(stats.loss_sums, counts, out=losses, where=counts > 0)
        fill = float(_sum(stats.loss_sums)) / batch  # the batch mean, for a domain never seen
        self._est.update(stats.step, losses, self.x(), fill)
        t = stats.step
        if t >= self.start_step and t % self.update_interval == 0:
            return self.refit(t)
        return False

    def refit(self, step: int) -> bool:
        """Fit now; keep the previous fit if this one is skipped (too few points) or rejected (the
        fitter failed, or returned NaN/inf parameters)."""
        have = int(self._est.num_points().min())
        if have < self.min_points:
            self.num_skipped += 1
            logger.debug("step %d: refit skipped, %d < %d fit points", step, have, self.min_points)
            return False
        start = time.perf_counter()
        try:
            fit = self._est.fit(self.fit_config)
        except FitError as err:
            self.num_rejected += 1
            logger.warning("step %d: power-law fit failed (%s); keeping the last", step, err)
            return False
        finally:
            self.last_fit_ms = (time.perf_counter() - start) * 1e3
        if not fit.is_finite():
            self.num_rejected += 1
            logger.warning("step %d: power-law fit has NaN/inf parameters; keeping the last", step)
            return False
        self.current = fit
        self.num_fits += 1
        self.last_fit_step = step
        return True

    def signal(self) -> F64:
        """Learning potential ``max(alpha, floor) * (L(n) - eps) / n`` (NaN before the first
        fit)."""
        fit = self.current
        if fit is None:
            return np.full(self._k, np.nan)
        # total x-axis: one scalar n for every domain (cheaper than a vector)
        n: float | F64 = self._total if self.x_axis == "total" else self.x()
        eps = fit.eps
        predicted = eps + fit.beta * n**-fit.alpha  # reference arithmetic: L(n), then minus eps
        out: F64 = self._slope_mult * (predicted - eps) / n
        return out

    def points(self, domain: int) -> tuple[F64, F64]:
        """Domain ``domain``'s current fit points ``(n, smoothed loss)``."""
        return self._est.points(domain)

    def state_dict(self) -> dict[str, Any]:
        """JSON-safe state; restores bitwise."""
        fit = self.current
        return {
            "estimator": self._est.state_dict(),
            "total": self._total,
            "domain_n": self._domain_n.tolist(),
            "fit": None
            if fit is None
            else {
                "eps": fit.eps.tolist(),
                "beta": fit.beta.tolist(),
                "alpha": fit.alpha.tolist(),
                "objective": fit.objective.tolist(),
                "n_points": fit.n_points.tolist(),
                "iterations": fit.iterations.tolist(),
            },
            "num_fits": self.num_fits,
            "num_rejected": self.num_rejected,
            "num_skipped": self.num_skipped,
            "last_fit_step": self.last_fit_step,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        try:
            self._est.load_state_dict(state["estimator"])
            self._total = float(state["total"])
            self._domain_n = np.asarray(state["domain_n"], dtype=np.float64)
            f = state["fit"]
            self.current = (
                None
                if f is None
                else PowerLawFit(
                    eps=np.asarray(f["eps"], dtype=np.float64),
                    beta=np.asarray(f["beta"], dtype=np.float64),
                    alpha=np.asarray(f["alpha"], dtype=np.float64),
                    objective=np.asarray(f["objective"], dtype=np.float64),
                    n_points=np.asarray(f["n_points"], dtype=np.int64),
                    iterations=np.asarray(f["iterations"], dtype=np.int64),
                )
            )
            self.num_fits = int(state["num_fits"])
            self.num_rejected = int(state["num_rejected"])
            self.num_skipped = int(state["num_skipped"])
            self.last_fit_step = int(state["last_fit_step"])
        except (KeyError, TypeError) as err:
            raise StateError(f"scaling-law estimator state is malformed: {err!r}") from None
        if self._domain_n.shape != (self._k,):
            raise StateError(f"scaling-law estimator state is for {self._domain_n.size} domains")
