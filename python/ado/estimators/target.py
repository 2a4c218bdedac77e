"""Transfer to a held-out target set, estimated from the set's loss every N steps.

The training loop evaluates a held-out target set (a user's target data, or a held-out split of
the training domains; never an out-of-distribution set, those only measure) every ``every``
steps on a bounded budget of ``tokens`` and hands its mean loss to the policy
(:meth:`ado.Policy.observe_target`). This estimator relates the samples drawn per domain to the
drop of that loss: between the evaluations after steps ``t - every`` and ``t`` the model trained
on the fractions ``x`` of each domain (the counts of the ``every`` steps in between) and the
target loss fell by

    y(e) = L(e-1) - L(e)  ~=  s(e) * sum_j g_j * x_j

with ``g_j`` the drop of the target loss per sample of domain j, relative, and ``s`` the scale,
which falls as training proceeds. As in :class:`~ado.estimators.TransferEstimator` the drop is
divided by its running mean ``ybar`` (the scale cancels), and regressed on the exploration's known
part of the mixture, ``dx = explore * (onehot(j_e) - 1/K)`` (in evaluation interval e a share
``explore`` <= 5 % of every batch goes to domain ``j_e``, a round-robin over the domains whose order
is drawn per cycle of K intervals):

    y / ybar - 1  ~=  sum_j beta_j * dx_j,   sum_j beta_j * xbar_j = 1

The fit is a non-negative least squares with exponential forgetting (``forget`` per interval) and
a ridge ``ridge * trace(G) / K * |beta - beta0|^2`` towards ``beta0``, the caller's prior, which ADO
sets to its own prediction (the target-weighted drop of each domain's in-domain loss per sample of
it, from its scaling-law fits): where the held-out loss does not tell the domains apart, the
estimate is plain ADO's, and it moves away from it only as far as the target's measured drops say.
Until ``min_blocks`` intervals were regressed, and while the target loss does not clearly fall
(fewer than 3 of 4 interval drops positive, running share), the estimate is ``beta0``.

Cost: one evaluation of ``tokens`` tokens (a forward pass, about a third of a training step's
FLOPs per token) every ``every`` steps: ``tokens / (every * tokens_per_step)`` of the training
tokens, a third of that of the training FLOPs; the training loop reports both
(:class:`ado.torch.TrainResult`). Plus the exploration: ``explore`` of the training tokens
follow the round-robin instead of the policy. Memory O(K^2), plain-JSON state restored
exactly, deterministic.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import AfterValidator, Field

from ado._state import Count, FiniteFloat, StateModel, Step, parse_state
from ado.errors import InvalidInputError
from ado.estimators.base import EstimatorConfigBase, checked_num_domains
from ado.estimators.transfer import _explored_domain, _Matrix, _ridge_nnls, _Vec, _vector
from ado.stats import F64, StepStats

__all__ = ["HeldOutTargetConfig", "HeldOutTargetEstimator"]

_sum = np.add.reduce


class HeldOutTargetConfig(EstimatorConfigBase):
    """A held-out target set evaluated by the training loop (YAML: ADO's ``target_set: {...}``).

    Attributes:
        every: steps between evaluations of the target set (also the regression's interval).
        tokens: tokens evaluated per evaluation, all ranks together (the budget; the loop refuses a
            budget below one batch per target domain).
        explore: share of every batch moved to the interval's exploration domain (<= 0.05).
        forget: weight of the past per interval (1: every interval counts equally).
        ridge: shrinkage towards the prior (ADO's own prediction), relative to the data's scale.
        min_blocks: the estimate is the prior until this many intervals were regressed.
    """

    kind: Literal["heldout"] = "heldout"
    every: int = Field(50, ge=1, le=1_000_000)
    tokens: int = Field(16_384, ge=1)
    explore: float = Field(0.05, ge=0.0, le=0.05)
    forget: float = Field(0.97, gt=0.0, le=1.0)
    ridge: float = Field(1.0, ge=0.0, le=1e6)
    min_blocks: int = Field(10, ge=1, le=1_000_000)

    def build(self, domains: list[str]) -> HeldOutTargetEstimator:
        """Construct the estimator."""
        return HeldOutTargetEstimator(len(domains), self)


class HeldOutTargetEstimator:
    """Per-sample drop of a held-out target loss, per domain (see the module docstring).

    Args:
        num_domains: K.
        config: a :class:`HeldOutTargetConfig`.
    """

    def __init__(self, num_domains: int, config: HeldOutTargetConfig | None = None) -> None:
        checked_num_domains(num_domains)
        self.config = config or HeldOutTargetConfig()
        k = self._k = num_domains
        self._gram = np.zeros((k, k))  # sum of dx dx^T, decayed
        self._cross = np.zeros(k)  # sum of dx * (y / ybar - 1), decayed
        self._blocks = 0  # intervals regressed
        self._evals = 0  # target losses received
        self._last_step = -1  # last training step observed
        self._counts = np.zeros(k)  # samples drawn since the last target loss
        self._prev_loss: float | None = None
        self._xbar = np.full(k, np.nan)
        self._ybar = 0.0
        self._sign = 0.0
        self._weight = 0.0

    @property
    def num_domains(self) -> int:
        """K."""
        return self._k

    @property
    def blocks(self) -> int:
        """Intervals regressed so far."""
        return self._blocks

    @property
    def evals(self) -> int:
        """Target losses received so far."""
        return self._evals

    def due(self, step: int) -> bool:
        """Whether the target set is evaluated after training step ``step`` (0-based)."""
        return (step + 1) % self.config.every == 0

    def explore_domain(self, step: int) -> int | None:
        """The domain that receives the exploration share of the batch drawn for ``step`` (None
        when ``explore`` is 0)."""
        if self.config.explore == 0.0:
            return None
        return _explored_domain(step // self.config.every, self._k)

    def observe(self, stats: StepStats) -> None:
        """Ingest one training step (steps strictly increase): its drawn counts."""
        t = stats.step
        if t <= self._last_step:
            raise InvalidInputError(f"step {t} is not after the last step {self._last_step}")
        self._counts += stats.counts
        self._last_step = t

    def observe_target(self, step: int, loss: float) -> None:
        """The target set's mean loss after training step ``step``, which must be the last step
        observed and one where :meth:`due` is true.

        Raises:
            InvalidInputError: a loss that is not finite and > 0, or the wrong step.
        """
        if isinstance(loss, bool) or not isinstance(loss, int | float | np.floating | np.integer):
            raise InvalidInputError(f"target loss must be a number, got {loss!r}")
        loss = float(loss)
        if not (np.isfinite(loss) and loss > 0.0):
            raise InvalidInputError(f"target loss must be finite and > 0, got {loss!r}")
        if step != self._last_step or not self.due(step):
            raise InvalidInputError(
                f"target loss for step {step}: expected one after the last observed step "
                f"({self._last_step}), at a step t with (t + 1) % {self.config.every} == 0"
            )
        total = float(_sum(self._counts))
        if self._prev_loss is not None and total > 0.0:
            self._regress(self._counts / total, self._prev_loss - loss, step // self.config.every)
        self._prev_loss = loss
        self._counts = np.zeros(self._k)
        self._evals += 1

    def _regress(self, x: F64, y: float, b: int) -> None:
        f = self.config.forget
        k = self._k
        if np.isnan(self._xbar).any():
            self._xbar = x.copy()
        else:
            if self._weight > 0.0 and self._ybar > 0.0:
                dx = np.full(k, -1.0 / k)
                dx[_explored_domain(b, k)] += 1.0
                dx *= self.config.explore
                self._gram = f * self._gram + np.outer(dx, dx)
                self._cross = f * self._cross + dx * (y / self._ybar - 1.0)
                self._blocks += 1
            rate = 1.0 / (2.0 * k)
            self._xbar = (1.0 - rate) * self._xbar + rate * x
        # running means over about 2K intervals (long enough to average the exploration)
        self._weight = min(f * self._weight + 1.0, 2.0 * k)
        w = 1.0 / self._weight
        self._ybar = (1.0 - w) * self._ybar + w * y
        self._sign = (1.0 - w) * self._sign + w * float(np.sign(y))

    def effects(self, prior: F64) -> F64:
        """``beta`` (K,): the relative drop of the target loss per sample of each domain, scaled
        so that ``sum_j beta_j xbar_j = 1``; ``prior`` (K, >= 0): the caller's prediction, in any
        scale (normalised the same way; all zeros means uniform). Before ``min_blocks``
        intervals, or while the target loss does not clearly fall, the normalised prior."""
        k = self._k
        xbar = np.nan_to_num(self._xbar, nan=1.0 / k)
        p = np.nan_to_num(np.maximum(np.asarray(prior, dtype=np.float64), 0.0))
        total = float(p @ xbar)
        beta0 = p / total if total > 0.0 and np.isfinite(total) else np.ones(k)
        if self._blocks < self.config.min_blocks or not self._sign > 0.5:
            return beta0
        out: F64 = _ridge_nnls(self._gram, self._cross[:, None], xbar, beta0[None, :],
                               self.config.ridge)[0]
        return out

    def signal(self) -> F64:
        """The estimator contract's signal: :meth:`effects` with a uniform prior."""
        return self.effects(np.ones(self._k))

    def state_dict(self) -> dict[str, Any]:
        """JSON-safe state; :meth:`load_state_dict` restores it exactly."""
        return {
            "gram": self._gram.tolist(),
            "cross": self._cross.tolist(),
            "blocks": self._blocks,
            "evals": self._evals,
            "last_step": self._last_step,
            "counts": self._counts.tolist(),
            "prev_loss": self._prev_loss,
            "xbar": [None if np.isnan(v) else float(v) for v in self._xbar],
            "ybar": self._ybar,
            "sign": self._sign,
            "weight": self._weight,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (validated whole first: ``StateError`` naming the
        field, and then nothing changes)."""
        st = parse_state(_TargetState, state, "held-out target estimator state", k=self._k)
        self._gram = np.asarray(st.gram, dtype=np.float64)
        self._cross = np.asarray(st.cross, dtype=np.float64)
        self._counts = np.asarray(st.counts, dtype=np.float64)
        self._xbar = np.array([np.nan if v is None else v for v in st.xbar], dtype=np.float64)
        self._blocks, self._evals, self._last_step = st.blocks, st.evals, st.last_step
        self._prev_loss, self._ybar, self._sign, self._weight = (
            st.prev_loss, st.ybar, st.sign, st.weight
        )


class _TargetState(StateModel):
    gram: _Matrix
    cross: _Vec
    blocks: Count
    evals: Count
    last_step: Step
    counts: _Vec
    prev_loss: Annotated[FiniteFloat, Field(gt=0.0)] | None
    xbar: Annotated[list[FiniteFloat | None], AfterValidator(_vector)]
    ybar: FiniteFloat
    sign: Annotated[FiniteFloat, Field(ge=-1.0, le=1.0)]
    weight: Annotated[FiniteFloat, Field(ge=0.0)]

