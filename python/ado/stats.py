"""``StepStats``: what a training step tells a policy.

One ``StepStats`` describes the batch trained at global step ``step``, already reduced over all
ranks (every field is a plain per-domain sum, so ranks combine by adding). It is validated once, at
construction, with a handful of vectorised checks (a few microseconds for K = 22): this object is on
the per-step hot path, so it is a slotted dataclass, not a pydantic model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ado.errors import InvalidInputError

__all__ = ["F64", "MAX_STEP", "StepStats", "normalised"]

F64 = npt.NDArray[np.float64]

_sum = np.add.reduce

#: Largest step (steps are int64 in states and u64 in the Rust core).
MAX_STEP = 2**63 - 1


def _vector(name: str, value: Any, k: int | None) -> F64:
    raw = np.asarray(value)
    if raw.dtype.kind not in "iuf":  # not bools, strings, objects (None), complex numbers
        raise InvalidInputError(
            f"StepStats.{name} must hold numbers, got {raw.dtype} values: {value!r:.200}"
        )
    arr = raw.astype(np.float64, copy=False)
    if arr.ndim != 1:
        raise InvalidInputError(f"StepStats.{name} must be 1-D, got shape {arr.shape}")
    if k is not None and arr.shape[0] != k:
        raise InvalidInputError(
            f"StepStats.{name} has {arr.shape[0]} entries; counts has {k} (one per domain)"
        )
    # A NaN or inf anywhere makes the sum non-finite (or overflows): one reduction checks all.
    if not math.isfinite(_sum(arr)):
        raise InvalidInputError(f"StepStats.{name} holds NaN or inf: {arr.tolist()}")
    return arr


def normalised(w: npt.ArrayLike) -> F64:
    """``w / sum(w)`` for finite, non-negative ``w`` with a positive sum, also when the sum
    overflows (``[1e308, 1e308]`` gives ``[0.5, 0.5]``, not ``[0, 0]``). Weights whose sum is
    finite are divided by it exactly as ``w / w.sum()`` would."""
    arr = np.asarray(w, dtype=np.float64)
    with np.errstate(over="ignore"):
        total = float(np.add.reduce(arr))
    if not np.isfinite(total):
        arr = arr / np.maximum.reduce(arr)  # finite entries, so the sum is now <= K
        total = float(np.add.reduce(arr))
    out: F64 = arr / total
    return out


@dataclass(frozen=True, slots=True)
class StepStats:
    """Per-domain statistics of the batch trained at ``step`` (summed over all ranks).

    Args:
        step: the global training step (>= 0) whose batch these statistics describe.
        counts: samples of each domain in the batch, shape ``(K,)``, >= 0.
        loss_sums: per domain, the sum over its samples of each sample's mean token loss; the
            domain's mean loss is ``loss_sums / counts``. Must be 0 where ``counts`` is 0.
        token_counts: optional tokens of each domain in the batch (needed by the token-budget
            guardrail), >= 0.
        ref_loss_sums: optional, like ``loss_sums`` but computed by a reference model on the same
            samples (DoReMi-style excess loss).
        lr: optional learning rate the step was trained with (finite, >= 0; the
            learning-rate-aware law of ADO's ``law: lr`` learns the schedule from it).

    Raises:
        InvalidInputError: wrong shape or length, NaN/inf, negative counts, tokens, losses or
            learning rate, a loss sum for a domain with no samples, a loss sum of exactly 0 for
            a domain with samples, or a step that is not an integer in ``[0, 2**63 - 1]``.
    """

    step: int
    counts: F64
    loss_sums: F64
    token_counts: F64 | None = None
    ref_loss_sums: F64 | None = None
    lr: float | None = None

    def __post_init__(self) -> None:
        step = self.step
        if (
            isinstance(step, bool | np.bool_)
            or not isinstance(step, int | np.integer)
            or not 0 <= step <= MAX_STEP
        ):
            raise InvalidInputError(
                f"StepStats.step must be an integer in [0, 2**63 - 1], got {step!r}"
            )
        counts = _vector("counts", self.counts, None)
        k = counts.shape[0]
        if k == 0:
            raise InvalidInputError("StepStats.counts is empty (need one entry per domain)")
        if np.minimum.reduce(counts) < 0:
            raise InvalidInputError(f"StepStats.counts must be >= 0, got {counts.tolist()}")
        loss_sums = _vector("loss_sums", self.loss_sums, k)
        if np.minimum.reduce(loss_sums) < 0:
            raise InvalidInputError(
                f"StepStats.loss_sums must be >= 0 (sums of per-sample losses), "
                f"got {loss_sums.tolist()}"
            )
        if not counts.all() and np.any(loss_sums[counts == 0]):
            raise InvalidInputError(
                "StepStats.loss_sums is non-zero for a domain with counts == 0: "
                f"counts={counts.tolist()}, loss_sums={loss_sums.tolist()}"
            )
        zero = (loss_sums == 0.0) & (counts > 0)
        if zero.any():
            raise InvalidInputError(
                f"StepStats.loss_sums is exactly 0 for domain(s) {np.flatnonzero(zero).tolist()} "
                "with samples: a mean training loss of exactly 0 is not a loss (losses are "
                "per-sample mean token losses, > 0)"
            )
        object.__setattr__(self, "step", int(step))
        object.__setattr__(self, "counts", counts)
        object.__setattr__(self, "loss_sums", loss_sums)
        if self.token_counts is not None:
            tokens = _vector("token_counts", self.token_counts, k)
            if tokens.min() < 0:
                raise InvalidInputError(
                    f"StepStats.token_counts must be >= 0, got {tokens.tolist()}"
                )
            object.__setattr__(self, "token_counts", tokens)
        if self.ref_loss_sums is not None:
            ref = _vector("ref_loss_sums", self.ref_loss_sums, k)
            if np.minimum.reduce(ref) < 0:
                raise InvalidInputError(f"StepStats.ref_loss_sums must be >= 0, got {ref.tolist()}")
            object.__setattr__(self, "ref_loss_sums", ref)
        if self.lr is not None:
            lr = self.lr
            if isinstance(lr, bool) or not isinstance(lr, int | float | np.floating | np.integer):
                raise InvalidInputError(f"StepStats.lr must be a number, got {lr!r}")
            if not (math.isfinite(lr) and lr >= 0):
                raise InvalidInputError(f"StepStats.lr must be finite and >= 0, got {lr!r}")
            object.__setattr__(self, "lr", float(lr))

    @property
    def num_domains(self) -> int:
        """K."""
        return int(self.counts.shape[0])

    def mean_losses(self) -> F64:
        """Per-domain mean loss ``loss_sums / counts``; NaN for a domain absent from the batch."""
        out = np.full(self.counts.shape, np.nan)
        np.divide(self.loss_sums, self.counts, out=out, where=self.counts > 0)
        return out

    def mean_ref_losses(self) -> F64 | None:
        """Per-domain mean reference loss (NaN where absent), or None without ``ref_loss_sums``."""
        if self.ref_loss_sums is None:
            return None
        out = np.full(self.counts.shape, np.nan)
        np.divide(self.ref_loss_sums, self.counts, out=out, where=self.counts > 0)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (used by the simulator's JSONL log and by replay)."""
        out: dict[str, Any] = {
            "step": self.step,
            "counts": self.counts.tolist(),
            "loss_sums": self.loss_sums.tolist(),
        }
        if self.token_counts is not None:
            out["token_counts"] = self.token_counts.tolist()
        if self.ref_loss_sums is not None:
            out["ref_loss_sums"] = self.ref_loss_sums.tolist()
        if self.lr is not None:
            out["lr"] = self.lr
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepStats:
        """Inverse of :meth:`to_dict` (validated)."""
        try:
            return cls(
                step=data["step"],
                counts=data["counts"],
                loss_sums=data["loss_sums"],
                token_counts=data.get("token_counts"),
                ref_loss_sums=data.get("ref_loss_sums"),
                lr=data.get("lr"),
            )
        except KeyError as err:
            raise InvalidInputError(f"StepStats record lacks field {err}") from None
