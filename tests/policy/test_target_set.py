"""ADO's ``target_set``: a held-out target loss every N steps, related to the drawn counts by
:class:`~ado.estimators.HeldOutTargetEstimator` (issue 24, §2)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from ado import load_policy
from ado.errors import ConfigError, InvalidInputError, StateError
from ado.estimators import HeldOutTargetConfig, HeldOutTargetEstimator
from ado.policy import ADO
from ado.sim import simulate
from ado.stats import StepStats
from helpers import POLICIES
from test_transfer import LOOP, transfer_spec


def ado(spec: Any, **target_set: Any) -> ADO:
    over: dict[str, Any] = {**LOOP, "target": {"c": 1.0}}
    if target_set:
        over["target_set"] = target_set
    p = load_policy(POLICIES / "ado.yaml", domains=spec.names, prior=spec.prior(), overrides=over)
    assert isinstance(p, ADO)
    return p


def closed_loop(p: ADO, spec: Any, steps: int, every: int = 25) -> None:
    """Simulate, handing the policy c's noise-free loss every ``every`` steps."""
    seen = np.zeros(len(spec.names))
    inner = p.update

    def update(stats: StepStats) -> None:
        seen[:] += stats.counts
        inner(stats)

    p.update = update  # type: ignore[method-assign]
    eps, beta, alpha = (np.array([getattr(d, f) for d in spec.domains]) for f in
                        ("eps", "beta", "alpha"))
    c = spec.names.index("c")

    def on_step(t: int, q: Any) -> None:
        if p.target_set is not None and (t + 1) % every == 0:
            loss = eps + beta * (spec.n0 + spec.transfer_matrix() @ seen) ** -alpha
            q.observe_target(t, float(loss[c]))

    simulate(p, spec, steps, seed=0, on_step=on_step)


def test_before_it_is_identified_it_is_plain_ado() -> None:
    # no exploration and min_blocks out of reach: the estimate is its prior, plain ADO's own
    # prediction, so the weights are plain ADO's
    spec = transfer_spec(0.0)
    plain, held = ado(spec), ado(spec, every=25, explore=0.0, min_blocks=10**6)
    closed_loop(plain, spec, 1000)
    closed_loop(held, spec, 1000)
    assert held.target_set is not None
    assert held.target_set.evals == 40
    np.testing.assert_allclose(held.weights, plain.weights, rtol=1e-9, atol=1e-12)


def test_the_held_out_target_credits_the_domain_that_lowers_it() -> None:
    # d lowers c's loss 1.5x as much per sample as c itself; a, b and noise do not touch it.
    # Plain ADO (target c) can only credit c; the held-out target's drops credit d too.
    spec = transfer_spec(0.0)
    p = ado(spec, every=25)
    closed_loop(p, spec, 3000)
    assert p.target_set is not None
    prior = np.nan_to_num(p.target * p.estimator.signal())
    beta = p.target_set.effects(prior)
    a, b, c, d, noise = range(5)
    assert prior[d] == 0.0  # plain ADO's view: d does nothing for c
    assert beta[d] > 0.3 * beta[c]
    assert beta[d] > 10 * max(beta[a], beta[b], beta[noise])


def test_state_dict_restores_exactly_mid_interval() -> None:
    spec = transfer_spec(0.005)
    p = ado(spec, every=25)
    closed_loop(p, spec, 1010)  # 10 steps into an interval
    state = json.loads(json.dumps(p.state_dict()))
    q = ado(spec, every=25)
    q.load_state_dict(state)
    assert q.state_dict() == state
    rng = np.random.default_rng(3)
    for t in range(1010, 1100):
        c = rng.multinomial(64, p.weights).astype(float)
        stats = StepStats(t, c, c * 2.0)
        p.update(stats)
        q.update(stats)
        if (t + 1) % 25 == 0:
            p.observe_target(t, 2.0 - t * 1e-4)
            q.observe_target(t, 2.0 - t * 1e-4)
        assert np.array_equal(p.weights, q.weights)
    assert p.state_dict() == q.state_dict()
    # a state of a policy with no target set, or a damaged one, is refused and changes nothing
    plain = ado(spec)
    with pytest.raises(StateError, match="target_set"):
        plain.load_state_dict(state, strict=False)
    bad = json.loads(json.dumps(state))
    bad["state"]["target_set"]["sign"] = 2.0
    before = q.state_dict()
    with pytest.raises(StateError, match="sign"):
        q.load_state_dict(bad)
    assert q.state_dict() == before


def test_target_losses_at_the_wrong_step_or_not_losses_are_refused() -> None:
    est = HeldOutTargetEstimator(2, HeldOutTargetConfig(every=5))
    for t in range(5):
        est.observe(StepStats(t, np.array([3.0, 1.0]), np.array([6.0, 2.0])))
    with pytest.raises(InvalidInputError, match="step 3"):
        est.observe_target(3, 1.0)
    for bad in (float("nan"), 0.0, -1.0, True):
        with pytest.raises(InvalidInputError, match="target loss"):
            est.observe_target(4, bad)
    est.observe_target(4, 1.5)
    assert est.evals == 1
    with pytest.raises(InvalidInputError, match="not after"):
        est.observe(StepStats(4, np.array([3.0, 1.0]), np.array([6.0, 2.0])))
    with pytest.raises(ConfigError, match="takes no held-out target"):
        load_policy(POLICIES / "natural.yaml", domains=["a", "b"]).observe_target(4, 1.0)
