"""Hypothesis properties: every policy's weights are a distribution; the floor is respected."""

from __future__ import annotations

from typing import Any

import numpy as np
from ado import StepStats, load_policy
from hypothesis import given, settings
from hypothesis import strategies as st

SHORT_ADO = {
    "kind": "ado",
    "ignore_steps": 0,
    "start_step": 10,
    "update_interval": 10,
    "subsample": 1,
    "window": 5,
    "min_points": 3,
}
CONFIGS: list[dict[str, Any]] = [
    {"kind": "static", "weights": "natural"},
    {"kind": "static", "weights": "uniform"},
    {"kind": "temperature", "temperature": 0.5, "final_temperature": 4.0, "schedule_steps": 20},
    {"kind": "doremi", "eta": 5.0, "smoothing": 0.0},
    {"kind": "odm"},
    {"kind": "odm", "update": "gibbs"},
    SHORT_ADO,
    {**SHORT_ADO, "fit": "reference", "average": "step", "alpha_floor": 0.05},
]


Run = tuple[dict[str, Any], list[float], list[StepStats], float]


@st.composite
def runs(draw: st.DrawFn) -> Run:
    k = draw(st.integers(2, 6))
    config = draw(st.sampled_from(CONFIGS))
    prior = draw(st.lists(st.floats(0.0, 1.0), min_size=k, max_size=k).filter(lambda p: sum(p) > 0))
    steps = draw(st.integers(1, 35))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    batch = draw(st.integers(1, 16))
    scale = draw(st.sampled_from([1e-3, 1.0, 30.0]))  # losses up to 150 nats
    stats = []
    for t in range(steps):
        counts = rng.multinomial(batch, rng.dirichlet(np.ones(k))).astype(float)
        losses = scale * rng.uniform(0.5, 5.0, k) * (t + 1) ** -0.2
        ref = counts * scale * rng.uniform(0.5, 5.0, k)
        stats.append(
            StepStats(
                step=t,
                counts=counts,
                loss_sums=counts * losses,
                ref_loss_sums=ref,
                token_counts=counts,
            )
        )
    floor = draw(st.floats(0.0, 1.0)) / k
    return config, prior, stats, floor


def _check(w: np.ndarray, floor: float | None) -> None:
    assert np.all(np.isfinite(w))
    assert w.min() >= 0.0
    assert abs(w.sum() - 1.0) <= 1e-12
    if floor is not None:
        assert w.min() >= floor * (1 - 1e-12)


@settings(max_examples=60, deadline=None)
@given(runs())
def test_weights_are_a_distribution(
    run: tuple[dict[str, Any], list[float], list[StepStats], float],
) -> None:
    config, prior, stats, _ = run
    k = len(prior)
    policy = load_policy(config, domains=[f"d{i}" for i in range(k)], prior=prior)
    _check(policy.weights, None)
    for s in stats:
        policy.update(s)
        _check(policy.weights, None)


@settings(max_examples=60, deadline=None)
@given(runs())
def test_floor_guardrail_is_respected(
    run: tuple[dict[str, Any], list[float], list[StepStats], float],
) -> None:
    config, prior, stats, floor = run
    k = len(prior)
    guarded = {
        **config,
        "guardrails": [
            {"kind": "smoothing", "rate": 0.7},
            {"kind": "floor", "min_prob": max(floor, 1e-9)},
        ],
    }
    policy = load_policy(guarded, domains=[f"d{i}" for i in range(k)], prior=prior)
    _check(policy.weights, floor)
    for s in stats:
        policy.update(s)
        _check(policy.weights, floor)
