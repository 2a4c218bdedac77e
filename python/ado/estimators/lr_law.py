"""The learning-rate-aware scaling law (Tissue et al., arXiv 2408.11029).

``L(s) = L0 + A * S1(s)**-alpha - C * S2(s)``, where ``S1(s) = sum_{i<=s} lr_i`` is the area under
the learning-rate curve and ``S2(s) = sum_{i<=s} m_i``, ``m_i = decay * m_{i-1} + (lr_{i-1} -
lr_i)``, the annealing area (by default a rise of the rate, i.e. warmup, does not enter ``m``:
see :attr:`LrFitConfig.count_rises`). Unlike the plain power law, it models the whole curve under
any schedule, so it predicts the drop of the loss when the learning rate decays.

The fit runs in Rust (``ado._core``): one law per domain, in parallel, GIL released; global and
deterministic (for a fixed ``alpha`` the law is linear in ``L0, A, C``, solved exactly with
``L0, A, C >= 0``; ``alpha`` is profiled on a grid, then its best minima polished).

>>> import numpy as np
>>> from ado.schedule import LrSchedule
>>> lr = LrSchedule(kind="cosine", peak=1e-3, total=2000, warmup=50).values()
>>> steps = np.arange(20, 2000, 10)
>>> truth = LrLawFit.from_params(lr, l0=[2.0], a=[0.5], alpha=[0.6], c=[0.3])
>>> fit = fit_lr_laws(lr, steps, truth.predict(steps))
>>> [round(float(fit.alpha[0]), 4), round(float(fit.l0[0]), 4), round(float(fit.c[0]), 2)]
[0.6, 2.0, 0.3]
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from ado import _core
from ado.errors import InvalidInputError

__all__ = ["LrFitConfig", "LrLawFit", "fit_lr_laws", "lr_areas"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


class LrFitConfig(BaseModel):
    """The learning-rate-aware fit; the Rust ``LrFitConfig`` (same fields and defaults, tested;
    passed to Rust whole as JSON, validated there too).

    Attributes:
        decay: lambda, the decay of the annealing momentum (Tissue et al.: about 0.999).
        alpha_lower, alpha_upper: the exponents searched.
        alpha_grid: exponents of the global profile search (evenly spaced).
        polish_starts: local minima of the profile polished by golden-section search.
        max_iter: golden-section iterations per polish.
        count_rises: whether rises of the learning rate enter the annealing momentum (the
            literal formula). Off by default: counted, a warmup to the peak leaves ``m`` at
            ``-peak``, decaying over ``1 / (1 - decay)`` steps, so ``S2`` turns deeply negative
            and the law predicts a loss rising long after the warmup.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    decay: float = Field(0.999, ge=0.0, lt=1.0, description="lambda")
    alpha_lower: float = Field(0.01, gt=0.0)
    alpha_upper: float = Field(3.0, gt=0.0)
    # upper bounds: the Rust core's (fit::MAX_ALPHA_GRID, lr_law::MAX_POLISH_STARTS,
    # fit::MAX_ITER; tested equal), so that a huge search is a clear error, not an abort
    alpha_grid: int = Field(96, ge=3, le=1024)
    polish_starts: int = Field(3, ge=1, le=64)
    max_iter: int = Field(80, ge=1, le=100_000)
    count_rises: bool = False

    def model_post_init(self, context: object, /) -> None:
        """Build (and so validate) the Rust-side configuration, from this model whole."""
        _spec(self.model_dump_json())

    @property
    def _core_spec(self) -> _core.LrFitSpec:
        # cached by value, not held by the model: equal configs compare (and hash) equal
        return _spec(self.model_dump_json())


@functools.lru_cache(maxsize=64)
def _spec(config_json: str) -> _core.LrFitSpec:
    return _core.LrFitSpec(config_json)


def _schedule(lr: npt.ArrayLike) -> F64:
    arr = np.ascontiguousarray(lr, dtype=np.float64)
    if arr.ndim != 1:
        raise InvalidInputError(f"lr must be 1-D (one learning rate per step), got {arr.shape}")
    return arr


