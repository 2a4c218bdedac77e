"""Per-domain power laws ``L(n) = eps + beta * n**-alpha``: config, fitting, online estimator.

The numerics live in Rust (``ado._core``); this module validates shapes, holds the typed
configuration and gives the results a small numpy API.

>>> import numpy as np
>>> n = np.arange(1, 201) * 1000.0
>>> losses = 1.8 + 30.0 * n**-0.3
>>> fit = fit_power_laws(n, losses)
>>> bool(abs(fit.alpha[0] - 0.3) < 1e-3)
True
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    PositiveFloat,
    PrivateAttr,
    StrictStr,
    ValidationError,
)

from ado import _core
from ado._state import Count, StateModel, decode_array, encode_array, parse_state
from ado.errors import InvalidInputError, StateError
from ado.estimators.base import checked_num_domains

__all__ = [
    "FitConfig",
    "Limit",
    "PowerLawEstimator",
    "PowerLawEstimatorConfig",
    "PowerLawFit",
    "fit_power_laws",
    "objective",
]

F64 = npt.NDArray[np.float64]


class Limit(BaseModel):
    """A one-sided limit on a parameter: a hard bound, or a linear penalty ``weight * distance``."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    at: float
    weight: float | None = Field(default=None, ge=0, description="None: hard bound")


