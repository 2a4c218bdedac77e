"""Closed-loop simulator: run a policy against synthetic domains on the CPU, in seconds.

Domain k's expected loss follows a power law of the samples it has effectively seen,
``L_k = eps_k + beta_k * (n0 + m_k)^-alpha_k`` with ``m = T @ N`` (``N_j``: samples of domain j
trained so far; ``T``: the transfer matrix, identity by default). Each sample's loss is ``L_k *
exp(noise_k * z)``, ``z ~ N(0, 1)``. A domain with ``beta = 0`` is a flat "noise" domain whose loss
never falls. Each step draws the batch's domain counts from the policy's current weights
(multinomial, seeded), computes the pre-update losses, feeds the :class:`~ado.StepStats` to the
policy, and advances N. With an ``lr_schedule`` each step's statistics carry its learning rate and
a sample trained at rate ``lr`` adds ``lr / peak`` to N (so the schedule shapes the curves).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat, ValidationError

from ado._config_file import read_config
from ado._deps import require
from ado.errors import ConfigError, InvalidInputError
from ado.policy.base import Policy
from ado.runlog import start_record, step_record
from ado.schedule import LrSchedule
from ado.stats import F64, StepStats

__all__ = [
    "MAX_STEP_DOMAINS",
    "DomainSpec",
    "SimResult",
    "SimSpec",
    "default_spec",
    "load_spec",
    "plot_weights",
    "simulate",
]

logger = logging.getLogger(__name__)

#: The most steps x domains one simulation keeps (2 GiB of results).
MAX_STEP_DOMAINS = 1 << 26


class DomainSpec(BaseModel):
    """One synthetic domain: ``L(m) = eps + beta * (n0 + m)^-alpha`` times lognormal noise."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    eps: PositiveFloat
    beta: NonNegativeFloat = 0.0
    alpha: NonNegativeFloat = 0.0
    noise: NonNegativeFloat = Field(0.05, description="sigma of the per-sample log-loss noise")
    prior: NonNegativeFloat = Field(1.0, description="unnormalised prior weight (e.g. token count)")


