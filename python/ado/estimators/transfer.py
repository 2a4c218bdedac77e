"""Cross-domain transfer, estimated online from the loss stream and the drawn counts.

``A[k, j]`` (K x K, >= 0): how much a sample of domain j lowers domain k's loss, relative to a
sample of k itself (``A[k, k] = 1``; a row with no measurable own learning stays the identity
row). ADO with ``transfer: on`` credits domain j with ``sum_k target_k * A[k, j] * (-dL_k/dn)``.

Identification. Steps are grouped in blocks of ``block`` steps. Per block b the estimator keeps
each domain's mean training loss ``l_k(b)`` (a domain absent from the whole block carries its
previous block's mean) and the fractions of the samples drawn per domain ``x(b)``. Training on
the samples between the middles of blocks b-1 and b lowers the losses by

    y_k(b) = l_k(b-1) - l_k(b)  ~=  s_k(b) * sum_j A[k, j] * x_j(b),   x = mean of x(b-1), x(b)

with ``s_k`` the drop per block of domain k's own samples, which falls as training proceeds. Two
things make a plain regression of ``y`` on ``x`` confounded: ``s_k`` falls over time while the
policy moves the mixture. So the estimator divides ``y_k`` by its running mean ``ybar_k`` (the
time scale cancels) and regresses the relative drop on the *fast* part of the mixture, ``dx = x -
xbar`` (``xbar``: a running mean over about 2K blocks, which absorbs the policy's slow drift):

    y_k / ybar_k - 1  ~=  sum_j beta[k, j] * dx_j,   beta[k, j] = A[k, j] / sum_i A[k, i] xbar_i

``dx`` sums to 0, so the data give only differences of ``beta``; the identity ``sum_j beta[k, j]
xbar_j = 1`` pins them. The estimate is a non-negative least-squares fit
(``scipy.optimize.nnls``) with exponential forgetting (``forget`` per block) and a ridge penalty
``ridge * trace(G) / K * |beta_k - beta0_k|^2`` towards ``beta0`` = the identity's (``A = I``):
where the data do not tell the domains apart, ``A`` stays near the identity (plain ADO). Then
``A[k, j] = min(beta[k, j] / beta[k, k], max_ratio)``. A row whose running mean drop is not
clearly above 0 (below twice its standard error) has no measurable own learning to be relative
to and stays the identity row.

The fast part of the mixture comes from the multinomial draws and from exploration:
:meth:`explore_domain` names a schedule where in block b a share ``explore`` (<= 5 %) of every
batch is moved to domain ``b mod K`` (the policy applies it; the estimator regresses on what was
actually drawn). Its cost: that share of the tokens follows a round-robin over the domains
instead of the policy, i.e. over a cycle of K blocks ``explore / K`` of the tokens go to each
domain.

Memory is O(K^2) whatever the run length (the Gram matrix ``G = sum dx dx^T``, ``R = sum dx r^T``
and running means, decayed), the state is plain JSON and restores exactly, and everything is
deterministic. The heavy part, K non-negative least-squares solves of size K once per block, is
numpy/scipy (O(K^3) per block; 0.1 ms for K = 10).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import AfterValidator, Field, ValidationInfo

from ado._deps import require
from ado._state import Count, FiniteFloat, StateModel, Step, parse_state
from ado.errors import InvalidInputError
from ado.estimators.base import EstimatorConfigBase, checked_num_domains
from ado.stats import F64, StepStats

__all__ = ["TransferConfig", "TransferEstimator"]

_sum = np.add.reduce


class TransferConfig(EstimatorConfigBase):
    """The transfer estimator's settings (YAML: ADO's ``transfer: {...}``).

    Attributes:
        block: steps per block (the regression's unit of time).
        forget: weight of the past per block (1: every block counts equally).
        ridge: shrinkage of the off-diagonal effects towards 0, relative to the data's scale.
        explore: share of every batch moved to the block's exploration domain (<= 0.05).
        min_blocks: ``A`` stays the identity until this many block pairs were regressed.
        max_ratio: cap on ``A[k, j]``.
    """

    kind: Literal["transfer"] = "transfer"
    block: int = Field(25, ge=1, le=1_000_000)
    forget: float = Field(0.97, gt=0.0, le=1.0)
    ridge: float = Field(0.1, ge=0.0, le=1e6)
    explore: float = Field(0.05, ge=0.0, le=0.05)
    min_blocks: int = Field(10, ge=1, le=1_000_000)
    max_ratio: float = Field(4.0, gt=0.0, le=1e6)

    def build(self, domains: list[str]) -> TransferEstimator:
        """Construct the estimator."""
        return TransferEstimator(len(domains), self)


class TransferEstimator:
    """Online non-negative transfer matrix (see the module docstring).

    Args:
        num_domains: K.
        config: a :class:`TransferConfig`.
    """

    def __init__(self, num_domains: int, config: TransferConfig | None = None) -> None:
        checked_num_domains(num_domains)
        self.config = cfg = config or TransferConfig()
        k = num_domains
        self._k = k
        self._block = cfg.block
        self._gram = np.zeros((k, k))  # sum of dx dx^T, decayed
        self._cross = np.zeros((k, k))  # column k: sum of dx * (y_k / ybar_k - 1), decayed
        self._a = np.eye(k)
        self._blocks = 0  # block pairs regressed
        self._last_step = -1
        self._cur = -1  # index of the block being accumulated
        self._loss_sum = np.zeros(k)  # sum of present per-step mean losses in the current block
        self._present = np.zeros(k)  # steps of the current block where each domain was present
        self._counts = np.zeros(k)  # samples drawn per domain in the current block
        self._prev_loss = np.full(k, np.nan)  # the previous block's mean losses
        self._prev_counts = np.zeros(k)
        self._xbar = np.full(k, np.nan)  # running mean of x (the slow part of the mixture)
        self._ybar = np.zeros(k)  # running mean of y, its square, and the weight behind them
        self._sign = np.zeros(k)  # running mean of sign(y)
        self._weight = 0.0

    @property
    def num_domains(self) -> int:
        """K."""
        return self._k

    @property
    def blocks(self) -> int:
        """Block pairs regressed so far."""
        return self._blocks

    def explore_domain(self, step: int) -> int | None:
        """The domain that receives the exploration share of the batch drawn for ``step``
        (None when ``explore`` is 0)."""
        if self.config.explore == 0.0:
            return None
        return self._explored(step // self._block)

    def _explored(self, b: int) -> int:
        """Block b's exploration domain (:func:`_explored_domain`)."""
        return _explored_domain(b, self._k)

    def observe(self, stats: StepStats) -> None:
        """Ingest one step (steps strictly increase); closes a block when ``stats.step``
        enters the next one."""
        t = stats.step
        if t <= self._last_step:
            raise InvalidInputError(f"step {t} is not after the last step {self._last_step}")
        counts = stats.counts
        b = t // self._block
        if b != self._cur:
            if self._cur >= 0:
                self._close_block()
            self._cur = b
        present = counts > 0
        self._loss_sum[present] += stats.loss_sums[present] / counts[present]
        self._present += present
        self._counts += counts
        self._last_step = t

    def _close_block(self) -> None:
        k = self._k
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(self._present > 0, self._loss_sum / self._present, self._prev_loss)
        total = float(_sum(self._counts) + _sum(self._prev_counts))
        if total > 0 and not np.isnan(self._prev_loss).any() and not np.isnan(mean).any():
            self._regress((self._prev_counts + self._counts) / total, self._prev_loss - mean)
        self._prev_loss = mean
        self._prev_counts = self._counts
        self._loss_sum = np.zeros(k)
        self._present = np.zeros(k)
        self._counts = np.zeros(k)

    def _regress(self, x: F64, y: F64) -> None:
        f = self.config.forget
        if np.isnan(self._xbar).any():
            self._xbar = x.copy()
        else:
            # regress on the part of the mixture the slow mean did not predict, with the drop
            # relative to its running mean (the first blocks only start the means)
            if self._weight > 0.0:
                with np.errstate(invalid="ignore", divide="ignore"):
                    rel = np.where(self._ybar > 0.0, y / self._ybar - 1.0, 0.0)
                dx = self._schedule_dx(self._cur)
                self._gram = f * self._gram + np.outer(dx, dx)
                self._cross = f * self._cross + np.outer(dx, rel)
                self._blocks += 1
            rate = 1.0 / (2.0 * self._k)
            self._xbar = (1.0 - rate) * self._xbar + rate * x
        # ybar: a running mean over about 2K blocks (long enough to average the exploration,
        # short enough to follow the falling scale of the drops)
        self._weight = min(f * self._weight + 1.0, 2.0 * self._k)
        w = 1.0 / self._weight
        self._ybar = (1.0 - w) * self._ybar + w * y
        self._sign = (1.0 - w) * self._sign + w * np.sign(y)
        if self._blocks >= self.config.min_blocks:
            self._a = self._solve()

    def _schedule_dx(self, b: int) -> F64:
        """The exploration's part of ``x`` for the pair (b-1, b), centred: ``explore * (z - 1/K)``
        with ``z`` the mean of the two blocks' one-hot exploration domains."""
        k = self._k
        z = np.full(k, -1.0 / k)
        z[self._explored(b - 1)] += 0.5
        z[self._explored(b)] += 0.5
        out: F64 = self.config.explore * z
        return out

    def _identified(self) -> npt.NDArray[np.bool_]:
        """Rows whose loss clearly falls: at least 3 of 4 block drops (running share) positive."""
        out: npt.NDArray[np.bool_] = self._sign > 0.5
        return out

    def effects(self) -> F64:
        """``beta[k, j]``: the fitted relative drop of domain k's loss per unit of domain j's
        block fraction (the identity's where no row is regressed yet)."""
        k = self._k
        xbar = np.nan_to_num(self._xbar, nan=1.0 / k)
        priors = np.zeros((k, k))
        priors[np.arange(k), np.arange(k)] = 1.0 / np.maximum(xbar, 1e-12)
        return _ridge_nnls(self._gram, self._cross, xbar, priors, self.config.ridge)

    def _solve(self) -> F64:
        beta = self.effects()
        a = np.eye(self._k)
        own = np.diag(beta)
        ok = self._identified()
        for row in range(self._k):
            if ok[row] and own[row] > 0.0:
                a[row] = np.minimum(beta[row] / own[row], self.config.max_ratio)
                a[row, row] = 1.0
        return a

    def matrix(self) -> F64:
        """``A`` (K x K): the identity until ``min_blocks`` block pairs were regressed."""
        return self._a.copy()

    def signal(self) -> F64:
        """How much a sample of each domain lowers all domains' losses, relative to their own
        samples: the column sums of ``A`` (K at most when A is the identity: 1 each)."""
        out: F64 = self._a.sum(axis=0)
        return out

    def state_dict(self) -> dict[str, Any]:
        """JSON-safe state; :meth:`load_state_dict` restores it exactly."""
        return {
            "gram": self._gram.tolist(),
            "cross": self._cross.tolist(),
            "a": self._a.tolist(),
            "blocks": self._blocks,
            "last_step": self._last_step,
            "block_index": self._cur,
            "loss_sum": self._loss_sum.tolist(),
            "present": self._present.tolist(),
            "counts": self._counts.tolist(),
            "prev_loss": [None if np.isnan(v) else float(v) for v in self._prev_loss],
            "prev_counts": self._prev_counts.tolist(),
            "xbar": [None if np.isnan(v) else float(v) for v in self._xbar],
            "ybar": self._ybar.tolist(),
            "sign": self._sign.tolist(),
            "weight": self._weight,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (validated whole first: ``StateError`` naming the
        field, and then nothing changes)."""
        st = parse_state(_TransferState, state, "transfer estimator state", k=self._k)
        self._gram, self._cross, self._a = (
            np.asarray(m, dtype=np.float64) for m in (st.gram, st.cross, st.a)
        )
        self._blocks, self._last_step, self._cur = st.blocks, st.last_step, st.block_index
        self._loss_sum, self._present, self._counts, self._prev_counts = (
            np.asarray(v, dtype=np.float64)
            for v in (st.loss_sum, st.present, st.counts, st.prev_counts)
        )
        self._prev_loss, self._xbar = (
            np.array([np.nan if v is None else v for v in vec], dtype=np.float64)
            for vec in (st.prev_loss, st.xbar)
        )
        self._ybar = np.asarray(st.ybar, dtype=np.float64)
        self._sign = np.asarray(st.sign, dtype=np.float64)
        self._weight = st.weight


def _ridge_nnls(gram: F64, cross: F64, xbar: F64, priors: F64, ridge: float) -> F64:
    """Row r of the result: the non-negative ``beta`` minimising ``|chol^T beta - ...|^2``, i.e.
    ``beta^T G beta - 2 beta^T cross[:, r] + lam |beta - priors[r]|^2`` with the pin
    ``sum_j beta_j xbar_j = 1`` (nearly exact), ``lam = ridge * trace(G) / K``."""
    nnls = require("scipy.optimize", "transfer", "the transfer estimator").nnls
    k = gram.shape[0]
    scale = max(float(np.trace(gram)) / k, 1e-300)
    lam = max(ridge, 1e-9) * scale
    pin = 1e3 * scale  # sum_j beta_j xbar_j = 1, nearly exactly
    m = gram + lam * np.eye(k) + pin * np.outer(xbar, xbar)
    chol = np.linalg.cholesky(m)  # positive definite: G >= 0 plus lam * I
    beta = np.zeros(priors.shape)
    for row in range(priors.shape[0]):
        q = cross[:, row] + lam * priors[row] + pin * xbar
        beta[row] = nnls(chol.T, np.linalg.solve(chol, q))[0]
    return beta


def _explored_domain(b: int, k: int) -> int:
    """Block b's exploration domain: every cycle of K blocks visits each domain once, in an
    order drawn per cycle (fixed by the cycle's index), so that no domain is always explored
    at the same point of a cycle, where a trend in the losses would be mistaken for it."""
    cycle, pos = divmod(b, k)
    return int(np.random.default_rng([0x7A5F, cycle]).permutation(k)[pos])


def _square(value: list[list[float]], info: ValidationInfo) -> list[list[float]]:
    k = (info.context or {}).get("k")
    if k is not None and (len(value) != k or any(len(r) != k for r in value)):
        raise ValueError(f"must be a {k} x {k} matrix")
    return value


def _vector(value: list[Any], info: ValidationInfo) -> list[Any]:
    k = (info.context or {}).get("k")
    if k is not None and len(value) != k:
        raise ValueError(f"has {len(value)} entries; expected one per domain ({k})")
    return value


def _non_negative_matrix(value: list[list[float]]) -> list[list[float]]:
    if any(v < 0 for r in value for v in r):
        raise ValueError("must be >= 0")
    return value


_Matrix = Annotated[list[list[FiniteFloat]], AfterValidator(_square)]
_Vec = Annotated[list[FiniteFloat], AfterValidator(_vector)]


class _TransferState(StateModel):
    gram: _Matrix
    cross: _Matrix
    a: Annotated[_Matrix, AfterValidator(_non_negative_matrix)]
    blocks: Count
    last_step: Step
    block_index: Step
    loss_sum: _Vec
    present: _Vec
    counts: _Vec
    prev_loss: Annotated[list[FiniteFloat | None], AfterValidator(_vector)]
    prev_counts: _Vec
    xbar: Annotated[list[FiniteFloat | None], AfterValidator(_vector)]
    ybar: _Vec
    sign: _Vec
    weight: Annotated[FiniteFloat, Field(ge=0.0)]
