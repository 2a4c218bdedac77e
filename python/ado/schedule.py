"""Learning-rate schedules: the planned learning rate of every step.

One small typed model, :class:`LrSchedule`, used wherever a schedule must be known ahead of time:
the learning-rate-aware scaling law (:func:`ado.estimators.fit_lr_laws`, ADO's ``law: lr``), the
simulator, and the benchmarks.

>>> s = LrSchedule(kind="wsd", peak=1e-3, total=10, warmup=2, decay_steps=4, final=0.0)
>>> s.values().round(5).tolist()
[0.0005, 0.001, 0.001, 0.001, 0.001, 0.001, 0.00075, 0.0005, 0.00025, 0.0]
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, model_validator

__all__ = ["MAX_STEPS", "LrSchedule"]

MAX_STEPS = 2**24
"""The most steps a schedule (and ADO's ``law: lr``, which keeps one learning rate per step)
covers: 16.7 million, 128 MiB of float64 rates."""


class LrSchedule(BaseModel):
    """A learning-rate schedule of ``total`` steps.

    Attributes:
        kind: ``"constant"``; ``"cosine"`` (after the warmup, half a cosine from ``peak`` towards
            ``final * peak`` at step ``total``, the training loop's schedule); ``"wsd"``
            (warmup-stable-decay: ``peak`` until the last ``decay_steps`` steps, then linear down
            to ``final * peak`` at the last step).
        peak: the peak learning rate.
        total: steps in the run.
        warmup: linear warmup steps (step ``i < warmup`` has ``peak * (i + 1) / warmup``).
        final: the last step's rate as a fraction of ``peak``.
        decay_steps: (``wsd``) length of the final decay.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["constant", "cosine", "wsd"] = "cosine"
    peak: float = Field(gt=0.0, allow_inf_nan=False)
    total: int = Field(ge=1, le=MAX_STEPS)
    warmup: NonNegativeInt = 0
    final: float = Field(0.1, ge=0.0, le=1.0)
    decay_steps: NonNegativeInt = 0

    @model_validator(mode="after")
    def _fits(self) -> LrSchedule:
        if not math.isfinite(self.peak * self.total):
            raise ValueError(
                f"peak * total = {self.peak} * {self.total} overflows a double: the area under "
                "the schedule (S1 of the learning-rate-aware law) would be infinite"
            )
        if self.warmup >= self.total:
            raise ValueError(f"warmup ({self.warmup}) must be < total ({self.total})")
        if self.kind == "wsd" and not 0 < self.decay_steps <= self.total - self.warmup:
            raise ValueError(
                f"wsd needs 0 < decay_steps <= total - warmup ({self.total - self.warmup}), "
                f"got {self.decay_steps}"
            )
        return self

    def at(self, step: int) -> float:
        """The learning rate of ``step`` (the rate of the last step past the end)."""
        i = min(max(int(step), 0), self.total - 1)
        return float(self._rates(np.array([i], dtype=np.float64))[0])

    def values(self) -> npt.NDArray[np.float64]:
        """The learning rate of every step ``0..total-1``."""
        return self._rates(np.arange(self.total, dtype=np.float64))

    def _rates(self, i: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        low = self.final * self.peak
        if self.kind == "cosine":
            progress = np.minimum((i - self.warmup) / max(self.total - self.warmup, 1), 1.0)
            out = low + (self.peak - low) * 0.5 * (1.0 + np.cos(np.pi * progress))
        elif self.kind == "wsd":
            start = self.total - self.decay_steps
            progress = np.clip((i - start + 1) / max(self.decay_steps, 1), 0.0, 1.0)
            out = self.peak - (self.peak - low) * progress
        else:
            out = np.full(i.shape, self.peak)
        warm = i < self.warmup
        out[warm] = self.peak * (i[warm] + 1) / self.warmup
        return np.asarray(out, dtype=np.float64)
