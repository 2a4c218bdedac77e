"""A policy update that raises changes nothing: after catching it, the policy continues exactly
like a run that never saw the bad step (bitwise the same weights and state)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from ado import StepStats, load_policy
from ado.errors import InvalidInputError
from ado.policy import ADO, Guarded

NAMES = ["web", "code", "books"]
SHORT = {
    "ignore_steps": 0,
    "start_step": 10,
    "update_interval": 5,
    "min_points": 5,
    "subsample": 1,
    "window": 5,
}
RAILS: dict[str, Any] = {
    "kind": "ado",
    "guardrails": [
        {"kind": "max_change", "max_l1": 0.3},
        {"kind": "fallback"},
        {"kind": "token_budget", "budgets": {"web": 1e12}},
    ],
}


def _stats(t: int) -> StepStats:
    rng = np.random.default_rng(t)
    counts = rng.multinomial(24, [0.5, 0.3, 0.2]).astype(np.float64)
    loss = np.array([2.0, 1.0, 2.5]) + np.array([3.0, 4.0, 1.0]) * (t + 1.0) ** -0.5
    return StepStats(step=t, counts=counts, loss_sums=counts * loss, token_counts=counts * 64)


def _state(policy: Any) -> str:
    return json.dumps(policy.state_dict())


def _bad_steps(t: int, guarded: bool) -> list[StepStats]:
    """Steps the policy refuses, at step ``t``."""
    good = _stats(t)
    bad = [
        StepStats(step=t, counts=np.zeros(3), loss_sums=np.zeros(3)),  # no samples
        StepStats(step=t, counts=[1, 1], loss_sums=[2, 2]),  # other number of domains
    ]
    if guarded:  # the token budget needs token counts (checked before anything moves)
        bad.append(StepStats(step=t, counts=good.counts, loss_sums=good.loss_sums))
    return bad


@pytest.mark.parametrize("source", ["ado", RAILS], ids=["ado", "ado+guardrails"])
def test_refused_updates_change_nothing(source: Any) -> None:
    clean = load_policy(source, domains=NAMES, overrides=SHORT)
    hit = load_policy(source, domains=NAMES, overrides=SHORT)
    refused = 0
    for t in range(40):
        if t % 7 == 3:
            for bad in _bad_steps(t, isinstance(hit, Guarded)):
                before = _state(hit)
                try:
                    hit.update(bad)
                except InvalidInputError:
                    refused += 1
                    assert _state(hit) == before
        clean.update(_stats(t))
        hit.update(_stats(t))
    assert refused >= 12
    assert hit.weights.tobytes() == clean.weights.tobytes()
    assert _state(hit) == _state(clean)
    inner = hit.inner if isinstance(hit, Guarded) else hit
    assert isinstance(inner, ADO)
    assert inner.estimator.num_fits > 3


def test_interrupted_refit_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    clean = load_policy("ado", domains=NAMES, overrides=SHORT)
    hit = load_policy("ado", domains=NAMES, overrides=SHORT)
    assert isinstance(hit, ADO)
    for t in range(20):
        clean.update(_stats(t))
        hit.update(_stats(t))
    real_fit = type(hit.estimator._est).fit

    def interrupted(self: Any, config: Any = None) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(type(hit.estimator._est), "fit", interrupted)
    before = _state(hit)
    with pytest.raises(KeyboardInterrupt):
        hit.update(_stats(20))  # a refit step (20 % 5 == 0)
    assert _state(hit) == before
    monkeypatch.setattr(type(hit.estimator._est), "fit", real_fit)
    for t in range(20, 40):
        clean.update(_stats(t))
        hit.update(_stats(t))
    assert hit.weights.tobytes() == clean.weights.tobytes()
    assert _state(hit) == _state(clean)


def test_zero_loss_is_refused_at_step_stats_with_a_clear_message() -> None:
    with pytest.raises(InvalidInputError, match=r"exactly 0 for domain\(s\) \[1\] with samples"):
        StepStats(step=0, counts=[2, 3, 0], loss_sums=[4.0, 0.0, 0.0])
    StepStats(step=0, counts=[2, 3, 0], loss_sums=[4.0, 1.0, 0.0])  # an absent domain: fine


@pytest.mark.parametrize("bad", [True, 1.5, "3", -1, 2**63, np.bool_(True)])
def test_step_must_be_a_plain_integer_in_range(bad: Any) -> None:
    with pytest.raises(InvalidInputError, match=r"StepStats\.step"):
        StepStats(step=bad, counts=[1], loss_sums=[1.0])


@pytest.mark.parametrize("field", ["counts", "loss_sums"])
def test_statistics_must_be_numbers(field: str) -> None:
    args: dict[str, Any] = {"step": 0, "counts": [1, 2], "loss_sums": [1.0, 2.0]}
    args[field] = ["1", "2"]
    with pytest.raises(InvalidInputError, match="must hold numbers"):
        StepStats(**args)


@pytest.mark.parametrize("source", ["natural", "temperature", "doremi", "odm", "ado"])
def test_priors_whose_sum_overflows_normalise(source: str) -> None:
    policy = load_policy(source, domains=["a", "b"], prior=[1e308, 1e308], overrides=None)
    np.testing.assert_allclose(policy.prior, [0.5, 0.5])
    counts = np.array([2.0, 2.0])
    step = StepStats(step=0, counts=counts, loss_sums=counts * 2, ref_loss_sums=counts)
    policy.update(step)
    assert np.isfinite(policy.weights).all()
    assert policy.weights.sum() == pytest.approx(1.0)
    assert policy.weights.min() > 0