def _steps(steps: npt.ArrayLike) -> I64:
    arr = np.asarray(steps)
    if arr.ndim == 0:
        arr = arr[None]
    if arr.ndim != 1:
        raise InvalidInputError(f"steps must be 1-D, got shape {arr.shape}")
    integral = np.issubdtype(arr.dtype, np.integer) or (
        np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))
    )
    if not integral:
        raise InvalidInputError(f"steps must be integers, got {arr.tolist()[:8]}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def lr_areas(lr: npt.ArrayLike, config: LrFitConfig | None = None) -> tuple[F64, F64]:
    """``(S1, S2)`` of the schedule ``lr`` at every step (float64, the length of ``lr``), with
    the ``decay`` and ``count_rises`` of ``config``."""
    return _core.lr_areas(_schedule(lr), (config or LrFitConfig())._core_spec)


@dataclass(frozen=True)
class LrLawFit:
    """Fitted laws of K domains (arrays of shape ``(K,)``) and the schedule they were fitted
    under; :meth:`predict` evaluates them at any step of that schedule."""

    l0: F64
    a: F64
    alpha: F64
    c: F64
    objective: F64
    n_points: I64
    evaluations: I64
    lr: F64 = field(repr=False)
    config: LrFitConfig = field(default_factory=LrFitConfig, repr=False)

    @classmethod
    def from_params(
        cls,
        lr: npt.ArrayLike,
        *,
        l0: npt.ArrayLike,
        a: npt.ArrayLike,
        alpha: npt.ArrayLike,
        c: npt.ArrayLike,
        config: LrFitConfig | None = None,
    ) -> LrLawFit:
        """Laws with given parameters (e.g. to make synthetic curves)."""
        cols = [np.atleast_1d(np.asarray(x, dtype=np.float64)) for x in (l0, a, alpha, c)]
        k = cols[0].shape[0]
        if any(x.shape != (k,) for x in cols):
            raise InvalidInputError(
                f"l0, a, alpha and c must be 1-D of equal length, got {[x.shape for x in cols]}"
            )
        zeros = np.zeros(k)
        ints = zeros.astype(np.int64)
        return cls(
            l0=cols[0],
            a=cols[1],
            alpha=cols[2],
            c=cols[3],
            objective=zeros,
            n_points=ints,
            evaluations=ints,
            lr=_schedule(lr),
            config=config or LrFitConfig(),
        )

    @property
    def num_domains(self) -> int:
        """K."""
        return int(self.l0.shape[0])

    def params(self) -> F64:
        """``(K, 4)``: ``l0, a, alpha, c`` per domain."""
        return np.stack([self.l0, self.a, self.alpha, self.c], axis=1)

    def predict(self, steps: npt.ArrayLike) -> F64:
        """Predicted loss at ``steps`` (in ``0..len(lr)-1``) under the fitted schedule, shape
        ``(K, len(steps))``.

        Raises:
            InvalidInputError: a step outside the schedule, or one before any learning (S1 = 0).
        """
        return _core.predict_lr_laws(
            self.lr, _steps(steps), np.ascontiguousarray(self.params()), self.config._core_spec
        )

    def drop(self, step: int) -> F64:
        """``L(step - 1) - L(step)``: the loss decrease the law attributes to ``step`` (>= 1)
        under the schedule, per domain."""
        if step < 1:
            raise InvalidInputError(f"drop needs step >= 1, got {step}")
        pred = self.predict([step - 1, step])
        out: F64 = pred[:, 0] - pred[:, 1]
        return out

    def is_finite(self) -> bool:
        """Whether every parameter is finite."""
        return bool(np.all(np.isfinite(self.params())))


def fit_lr_laws(
    lr: npt.ArrayLike,
    steps: npt.ArrayLike,
    losses: npt.ArrayLike,
    config: LrFitConfig | None = None,
) -> LrLawFit:
    """Fit ``L(s) = L0 + A * S1(s)**-alpha - C * S2(s)`` per domain.

    Args:
        lr: float64[S], the planned learning rate of every step ``0..S-1``.
        steps: int64[T], the steps at which the losses were observed (in ``0..S-1``, after the
            first non-zero learning rate).
        losses: float64[K, T] (or [T] for one domain), finite and > 0.
        config: the fit; default :class:`LrFitConfig` ``()``.

    Raises:
        InvalidInputError: wrong shapes, a negative/NaN learning rate, a step outside the
            schedule or before any learning, a loss that is not finite and > 0, fewer than 4
            points (each message names the culprit).
    """
    cfg = config or LrFitConfig()
    sched = _schedule(lr)
    st = _steps(steps)
    y = np.asarray(losses, dtype=np.float64)
    if y.ndim == 1:
        y = y[None, :]
    if y.ndim != 2:
        raise InvalidInputError(f"losses must have shape (K, T) or (T,), got {y.shape}")
    if y.shape[1] != st.shape[0]:
        raise InvalidInputError(
            f"losses have {y.shape[1]} points per domain but steps has {st.shape[0]}"
        )
    arrays = _core.fit_lr_laws(sched, st, np.ascontiguousarray(y), cfg._core_spec)
    return LrLawFit(*arrays, lr=sched, config=cfg)
