"""ADO: Adaptive Data Optimization (Jiang et al., ICLR 2025, arXiv 2410.11820).

Per step t, with the statistics of the batch trained at t:

1. n += batch size (``x_axis: total``: the same n for every domain, the reference); each domain's
   mean loss (absent: carried forward; never seen: the batch mean) enters the online power-law
   estimator (Savitzky-Golay ``window``/``order``, every ``subsample``-th step from
   ``ignore_steps`` on);
2. credit ``h <- (1 - credit_rate) * h + credit_rate * c/B`` (realised batch fractions),
   ``h_0 = mu``;
3. refit when ``t >= start_step`` and ``t % update_interval == 0``; a failed fit or one with
   NaN/inf is rejected and the previous one kept; before the first accepted fit the weights are
   ``mu``;
4. slope ``s_k = max(alpha_k, alpha_floor) * (L_k(n) - eps_k) / n``;
   ``rho ∝ mu * h^credit_exponent * s``, normalised, then floored at ``min_prob`` and
   renormalised (the reference ``clip_min_probability``);
5. ``pi = (1 - mix_rate) * pi_bar + mix_rate * rho`` (the weights), then ``pi_bar`` moves towards
   ``rho`` by a running mean.

Paper symbols: gamma1 = ``credit_rate`` (0.1), s = ``credit_exponent`` (0.5), gamma2 =
``mix_rate`` (0.1), delta_min = ``min_prob`` (0.01).

Two presets: ``policies/ado-reference.yaml`` reproduces the reference code (``yidingjiang/ado`` @
bc3d8d0); ``policies/ado.yaml`` keeps the method but fixes the reference's flaws:

* ``min_points``: no fit on fewer points (the reference fits 3 parameters to 1 point at its first
  refit); the preset's ``start_step`` leaves room for them;
* ``fit: default``: scale-free bounds (``eps`` between 1e-6·min L and min L, ``alpha`` in [0, 1])
  instead of the reference's log-space penalties (``eps >= e^0.5`` nats, ``beta <= e^6.5``), which
  depend on the loss level and the unit of n;
* ``max_points``: bounded memory (the fit points are thinned to every other one when full; the
  reference keeps and re-smooths the whole history); ``point_budget`` (2^20 fit points over all
  domains) lowers it at large K (4096 up to K = 256, 104 at K = 10^4, never below
  ``2 * min_points``), so memory and the state stay about ``16 * (window + points)`` bytes per
  domain at any step, the state's arrays binary (base64 of zlib'd little-endian columns);
* resume: :meth:`Policy.state_dict` restores the whole state (estimator, fit, ``h``, ``pi_bar``,
  n) bitwise; the reference's resume path is dead code and restarts n at 0.

``law: lr`` replaces the power law by the learning-rate-aware law of Tissue et al. (fitted over
steps, so the fits see the schedule's decay; see :class:`~ado.estimators.ScalingLawEstimator`);
it is off by default (``law: power``), see ``policies/ado.yaml``.

One option changes the method and is off by default, because on the 10-domain benchmark it
measured worse (``benchmarks/results/ado-ablation/``): ``average: first_fit`` (``pi_bar``
averages ``rho`` from the first fit on, the prior counting as ``prior_weight`` steps, so the
first, noisy fits drive the weights: +4.7 % held-out loss against natural, vs +0.3 % for the
paper's running mean over all steps).

``alpha_floor`` is 0 (the paper's ``-dL/dn``), not the reference's 0.05: the floor counts
``0.05 (L - eps)`` of learning potential for a domain whose fit has ``alpha`` near 0, but for a
flat curve ``eps`` and ``beta`` trade off freely, so that reducible loss is not identified by the
data; it is set by the fit's bound on ``eps`` (the reference's ``eps >= e^0.5`` leaves ``L -
1.65``, our scale-free bound all of ``L``). With the floor, an unlearnable domain became the most
"learnable" one (issue 24; ``tests/policy/test_sim.py``).

Beyond the paper (issue 24), both off by default:

* ``target``: per-domain weights of the losses the user cares about (a mapping name -> weight,
  normalised; domains not named weigh 0). Default: the prior, the paper's objective
  (``rho ∝ mu * h^s * s``). With a target, ``mu`` in that product becomes the target.
* ``transfer: {...}`` (a :class:`~ado.estimators.TransferConfig`): an online estimate of the
  transfer matrix ``A`` (:class:`~ado.estimators.TransferEstimator`), and a domain's learning
  potential counts the predicted drop of every target domain's loss per sample of it,
  ``sum_k target_k * A[k, j] * s_k``, instead of only its own (``A`` = identity gives plain ADO).
  To identify ``A`` it moves ``transfer.explore`` (<= 5 %) of every batch to a round-robin
  exploration domain, block by block (the estimator's schedule).

Refits never stall training for long and always take effect at a deterministic step. By default
(``fit_delay: 0``) they run synchronously inside :meth:`update`: the Rust fitter fits all K domains
in parallel with the GIL released (tens of milliseconds for K = 22 and a few thousand points per
domain). With ``fit_delay: d`` the fit runs on a background thread from a snapshot of the points
taken at the scheduled step t and is applied at step t + d exactly (waiting only if it is not done
by then), so training does not wait for it and the weights do not depend on timing.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field, model_validator

from ado._state import Count, Distribution, StateModel, parse_state
from ado.errors import ConfigError, StateError
from ado.estimators import (
    HeldOutTargetConfig,
    HeldOutTargetEstimator,
    PowerLawFit,
    ScalingLawConfig,
    ScalingLawEstimator,
    TransferConfig,
    TransferEstimator,
)
from ado.policy.base import Policy, PolicyConfig, register_policy
from ado.stats import F64, StepStats, normalised

__all__ = ["ADO", "clip_min_probability"]

logger = logging.getLogger(__name__)

_sum = np.add.reduce


def clip_min_probability(probs: F64, min_prob: float) -> F64:
    """The reference floor: rescale by the deficit ``max(min_prob * K - sum, 0)`` (non-zero only
    when ``K * min_prob > 1``), floor at ``min_prob``, renormalise."""
    total = float(_sum(probs))
    deficit = max(min_prob * probs.shape[0] - total, 0.0)
    clipped: F64 = np.maximum(probs * ((1.0 - deficit) / total), min_prob)
    clipped /= _sum(clipped)
    return clipped


@register_policy
class ADO(Policy):
    """Adaptive Data Optimization: per-domain scaling laws, credit assignment, smoothed policy."""

    class Config(PolicyConfig, ScalingLawConfig):
        """``kind: ado``: the estimator's fields (:class:`~ado.estimators.ScalingLawConfig`:
        schedule, fit data, objective, slope rule) plus the rule's. Defaults are those of
        ``policies/ado.yaml``."""

        kind: Literal["ado"] = "ado"
        credit_rate: float = Field(0.1, gt=0.0, le=1.0)
        credit_exponent: float = Field(0.5, ge=0.0)
        credit_source: Literal["realised", "policy"] = "realised"
        min_prob: float = Field(0.01, ge=0.0, lt=1.0)
        mix_rate: float = Field(0.1, ge=0.0, le=1.0)
        average: Literal["step", "first_fit"] = "step"
        prior_weight: float = Field(1.0, ge=0.0)
        transfer: TransferConfig | None = None
        target: dict[str, Annotated[float, Field(ge=0.0, allow_inf_nan=False)]] | None = None
        target_set: HeldOutTargetConfig | None = None

        @model_validator(mode="after")
        def _one_explorer(self) -> ADO.Config:
            if self.transfer is not None and self.target_set is not None:
                raise ValueError(
                    "transfer and target_set cannot both be set (each explores on its own "
                    "schedule); use target_set for a held-out target, transfer for in-domain ones"
                )
            return self

        def harness_needs(self) -> frozenset[str]:
            """A step schedule, and with ``target_set`` a held-out target set evaluated by the
            training loop (see :meth:`PolicyConfig.harness_needs`)."""
            if self.target_set is not None:
                return frozenset({"schedule", "target_set"})
            return frozenset({"schedule"})

    config: Config

    def __init__(
        self, config: PolicyConfig, domains: Sequence[str], prior: npt.ArrayLike | None = None
    ) -> None:
        super().__init__(config, domains, prior)
        cfg = self.config
        self.estimator = ScalingLawEstimator(self.num_domains, cfg)
        mu = self.prior
        self._h = mu.copy()
        self._pi_bar = mu.copy()
        self._rho = mu.copy()
        self._averaged = 0  # steps averaged into pi_bar (first_fit mode)
        self._degenerate = 0
        # hot-path constants
        self._keep_h = 1.0 - cfg.credit_rate
        self._keep_pi = 1.0 - cfg.mix_rate
        self._target = mu if cfg.target is None else _target_vector(cfg.target, self.domains)
        self.transfer: TransferEstimator | None = None
        if cfg.transfer is not None:
            self.transfer = cfg.transfer.build(list(self.domains))
        self.target_set: HeldOutTargetEstimator | None = None
        if cfg.target_set is not None:
            self.target_set = cfg.target_set.build(list(self.domains))
        self._effects_key: tuple[int, bytes] | None = None  # cache of target_set.effects()
        self._effects = mu

    @property
    def target(self) -> F64:
        """The target weights (the prior unless ``target`` is set)."""
        return self._target.copy()

    def observe_target(self, step: int, loss: float) -> None:
        """``target_set``: the held-out target set's mean loss after training step ``step``
        (see :meth:`Policy.observe_target`)."""
        if self.target_set is None:
            super().observe_target(step, loss)
            return
        self.target_set.observe_target(step, loss)

    def _explore(self, weights: F64, step: int) -> F64:
        """``transfer`` / ``target_set``: move ``explore`` of the batch drawn at ``step + 1``
        to that block's exploration domain."""
        tr = self.transfer if self.transfer is not None else self.target_set
        if tr is None:
            return weights
        j = tr.explore_domain(step + 1)
        if j is None:
            return weights
        e = tr.config.explore
        out = weights * (1.0 - e)
        out[j] += e
        return out


    def close(self) -> None:
        """Stop the estimator's fit thread (see :meth:`ScalingLawEstimator.close`)."""
        self.estimator.close()
    def _update(self, stats: StepStats) -> F64:
        # Hot path (every step): about 20 numpy operations on K-vectors, nothing O(t).
        cfg = self.config
        est = self.estimator
        side = self.transfer if self.transfer is not None else self.target_set
        if side is not None:  # validated first: a bad step changes nothing
            saved = side.state_dict()
            side.observe(stats)
            try:
                est.observe(stats)
            except BaseException:
                side.load_state_dict(saved)
                raise
        else:
            est.observe(stats)  # all or nothing; nothing below can fail
        if cfg.credit_source == "realised":
            h = self._h * self._keep_h + cfg.credit_rate * (stats.counts / est.last_batch)
        else:
            h = self._h * self._keep_h + cfg.credit_rate * self._weights
        self._h = h
        t = stats.step
        if est.current is None or t < cfg.start_step:
            return self._explore(self.prior.copy(), t) if side is not None else self.prior
        credit = np.sqrt(h) if cfg.credit_exponent == 0.5 else h**cfg.credit_exponent
        if self.target_set is not None:
            # per sample of j: the measured drop of the held-out target's loss, shrunk towards
            # ADO's own prediction (the target-weighted drop of j's in-domain loss)
            score = credit * self._target_effects(np.nan_to_num(self._target * est.signal()))
        elif self.transfer is None:
            score = self._target * credit * est.signal()
        else:
            # per sample of j: the predicted drop of every target domain's loss
            drop = np.nan_to_num(self._target * est.signal(), nan=0.0)
            score = credit * (self.transfer.matrix().T @ drop)
        with np.errstate(over="ignore"):
            total = float(_sum(score))
        if total == math.inf and np.isfinite(score).all():  # finite scores whose sum overflows
            rho = clip_min_probability(normalised(score), cfg.min_prob)
        elif not (total > 0.0 and math.isfinite(total)):
            self._degenerate += 1
            logger.warning("step %d: ADO scores are degenerate (sum %r); rho := prior", t, total)
            rho = self.prior.copy()
        else:
            rho = clip_min_probability(score / total, cfg.min_prob)
        self._rho = rho
        pi = self._keep_pi * self._pi_bar
        pi += cfg.mix_rate * rho
        if cfg.average == "step":
            rate = 1.0 / (t + 1)
        else:
            self._averaged += 1
            rate = 1.0 / (cfg.prior_weight + self._averaged)
        pi_bar = self._pi_bar * (1.0 - rate)
        pi_bar += rate * rho
        self._pi_bar = pi_bar
        return self._explore(pi, t)

    def _target_effects(self, prior: F64) -> F64:
        """``target_set.effects(prior)``, recomputed only when a new interval was regressed
        or the prior moved (at a refit)."""
        assert self.target_set is not None
        key = (self.target_set.blocks, prior.tobytes())
        if key != self._effects_key:
            self._effects = self.target_set.effects(prior)
            self._effects_key = key
        return self._effects

    def metrics(self) -> dict[str, float]:
        """Weights, fit counters and parameters, credit, ``rho`` and ``pi_bar`` per domain."""
        out = super().metrics()
        est = self.estimator
        out["fits"] = float(est.num_fits)
        out["fits_rejected"] = float(est.num_rejected)
        out["fits_skipped"] = float(est.num_skipped)
        out["last_fit_step"] = float(est.last_fit_step)
        out["last_fit_ms"] = est.last_fit_ms
        out["degenerate"] = float(self._degenerate)
        out["samples"] = est.total_samples
        if self.transfer is not None:
            out["transfer_blocks"] = float(self.transfer.blocks)
        if self.target_set is not None:
            out["target_evals"] = float(self.target_set.evals)
            out["target_blocks"] = float(self.target_set.blocks)
        fit = est.current
        for k, d in enumerate(self.domains):
            out[f"credit/{d}"] = float(self._h[k])
            out[f"rho/{d}"] = float(self._rho[k])
            out[f"pi_bar/{d}"] = float(self._pi_bar[k])
            if isinstance(fit, PowerLawFit):
                out[f"eps/{d}"] = float(fit.eps[k])
                out[f"beta/{d}"] = float(fit.beta[k])
            elif fit is not None:  # law: lr
                out[f"L0/{d}"] = float(fit.l0[k])
                out[f"A/{d}"] = float(fit.a[k])
                out[f"C/{d}"] = float(fit.c[k])
            if fit is not None:
                out[f"alpha/{d}"] = float(fit.alpha[k])
        return out

    def _state(self) -> dict[str, Any]:
        return {
            "estimator": self.estimator.state_dict(),
            "h": self._h.tolist(),
            "pi_bar": self._pi_bar.tolist(),
            "rho": self._rho.tolist(),
            "averaged": self._averaged,
            "degenerate": self._degenerate,
            "transfer": None if self.transfer is None else self.transfer.state_dict(),
            "target_set": None if self.target_set is None else self.target_set.state_dict(),
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        st = parse_state(_ADOState, state, "ado state", k=self.num_domains)
        if (st.transfer is None) != (self.transfer is None):
            raise StateError(
                "ado state: 'transfer' "
                + ("is missing, but this policy has transfer on" if st.transfer is None else
                   "is set, but this policy has transfer off")
            )
        if (st.target_set is None) != (self.target_set is None):
            raise StateError(
                "ado state: 'target_set' "
                + ("is missing, but this policy has a target_set" if st.target_set is None else
                   "is set, but this policy has no target_set")
            )
        side, side_state = (
            (self.transfer, st.transfer) if self.transfer is not None
            else (self.target_set, st.target_set)
        )
        saved = None if side is None else side.state_dict()
        if side is not None and side_state is not None:
            side.load_state_dict(side_state)  # validated whole first
        try:
            self.estimator.load_state_dict(st.estimator)  # validated whole before it changes
        except BaseException:
            if side is not None and saved is not None:
                side.load_state_dict(saved)
            raise
        self._effects_key = None
        self._h, self._pi_bar, self._rho = (
            np.asarray(v, dtype=np.float64) for v in (st.h, st.pi_bar, st.rho)
        )
        self._averaged, self._degenerate = st.averaged, st.degenerate


class _ADOState(StateModel):
    estimator: dict[str, Any]
    h: Distribution
    pi_bar: Distribution
    rho: Distribution
    averaged: Count
    degenerate: Count
    transfer: dict[str, Any] | None = None
    target_set: dict[str, Any] | None = None


def _target_vector(target: dict[str, float], domains: Sequence[str]) -> F64:
    unknown = sorted(set(target) - set(domains))
    if unknown:
        raise ConfigError(f"ado: target names unknown domains {unknown} (domains: {list(domains)})")
    vec = np.array([float(target.get(d, 0.0)) for d in domains])
    total = float(_sum(vec))
    if not total > 0.0:
        raise ConfigError("ado: target weights are all 0")
    out: F64 = vec / total
    return out
