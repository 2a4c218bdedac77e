"""The reference fitting strategy, for comparison: a 512-start grid of L-BFGS-B solves (scipy).

The ADO reference implementation fits each domain from the 8x8x8 start grid
``a in {-2..5}, e in {-2, -1.5, .., 1.5}, alpha in {0, 0.1, .., 0.7}`` with a quasi-Newton method
and keeps the best. This module does the same with ``scipy.optimize.minimize(method="L-BFGS-B")``
on any :class:`~ado.estimators.FitConfig` objective (hard limits become L-BFGS-B bounds), with an
analytic gradient. It is slow by design and exists for tests and benchmarks; it needs ``scipy``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ado.errors import InvalidInputError
from ado.estimators.power_law import FitConfig, Limit

__all__ = ["MultiStartResult", "multistart_fit", "reference_start_grid"]

F64 = npt.NDArray[np.float64]


def reference_start_grid() -> F64:
    """The reference's 512 starts as rows ``(a, e, alpha)``."""
    a = np.arange(-2.0, 6.0)
    e = np.arange(-2.0, 2.0, 0.5)
    alpha = np.arange(0.0, 0.8, 0.1)
    return np.array(list(itertools.product(a, e, alpha)), dtype=np.float64)


@dataclass(frozen=True)
class MultiStartResult:
    """Best of all starts for one domain."""

    theta: F64  # (a, e, alpha)
    objective: float


class _Objective:
    """The objective of a FitConfig with its penalties, value and (sub)gradient, in numpy."""

    def __init__(self, n: F64, losses: F64, config: FitConfig) -> None:
        self.u = np.log(n)
        self.y = np.log(losses)
        self.delta = config.huber_delta
        lower = [config.log_beta_lower, config.log_eps_lower, config.alpha_lower]
        upper = [config.log_beta_upper, config.log_eps_upper, config.alpha_upper]
        # Soft limits as (index, position, weight); hard limits become L-BFGS-B bounds.
        self.soft_lower = [(j, lim.at, lim.weight) for j, lim in _soft(lower)]
        self.soft_upper = [(j, lim.at, lim.weight) for j, lim in _soft(upper)]
        min_loss = float(np.min(losses))
        bounds: list[list[float | None]] = [
            [_hard(lo), _hard(hi)] for lo, hi in zip(lower, upper, strict=True)
        ]
        if config.eps_below_min_loss:
            hi_e = float(np.log(min_loss))
            bounds[1][1] = hi_e if bounds[1][1] is None else min(bounds[1][1], hi_e)
        if config.eps_min_ratio is not None:
            lo_e = float(np.log(config.eps_min_ratio * min_loss))
            bounds[1][0] = lo_e if bounds[1][0] is None else max(bounds[1][0], lo_e)
        self.bounds = [(lo, hi) for lo, hi in bounds]
        self.constant = config.constant

    def __call__(self, theta: F64) -> tuple[float, F64]:
        a, e, alpha = theta
        z = a - alpha * self.u
        m = np.logaddexp(z, e)
        p = np.exp(z - m)
        r = self.y - m
        absr = np.abs(r)
        inside = absr <= self.delta
        value = float(np.sum(np.where(inside, 0.5 * r * r, self.delta * (absr - 0.5 * self.delta))))
        psi = np.clip(r, -self.delta, self.delta)
        grad = -np.array([np.sum(psi * p), np.sum(psi * (1 - p)), np.sum(-psi * self.u * p)])
        for j, at, w in self.soft_lower:
            if theta[j] < at:
                value += w * (at - theta[j])
                grad[j] -= w
        for j, at, w in self.soft_upper:
            if theta[j] > at:
                value += w * (theta[j] - at)
                grad[j] += w
        return value + self.constant, grad


def _soft(limits: list[Limit | None]) -> list[tuple[int, _SoftLimit]]:
    return [
        (j, _SoftLimit(lim.at, lim.weight))
        for j, lim in enumerate(limits)
        if lim is not None and lim.weight is not None
    ]


@dataclass(frozen=True)
class _SoftLimit:
    at: float
    weight: float


def _hard(lim: Limit | None) -> float | None:
    return lim.at if lim is not None and lim.weight is None else None


def multistart_fit(
    n: npt.ArrayLike,
    losses: npt.ArrayLike,
    config: FitConfig | None = None,
    starts: F64 | None = None,
    maxiter: int = 200,
) -> MultiStartResult:
    """Fit one domain from every start with L-BFGS-B and keep the lowest objective.

    ``maxiter`` defaults to the reference's 200 iterations per start.
    """
    try:
        from scipy.optimize import minimize  # type: ignore[import-untyped]
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("multistart_fit needs scipy: pip install scipy") from err
    cfg = config or FitConfig()
    x = np.asarray(n, dtype=np.float64)
    y = np.asarray(losses, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape or x.size < 3:
        raise InvalidInputError(
            f"need 1-D n and losses of equal length >= 3, got {x.shape}, {y.shape}"
        )
    fun = _Objective(x, y, cfg)
    grid = reference_start_grid() if starts is None else np.asarray(starts, dtype=np.float64)
    best_theta = np.full(3, np.nan)
    best = np.inf
    for start in grid:
        x0 = np.array(
            [
                np.clip(s, lo if lo is not None else -np.inf, hi if hi is not None else np.inf)
                for s, (lo, hi) in zip(start, fun.bounds, strict=True)
            ]
        )
        res = minimize(
            fun, x0, jac=True, method="L-BFGS-B", bounds=fun.bounds, options={"maxiter": maxiter}
        )
        if np.isfinite(res.fun) and res.fun < best:
            best = float(res.fun)
            best_theta = np.asarray(res.x, dtype=np.float64)
    return MultiStartResult(theta=best_theta, objective=best)