class SimSpec(BaseModel):
    """A synthetic pretraining setup (YAML: ``batch_size``, ``domains: [...]``, ``transfer``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    domains: list[DomainSpec] = Field(min_length=1)
    batch_size: int = Field(64, ge=1)
    tokens_per_sample: int = Field(1024, ge=1)
    n0: PositiveFloat = Field(64.0, description="samples seen before step 0 (offset of the law)")
    transfer: list[list[float]] | None = Field(
        None, description="K x K: domain k's effective samples are sum_j transfer[k][j] * N_j"
    )
    lr_schedule: LrSchedule | None = Field(
        None,
        description="a learning-rate schedule: each step's StepStats carries its lr, and a sample "
        "trained at rate lr counts as lr / peak samples in the law",
    )

    @property
    def names(self) -> list[str]:
        """Domain names."""
        return [d.name for d in self.domains]

    def prior(self) -> F64:
        """The normalised prior."""
        p = np.array([d.prior for d in self.domains], dtype=np.float64)
        if p.sum() <= 0:
            raise ConfigError("simulator spec: the domain priors are all 0")
        out: F64 = p / p.sum()
        return out

    def transfer_matrix(self) -> F64:
        """T (identity when not given)."""
        k = len(self.domains)
        if self.transfer is None:
            return np.eye(k)
        t = np.asarray(self.transfer, dtype=np.float64)
        if t.shape != (k, k) or not np.all(np.isfinite(t)) or t.min() < 0:
            raise ConfigError(f"simulator spec: transfer must be a {k}x{k} matrix of values >= 0")
        return t


def default_spec() -> SimSpec:
    """Four learnable domains and one flat noise domain, uniform prior, batch 64."""
    return SimSpec(
        domains=[
            DomainSpec(name="web", eps=2.0, beta=8.0, alpha=0.30),
            DomainSpec(name="code", eps=1.0, beta=6.0, alpha=0.40),
            DomainSpec(name="books", eps=2.3, beta=5.0, alpha=0.25),
            DomainSpec(name="math", eps=1.5, beta=10.0, alpha=0.35),
            DomainSpec(name="noise", eps=3.0, beta=0.0, alpha=0.0, noise=0.1),
        ]
    )


def load_spec(path: str | Path) -> SimSpec:
    """Read a :class:`SimSpec` YAML file."""
    data = read_config(path, "simulator spec")
    try:
        return SimSpec.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{path}: invalid simulator spec:\n{err}") from None


@dataclass
class SimResult:
    """A simulated run. Arrays have one row per step.

    Attributes:
        domains: names.
        weights: the weights each step's batch was drawn from, (T, K).
        counts: samples per domain per step, (T, K).
        loss_sums: per-domain loss sums per step, (T, K).
        expected_loss: noise-free per-domain loss at each step (before its update), (T, K).
        final_loss: noise-free per-domain loss after the last step, (K,).
        final_weights: the policy's weights after the last step, (K,).
    """

    domains: list[str]
    weights: F64
    counts: F64
    loss_sums: F64
    expected_loss: F64
    final_loss: F64
    final_weights: F64

    @property
    def mean_final_loss(self) -> float:
        """Unweighted mean over domains of the final noise-free loss."""
        return float(self.final_loss.mean())


def _losses(spec: SimSpec, seen: F64, transfer: F64) -> F64:
    eps = np.array([d.eps for d in spec.domains])
    beta = np.array([d.beta for d in spec.domains])
    alpha = np.array([d.alpha for d in spec.domains])
    out: F64 = eps + beta * (spec.n0 + transfer @ seen) ** -alpha
    return out


def simulate(
    policy: Policy,
    spec: SimSpec,
    steps: int,
    *,
    seed: int = 0,
    log: IO[str] | None = None,
    progress: bool = False,
    on_step: Callable[[int, Policy], None] | None = None,
) -> SimResult:
    """Run ``policy`` in closed loop for ``steps`` steps.

    Args:
        policy: built for ``spec``'s domains (in order).
        spec: the synthetic domains.
        steps: number of training steps.
        seed: seeds the batch draws and the noise.
        log: if given, a JSONL stream: a header line, then one line per step with the weights used,
            the stats and the noise-free losses.
        progress: show a tqdm progress bar.
        on_step: called after each update with ``(step, policy)``.
    """
    if policy.domains != spec.names:
        raise ConfigError(f"policy domains {policy.domains} != simulator domains {spec.names}")
    if steps * len(spec.domains) > MAX_STEP_DOMAINS:
        raise InvalidInputError(
            f"simulate: {steps} steps x {len(spec.domains)} domains is more than "
            f"{MAX_STEP_DOMAINS} (the result keeps 4 float64 values per step and domain: at most "
            f"{4 * 8 * MAX_STEP_DOMAINS >> 30} GiB); simulate fewer steps"
        )
    lr: F64 | None = None
    if spec.lr_schedule is not None:
        if steps > spec.lr_schedule.total:
            raise ConfigError(
                f"simulate: {steps} steps but the spec's lr_schedule has {spec.lr_schedule.total}"
            )
        lr = spec.lr_schedule.values()
        lr_scale = lr / spec.lr_schedule.peak
    k = len(spec.domains)
    rng = np.random.default_rng(seed)
    transfer = spec.transfer_matrix()
    sigma = np.array([d.noise for d in spec.domains])
    seen = np.zeros(k)
    out_w = np.empty((steps, k))
    out_c = np.empty((steps, k))
    out_s = np.empty((steps, k))
    out_l = np.empty((steps, k))
    if log is not None:
        header = start_record(
            spec.names,
            policy.prior,
            source="simulate",
            spec=spec.model_dump(mode="json"),
            policy=policy.config.model_dump(mode="json"),
            seed=seed,
        )
        log.write(json.dumps(header) + "\n")
    it: Iterator[int] = iter(range(steps))
    if progress:
        from tqdm import tqdm

        it = iter(tqdm(range(steps), desc=f"simulate {policy.config.kind}", unit="step"))
    for t in it:
        w = policy.weights
        counts = rng.multinomial(spec.batch_size, w).astype(np.float64)
        expected = _losses(spec, seen, transfer)
        labels = np.repeat(np.arange(k), counts.astype(np.int64))
        sample_loss = expected[labels] * np.exp(sigma[labels] * rng.standard_normal(labels.size))
        loss_sums = np.asarray(
            np.bincount(labels, weights=sample_loss, minlength=k), dtype=np.float64
        )
        stats = StepStats(
            step=t,
            counts=counts,
            loss_sums=loss_sums,
            token_counts=counts * spec.tokens_per_sample,
            lr=None if lr is None else float(lr[t]),
        )
        policy.update(stats)
        seen += counts if lr is None else counts * lr_scale[t]
        out_w[t], out_c[t], out_s[t], out_l[t] = w, counts, loss_sums, expected
        if log is not None:
            row = step_record(stats, w, expected_loss=expected.tolist())
            log.write(json.dumps(row) + "\n")
        if on_step is not None:
            on_step(t, policy)
    return SimResult(
        domains=spec.names,
        weights=out_w,
        counts=out_c,
        loss_sums=out_s,
        expected_loss=out_l,
        final_loss=_losses(spec, seen, transfer),
        final_weights=policy.weights.copy(),
    )


def plot_weights(result: SimResult, path: str | Path, title: str = "") -> None:
    """Write a PNG: weights over time (top) and noise-free losses (bottom).

    Raises:
        MissingDependencyError: matplotlib is not installed (``pip install 'ado[plot]'``).
    """
    require("matplotlib", "plot", "the weights plot").use("Agg")
    plt = require("matplotlib.pyplot", "plot", "the weights plot")

    steps = np.arange(result.weights.shape[0])
    fig, (ax_w, ax_l) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    ax_w.stackplot(steps, result.weights.T, labels=result.domains)
    ax_w.set_ylabel("weight")
    ax_w.set_ylim(0, 1)
    ax_w.legend(loc="upper left", fontsize="small", ncol=min(5, len(result.domains)))
    ax_w.set_title(title or "mixture weights")
    for k, name in enumerate(result.domains):
        ax_l.plot(steps, result.expected_loss[:, k], label=name)
    ax_l.set_ylabel("expected loss")
    ax_l.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
