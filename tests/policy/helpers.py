"""Shared helpers of the policy tests: synthetic step streams."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from ado import StepStats

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "policies"
# A copy of shared/testdata/ado_reference_stream.npz (see data/README.md for its provenance).
TESTDATA = Path(__file__).resolve().parent / "data"


def stream(
    num_domains: int, steps: int, *, seed: int = 0, batch: int = 32, with_ref: bool = False
) -> Iterator[StepStats]:
    """Open-loop steps: multinomial counts, power-law losses of the step plus noise, and a
    learning rate decaying linearly from 1e-3 to 1e-4 (for ADO's ``law: lr``)."""
    rng = np.random.default_rng(seed)
    eps = rng.uniform(1.0, 3.0, num_domains)
    beta = rng.uniform(2.0, 10.0, num_domains)
    alpha = rng.uniform(0.1, 0.5, num_domains)
    probs = rng.dirichlet(np.ones(num_domains))
    for t in range(steps):
        counts = rng.multinomial(batch, probs).astype(np.float64)
        mean = eps + beta * ((t + 1) * batch) ** -alpha
        losses = mean * np.exp(0.05 * rng.standard_normal(num_domains))
        ref = None
        if with_ref:
            ref = counts * (eps + 0.1 * rng.uniform(size=num_domains))
        yield StepStats(
            step=t,
            counts=counts,
            loss_sums=counts * losses,
            token_counts=counts * 100,
            ref_loss_sums=ref,
            lr=1e-3 * (1.0 - 0.9 * t / steps),
        )
