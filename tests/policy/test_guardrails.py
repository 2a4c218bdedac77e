"""Each guardrail on its own, configured from YAML-shaped mappings."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pytest
from ado import InvalidInputError, Policy, PolicyConfig, StepStats, load_policy, register_policy
from ado.policy import Guarded, project_floor
from pydantic import ConfigDict

NAMES = ["a", "b", "c", "d"]
MU = np.array([0.4, 0.3, 0.2, 0.1])


@register_policy
class Scripted(Policy):
    """Test policy: proposes the weights listed in its config, one per update (cycling)."""

    class Config(PolicyConfig):
        # the script proposes bad weights (NaN) on purpose
        model_config = ConfigDict(allow_inf_nan=True)

        kind: Literal["test_scripted"] = "test_scripted"
        script: list[list[float]]

    config: Config

    def __init__(self, config: PolicyConfig, domains: Sequence[str], prior: Any = None) -> None:
        super().__init__(config, domains, prior)
        self._i = 0

    def _update(self, stats: StepStats) -> Any:
        w = np.asarray(self.config.script[self._i % len(self.config.script)], dtype=float)
        self._i += 1
        return w

    def _state(self) -> dict[str, Any]:
        return {"i": self._i}

    def _load_state(self, state: dict[str, Any]) -> None:
        self._i = int(state["i"])


def scripted(script: list[list[float]], *rails: dict[str, Any]) -> Guarded:
    p = load_policy(
        {"kind": "test_scripted", "script": script, "guardrails": list(rails)},
        domains=NAMES,
        prior=MU,
    )
    assert isinstance(p, Guarded)
    return p


def step(t: int, tokens: list[float] | None = None) -> StepStats:
    return StepStats(step=t, counts=[1, 1, 1, 1], loss_sums=[2, 2, 2, 2], token_counts=tokens)


def test_floor_projection() -> None:
    w = project_floor(np.array([0.97, 0.02, 0.01, 0.0]), 0.05)
    np.testing.assert_allclose(w, [0.85, 0.05, 0.05, 0.05])
    assert abs(w.sum() - 1) < 1e-15
    # ratios above the floor are kept
    w = project_floor(np.array([0.6, 0.3, 0.1, 0.0]), 0.1)
    np.testing.assert_allclose(w[:2] / w[:2].sum(), [2 / 3, 1 / 3])
    assert w.min() >= 0.1 - 1e-15


def test_floor_guardrail() -> None:
    p = scripted([[1.0, 0.0, 0.0, 0.0]], {"kind": "floor", "min_prob": 0.1})
    p.update(step(0))
    np.testing.assert_allclose(p.weights, [0.7, 0.1, 0.1, 0.1])
    np.testing.assert_allclose(p.metrics()["proposed/a"], 1.0)


def test_smoothing_guardrail() -> None:
    p = scripted([[1.0, 0.0, 0.0, 0.0]], {"kind": "smoothing", "rate": 0.25})
    np.testing.assert_allclose(p.weights, MU)  # initial: the inner policy's prior
    p.update(step(0))
    np.testing.assert_allclose(p.weights, 0.75 * MU + 0.25 * np.array([1, 0, 0, 0]))
    p.update(step(1))
    np.testing.assert_allclose(p.weights, 0.75**2 * MU + (1 - 0.75**2) * np.array([1, 0, 0, 0]))


def test_max_change_l1() -> None:
    target = np.array([0.1, 0.2, 0.3, 0.4])
    p = scripted([target.tolist()], {"kind": "max_change", "max_l1": 0.3})
    d = target - MU  # L1 distance 0.8
    p.update(step(0))
    np.testing.assert_allclose(p.weights, MU + 0.375 * d)
    np.testing.assert_allclose(np.abs(p.weights - MU).sum(), 0.3)
    p.update(step(1))
    np.testing.assert_allclose(p.weights, MU + 0.75 * d)
    p.update(step(2))  # the remaining 0.2 is within the cap
    np.testing.assert_allclose(p.weights, target)
    assert p.metrics()["guardrail/0_max_change/clipped"] == 2


def test_max_change_kl() -> None:
    target = np.array([0.1, 0.2, 0.3, 0.4])
    p = scripted([target.tolist()], {"kind": "max_change", "max_kl": 0.01})
    p.update(step(0))
    w = p.weights
    kl = float(np.sum(w * np.log(w / MU)))
    assert kl == pytest.approx(0.01, rel=1e-6)
    # on the segment from the prior to the target
    theta = (w - MU) / (target - MU)
    np.testing.assert_allclose(theta, theta[0], rtol=1e-9)
    # a proposal putting mass on a zero of the current weights cannot be capped: refused
    q = scripted([[0.0, 0.0, 0.0, 1.0], [0.5, 0.5, 0.0, 0.0]], {"kind": "max_change", "max_kl": 10})
    q.update(step(0))
    np.testing.assert_allclose(q.weights, [0, 0, 0, 1])
    q.update(step(1))
    np.testing.assert_allclose(q.weights, [0, 0, 0, 1])


def test_warmup_guardrail() -> None:
    p = scripted([[0.0, 0.0, 0.0, 1.0]], {"kind": "warmup", "steps": 3})
    np.testing.assert_allclose(p.weights, MU)
    for t in range(2):  # proposals for batches 1 and 2: still warmup
        p.update(step(t))
        np.testing.assert_allclose(p.weights, MU)
    p.update(step(2))  # batch 3: the policy's own weights
    np.testing.assert_allclose(p.weights, [0, 0, 0, 1])
    assert p.inner.step == 2  # the wrapped policy saw every step


def test_fallback_guardrail(caplog: pytest.LogCaptureFixture) -> None:
    p = scripted(
        [
            [0.1, 0.2, 0.3, 0.4],
            [np.nan, 0.5, 0.5, 0.0],
            [0.5, 0.5, 0.5, 0.5],
            [0.97, 0.01, 0.01, 0.01],
        ],
        {"kind": "fallback", "max_weight": 0.95},
    )
    with caplog.at_level(logging.WARNING, logger="ado.policy.guardrails"):
        for t in range(4):
            p.update(step(t))
            np.testing.assert_allclose(p.weights, [0.1, 0.2, 0.3, 0.4])
    assert p.metrics()["guardrail/0_fallback/count"] == 3
    text = caplog.text
    assert "non-finite" in text
    assert "sum to 2.0" in text
    assert "collapse" in text


def test_token_budget_guardrail() -> None:
    p = scripted([[0.25, 0.25, 0.25, 0.25]], {"kind": "token_budget", "budgets": {"b": 250.0}})
    p.update(step(0, tokens=[100, 100, 100, 100]))
    np.testing.assert_allclose(p.weights, 0.25)
    p.update(step(1, tokens=[100, 200, 100, 100]))  # b: 300 >= 250 spent
    np.testing.assert_allclose(p.weights, [1 / 3, 0, 1 / 3, 1 / 3])
    assert p.metrics()["guardrail/0_token_budget/spent_domains"] == 1
    with pytest.raises(InvalidInputError, match="token_counts"):
        p.update(step(2))


def test_guardrails_compose_in_order() -> None:
    p = scripted(
        [[1.0, 0.0, 0.0, 0.0]],
        {"kind": "floor", "min_prob": 0.05},
        {"kind": "token_budget", "budgets": {"d": 1.0}},
    )
    p.update(step(0, tokens=[1, 1, 1, 1]))
    w = p.weights
    assert w[3] == 0.0  # budget after the floor: d is zeroed
    np.testing.assert_allclose(w, np.array([0.85, 0.05, 0.05, 0.0]) / 0.95)
