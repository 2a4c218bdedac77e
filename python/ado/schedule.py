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
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveFloat, model_validator

__all__ = ["LrSchedule"]


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
    peak: PositiveFloat
    total: int = Field(ge=1)
    warmup: NonNegativeInt = 0
    final: float = Field(0.1, ge=0.0, le=1.0)
    decay_steps: NonNegativeInt = 0

    @model_validator(mode="after")
    def _fits(self) -> LrSchedule:
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
        if i < self.warmup:
            return self.peak * (i + 1) / self.warmup
        low = self.final * self.peak
        if self.kind == "cosine":
            progress = min((i - self.warmup) / max(self.total - self.warmup, 1), 1.0)
            return low + (self.peak - low) * 0.5 * (1.0 + math.cos(math.pi * progress))
        if self.kind == "wsd":
            start = self.total - self.decay_steps
            progress = min(max((i - start + 1) / self.decay_steps, 0.0), 1.0)
            return self.peak - (self.peak - low) * progress
        return self.peak

    def values(self) -> npt.NDArray[np.float64]:
        """The learning rate of every step ``0..total-1``."""
        return np.array([self.at(i) for i in range(self.total)], dtype=np.float64)