class FitConfig(BaseModel):
    """The fitting objective and search effort.

    The parameters are ``(log beta, log eps, alpha)``; each has an optional lower and upper
    :class:`Limit`. The default derives its bounds from the data (``1e-6 * min L <= eps <= min L``,
    ``0 <= alpha <= 1``) and so works at any loss scale; :meth:`reference` is exactly the objective
    of the ADO reference implementation.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    huber_delta: PositiveFloat = 1e-3
    log_beta_lower: Limit | None = None
    log_beta_upper: Limit | None = None
    log_eps_lower: Limit | None = None
    log_eps_upper: Limit | None = None
    alpha_lower: Limit | None = Limit(at=0.0)
    alpha_upper: Limit | None = Limit(at=1.0)
    eps_below_min_loss: bool = Field(True, description="hard bound eps <= min observed loss")
    eps_min_ratio: float | None = Field(1e-6, gt=0, le=1, description="eps >= ratio * min loss")
    constant: float = 0.0
    # upper bounds: the Rust core's (MAX_ALPHA_GRID, MAX_SEARCH_POINTS, MAX_ITER), so that a huge
    # number is a ConfigError here rather than hours of search or an allocation failure
    alpha_grid: int = Field(48, ge=2, le=1024, description="exponents tried by the global search")
    search_points: int = Field(128, ge=3, le=16384, description="points used by the global search")
    max_iter: int = Field(300, ge=1, le=100_000, description="Newton iterations per polish")

    _core_spec: _core.FitSpec = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        """Build (and so validate) the Rust-side configuration once, from this model whole."""
        self._core_spec = _core.FitSpec(self.model_dump_json())

    @classmethod
    def reference(cls) -> FitConfig:
        """The reference objective: Huber(1e-3) summed over log residuals, plus the penalties
        ``max(alpha-0.8, 0) - min(alpha, 0.001) + max(log beta-6.5, 0) + max(0.5-log eps, 0)``."""
        return cls(
            log_beta_upper=Limit(at=6.5, weight=1.0),
            log_eps_lower=Limit(at=0.5, weight=1.0),
            alpha_lower=Limit(at=0.001, weight=1.0),
            alpha_upper=Limit(at=0.8, weight=1.0),
            eps_below_min_loss=False,
            eps_min_ratio=None,
            constant=-0.001,
        )


@dataclass(frozen=True)
class PowerLawFit:
    """Fitted laws of K domains: arrays of shape ``(K,)``."""

    eps: F64
    beta: F64
    alpha: F64
    objective: F64
    n_points: npt.NDArray[np.int64]
    iterations: npt.NDArray[np.int64]

    @classmethod
    def _from_core(cls, arrays: tuple[F64, F64, F64, F64, Any, Any]) -> PowerLawFit:
        return cls(*arrays)

    @property
    def num_domains(self) -> int:
        """K."""
        return int(self.eps.shape[0])

    def _n(self, n: npt.ArrayLike) -> F64:
        x = np.atleast_1d(np.asarray(n, dtype=np.float64))
        if x.ndim != 1:
            raise InvalidInputError(f"n must be a scalar or 1-D, got shape {x.shape}")
        if not np.all(np.isfinite(x) & (x > 0)):
            raise InvalidInputError("n must be finite and > 0")
        return x

    def predict(self, n: npt.ArrayLike) -> F64:
        """Predicted loss, shape ``(K, len(n))``."""
        x = self._n(n)
        return self.eps[:, None] + self.beta[:, None] * x[None, :] ** -self.alpha[:, None]

    def slope(self, n: npt.ArrayLike) -> F64:
        """``dL/dn`` (negative), shape ``(K, len(n))``."""
        x = self._n(n)
        a = self.alpha[:, None]
        return -a * self.beta[:, None] * x[None, :] ** (-a - 1.0)

    def is_finite(self) -> bool:
        """Whether every parameter is finite."""
        return bool(np.all(np.isfinite(np.stack([self.eps, self.beta, self.alpha]))))


def _as_rows(n: npt.ArrayLike, losses: npt.ArrayLike) -> tuple[F64, F64]:
    y = np.asarray(losses, dtype=np.float64)
    if y.ndim == 1:
        y = y[None, :]
    if y.ndim != 2:
        raise InvalidInputError(f"losses must have shape (K, T) or (T,), got {y.shape}")
    x = np.asarray(n, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != y.shape[1] or x.shape[0] not in (1, y.shape[0]):
        raise InvalidInputError(
            f"n must have shape (T,) or (K, T) matching losses {y.shape}, got {np.shape(n)}"
        )
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


def fit_power_laws(
    n: npt.ArrayLike, losses: npt.ArrayLike, config: FitConfig | None = None
) -> PowerLawFit:
    """Fit ``L = eps + beta * n**-alpha`` to each domain, in parallel, with the GIL released.

    Args:
        n: x-values, shape ``(T,)`` shared by all domains, or ``(K, T)``.
        losses: shape ``(K, T)``, or ``(T,)`` for one domain.
        config: the objective; :class:`FitConfig` ``()`` by default.

    Raises:
        InvalidInputError: on NaN/inf/non-positive values, bad shapes or fewer than 3 points; the
            message names the domain index.
    """
    cfg = config or FitConfig()
    x, y = _as_rows(n, losses)
    return PowerLawFit._from_core(_core.fit_power_laws(x, y, cfg._core_spec))


def objective(
    n: npt.ArrayLike,
    losses: npt.ArrayLike,
    eps: npt.ArrayLike,
    beta: npt.ArrayLike,
    alpha: npt.ArrayLike,
    config: FitConfig | None = None,
) -> F64:
    """The objective of ``config`` at per-domain parameters (``inf`` outside hard bounds)."""
    cfg = config or FitConfig()
    x, y = _as_rows(n, losses)

    def vec(v: npt.ArrayLike) -> F64:
        return np.ascontiguousarray(np.atleast_1d(np.asarray(v, dtype=np.float64)))

    return _core.objective(x, y, vec(eps), vec(beta), vec(alpha), cfg._core_spec)


_M = TypeVar("_M", bound=BaseModel)


def config_or_fields(model: type[_M], config: _M | None, fields: dict[str, Any]) -> _M:
    """``config``, or a ``model`` built (and validated) from ``fields``.

    Raises:
        InvalidInputError: invalid fields (the message names them), or both were given.
    """
    if config is None:
        try:
            return model(**fields)
        except ValidationError as err:
            raise InvalidInputError(f"{model.__name__}: {err}") from None
    if fields:
        raise InvalidInputError(f"give a {model.__name__} or its fields, not both")
    return config


class PowerLawEstimatorConfig(BaseModel):
    """What the online estimator keeps of the loss stream; the Rust ``EstimatorConfig`` (the
    same fields and defaults, tested; passed to Rust whole as JSON, validated there too).

    Attributes:
        ignore_steps: observations at steps below this never become fit points.
        subsample: keep every ``subsample``-th observation as a fit point.
        window: Savitzky-Golay window (odd; 1 disables smoothing).
        order: Savitzky-Golay polynomial order (below ``window``).
        max_points: per-domain fit-point capacity (None: unbounded).
        overflow: when ``max_points`` is reached: ``"thin"`` (keep every other point and double
            the stride, so the whole run stays covered) or ``"drop_oldest"`` (slide).
        missing: a domain absent from a step: ``"carry"`` its last loss forward, or ``"skip"``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    # upper bounds: the Rust core's (MAX_WINDOW, MAX_ORDER, MAX_POINTS; steps are u64 there)
    ignore_steps: int = Field(0, ge=0, le=2**63 - 1)
    subsample: int = Field(10, ge=1, le=2**32)
    window: int = Field(101, ge=1, le=4095)
    order: int = Field(3, ge=0, le=16)
    max_points: int | None = Field(4096, ge=1, le=1 << 24)
    overflow: Literal["thin", "drop_oldest"] = "thin"
    missing: Literal["carry", "skip"] = "carry"


