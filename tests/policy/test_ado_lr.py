"""ADO's ``law: lr``: the learning-rate-aware law as the estimator, with the schedule planned or
learned from ``StepStats.lr``; the simulator and ``StepStats`` carrying the learning rate."""

from __future__ import annotations

import numpy as np
import pytest
from ado import StepStats, load_policy
from ado.errors import ConfigError, InvalidInputError, StateError
from ado.estimators import LrLawFit, ScalingLawEstimator, lr_areas
from ado.schedule import LrSchedule
from ado.sim import DomainSpec, SimSpec, simulate

SCHEDULE = LrSchedule(kind="cosine", peak=2e-3, total=600, warmup=20, final=0.05)
LAW = {"l0": [1.5, 2.5], "a": [0.6, 0.3], "alpha": [0.5, 0.8], "c": [0.2, 0.05]}
FAST = {
    "ignore_steps": 10,
    "start_step": 300,
    "update_interval": 50,
    "subsample": 2,
    "window": 1,
    "order": 0,
}


def _feed(est: ScalingLawEstimator, steps: int, with_lr: bool = True) -> LrLawFit:
    lr = SCHEDULE.values()
    truth = LrLawFit.from_params(lr, **LAW)
    losses = truth.predict(np.arange(steps))
    counts = np.array([4.0, 4.0])
    for t in range(steps):
        lr_t = float(lr[t]) if with_lr else None
        est.observe(StepStats(step=t, counts=counts, loss_sums=counts * losses[:, t], lr=lr_t))
    return truth


def _estimator(**fields: object) -> ScalingLawEstimator:
    return ScalingLawEstimator(2, law="lr", min_points=10, **FAST, **fields)  # type: ignore[arg-type]


def test_stepstats_carries_a_validated_learning_rate() -> None:
    s = StepStats(step=3, counts=[1, 2], loss_sums=[1.0, 2.0], lr=np.float32(1e-3))
    assert isinstance(s.lr, float)
    assert s.lr == pytest.approx(1e-3)
    assert StepStats.from_dict(s.to_dict()).lr == s.lr
    assert "lr" not in StepStats(step=3, counts=[1], loss_sums=[1.0]).to_dict()
    for bad in (-1e-3, float("nan"), float("inf"), "0.1", True):
        with pytest.raises(InvalidInputError, match=r"StepStats\.lr"):
            StepStats(step=0, counts=[1], loss_sums=[1.0], lr=bad)  # type: ignore[arg-type]


def test_learned_and_planned_schedules_give_the_same_fit_and_signal() -> None:
    learned, planned = _estimator(), _estimator(lr_schedule=SCHEDULE)
    _feed(learned, 451)
    _feed(planned, 451, with_lr=False)  # the planned schedule needs no StepStats.lr
    assert learned.num_fits == planned.num_fits == 4
    fa, fb = learned.current, planned.current
    assert isinstance(fa, LrLawFit)
    assert isinstance(fb, LrLawFit)
    np.testing.assert_array_equal(fa.params(), fb.params())
    np.testing.assert_array_equal(learned.signal(), planned.signal())
    np.testing.assert_array_equal(learned.lr_history(), SCHEDULE.values()[:451])


def test_fits_recover_the_law_and_the_signal_is_its_loss_drop() -> None:
    est = _estimator()
    truth = _feed(est, 451)
    fit = est.current
    assert isinstance(fit, LrLawFit)
    np.testing.assert_allclose(fit.params(), truth.params(), rtol=1e-4)
    # signal at step 450 = L(449) - L(450) of the fitted law, from the running areas
    np.testing.assert_allclose(est.signal(), fit.drop(450), rtol=1e-9)
    assert np.all(est.signal() > 0)


def test_running_areas_match_the_core() -> None:
    est = _estimator()
    _feed(est, 451)
    s1, s2 = lr_areas(SCHEDULE.values()[:451])
    areas = est._areas  # the recurrence the signal uses
    assert areas.s1 == pytest.approx(s1[-1], rel=1e-12)
    assert areas.s1_prev == pytest.approx(s1[-2], rel=1e-12)
    assert areas.m == pytest.approx(s2[-1] - s2[-2], rel=1e-9, abs=1e-15)


def test_state_dict_resumes_bitwise() -> None:
    a, b = _estimator(), _estimator()
    _feed(a, 330)
    b.load_state_dict(a.state_dict())
    lr = SCHEDULE.values()
    for t in range(330, 460):
        stats = StepStats(step=t, counts=[2, 2], loss_sums=[4.0, 5.0 - t * 1e-3], lr=float(lr[t]))
        a.observe(stats)
        b.observe(stats)
    assert a.current is not None
    assert b.current is not None
    np.testing.assert_array_equal(a.signal(), b.signal())
    power = ScalingLawEstimator(2, min_points=10, **FAST)  # type: ignore[arg-type]
    with pytest.raises(StateError, match="lr: Input should be a valid dictionary"):
        _estimator().load_state_dict(power.state_dict())


def test_missing_learning_rate_and_short_schedules_are_clear_errors() -> None:
    est = _estimator()
    with pytest.raises(InvalidInputError, match=r"StepStats.lr"):
        est.observe(StepStats(step=0, counts=[1, 1], loss_sums=[1.0, 1.0]))
    short = _estimator(lr_schedule=LrSchedule(kind="constant", peak=1e-3, total=5))
    for t in range(5):
        short.observe(StepStats(step=t, counts=[1, 1], loss_sums=[1.0, 1.0]))
    with pytest.raises(InvalidInputError, match="past the planned lr_schedule"):
        short.observe(StepStats(step=5, counts=[1, 1], loss_sums=[1.0, 1.0]))


def test_ado_with_the_lr_law_runs_in_the_simulator() -> None:
    spec = SimSpec(
        domains=[
            DomainSpec(name="a", eps=2.0, beta=8.0, alpha=0.3, noise=0.01),
            DomainSpec(name="b", eps=1.0, beta=6.0, alpha=0.5, noise=0.01),
        ],
        lr_schedule=LrSchedule(kind="wsd", peak=1e-3, total=800, warmup=20, decay_steps=200),
    )
    policy = load_policy(
        "ado-lr", domains=spec.names, overrides=dict(FAST, min_points=20, start_step=200)
    )
    result = simulate(policy, spec, 800, seed=0)
    m = policy.metrics()
    assert m["fits"] == 12
    assert m["fits_rejected"] == 0
    assert {"L0/a", "A/a", "C/a", "alpha/a"} <= set(m)
    assert not np.allclose(result.weights[-1], result.weights[0])
    with pytest.raises(ConfigError, match="lr_schedule has 800"):
        simulate(policy, spec, 801)