class PowerLawEstimator:
    """Online per-domain power-law estimator with bounded memory (Rust).

    Feed one row of per-domain mean losses per step; the estimator smooths each domain's series,
    keeps fit points as its :class:`PowerLawEstimatorConfig` says, and fits on demand.

    Args:
        num_domains: K.
        config: the configuration; or give its fields as keywords.

    Raises:
        InvalidInputError: a bad configuration (the message names the field).
    """

    def __init__(
        self,
        num_domains: int,
        config: PowerLawEstimatorConfig | None = None,
        **fields: Any,
    ) -> None:
        checked_num_domains(num_domains, minimum=0)
        self.config = config = config_or_fields(PowerLawEstimatorConfig, config, fields)
        self._inner = _core.PowerLawEstimator(num_domains, config.model_dump_json())

    @property
    def num_domains(self) -> int:
        """K."""
        return self._inner.num_domains

    @property
    def last_step(self) -> int | None:
        """The last step ingested."""
        return self._inner.last_step

    def update(
        self, step: int, losses: npt.ArrayLike, n: npt.ArrayLike, fill: float | None = None
    ) -> None:
        """Ingest step ``step``: per-domain mean losses (NaN = absent) and x-axis values ``n``.

        ``fill`` is imputed for an absent domain that has no earlier loss (carry mode).
        """
        if step < 0:
            raise InvalidInputError(f"step must be >= 0, got {step}")
        self._inner.update(
            step,
            np.ascontiguousarray(losses, dtype=np.float64),
            np.ascontiguousarray(n, dtype=np.float64),
            fill,
        )

    def points(self, domain: int) -> tuple[F64, F64]:
        """Domain ``domain``'s current fit points ``(n, smoothed loss)``."""
        return self._inner.points(domain)

    def num_points(self) -> npt.NDArray[np.int64]:
        """Fit points per domain."""
        return self._inner.num_points()

    def fit(self, config: FitConfig | None = None) -> PowerLawFit:
        """Fit every domain's current points (parallel, GIL released)."""
        cfg = config or FitConfig()
        return PowerLawFit._from_core(self._inner.fit(cfg._core_spec))

    def copy(self) -> PowerLawEstimator:
        """An independent copy (same configuration and state)."""
        out = PowerLawEstimator.__new__(PowerLawEstimator)
        out.config = self.config
        out._inner = self._inner.copy()
        return out

    def state_bytes_bound(self) -> int | None:
        """The most bytes the encoded arrays of :meth:`state_dict` can take, at any step: base64
        of ``8 * (5 + 2 * window + 2 * max_points)`` bytes per domain before compression (None
        when ``max_points`` is None: the points are then unbounded)."""
        cap = self.config.max_points
        if cap is None:
            return None
        raw = 8 * self.num_domains * (5 + 2 * self.config.window + 2 * cap)
        packed = raw + raw // 3000 + 4 * 64  # zlib's worst case: 5 bytes per 16 KiB, + headers
        return 4 * (packed // 3 + 4)  # base64 of each of the 4 arrays

    def state_dict(self) -> dict[str, Any]:
        """JSON-safe state; restores bitwise. Its arrays (every domain's smoothing ring and fit
        points, the per-domain counters) are binary: :func:`~ado._state.encode_array` text, about
        ``11 * (2 * window + 2 * points) + 45`` bytes per domain before compression, whatever
        the number of steps (``points`` <= ``max_points``)."""
        last_step, ints, last, raw, points = self._inner.state_columns()
        return {
            "format": STATE_FORMAT,
            "config": self.config.model_dump(),
            "last_step": last_step,
            "ints": encode_array(ints),
            "last": encode_array(last),
            "raw": encode_array(raw),
            "points": encode_array(points),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (or the JSON form of earlier versions, which held
        every array as a list). The state is checked against the estimator's invariants first
        (raises ``StateError`` naming the domain and field, changing nothing); memory stays
        bounded by the configuration (``max_points`` per domain), whatever the state claims."""
        if not isinstance(state, dict):
            raise StateError(f"estimator state must be a mapping, got {type(state).__name__}")
        if "series" in state:  # the earlier JSON form
            try:
                text = json.dumps(state, allow_nan=False)
            except (TypeError, ValueError) as err:
                raise StateError(f"estimator state is not plain JSON: {err}") from None
            self._inner.load_state_json(text)
            return
        st = parse_state(_ColumnsState, state, "estimator state")
        if st.config != self.config.model_dump():
            raise StateError(
                f"estimator state was saved with {st.config}, this estimator has "
                f"{self.config.model_dump()}"
            )
        k, cfg = self.num_domains, self.config
        ints = decode_array(st.ints, np.uint64, 4 * k, "estimator state ints").reshape(4, k)
        count, points = ints[0], ints[3]
        cap = cfg.max_points or MAX_POINTS  # checked before any array of points is decoded
        if k and int(points.max()) > cap:
            d = int(np.argmax(points))
            raise StateError(
                f"estimator state, domain {d}: {int(points[d])} points exceed max_points {cap}"
            )
        raw_len = int(np.minimum(count, cfg.window).sum())
        n_points = int(points.sum())
        last = decode_array(st.last, np.float64, k, "estimator state last")
        raw = decode_array(st.raw, np.float64, 2 * raw_len, "estimator state raw")
        pts = decode_array(st.points, np.float64, 2 * n_points, "estimator state points")
        self._inner.load_state_columns(
            st.last_step, ints, last, raw.reshape(2, raw_len), pts.reshape(2, n_points)
        )


#: The Rust core's MAX_POINTS: the most fit points of one domain (``max_points`` <= this).
MAX_POINTS = 1 << 24

#: The layout of :meth:`PowerLawEstimator.state_dict` (the earlier JSON form has none).
STATE_FORMAT = "columns-1"


class _ColumnsState(StateModel):
    format: Literal["columns-1"]
    config: dict[str, JsonValue]
    last_step: Count | None
    ints: StrictStr
    last: StrictStr
    raw: StrictStr
    points: StrictStr
