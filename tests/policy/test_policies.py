"""Hand-computed steps of the temperature, DoReMi and ODM policies, and ADO details."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from ado import InvalidInputError, StepStats, load_policy
from ado.estimators import FitConfig, Limit
from ado.policy import ADO, ODM, DoReMi, Temperature, clip_min_probability
from helpers import POLICIES, stream

NAMES = ["a", "b", "c"]
MU = np.array([0.6, 0.3, 0.1])


def test_temperature_by_hand() -> None:
    p = load_policy({"kind": "temperature", "temperature": 2.0}, domains=NAMES, prior=MU)
    root = np.sqrt(MU)
    np.testing.assert_allclose(p.weights, root / root.sum(), rtol=1e-14)
    assert load_policy(
        {"kind": "temperature", "temperature": 1.0}, domains=NAMES, prior=MU
    ).weights == pytest.approx(MU, rel=1e-14)
    inf = load_policy({"kind": "temperature", "temperature": math.inf}, domains=NAMES, prior=MU)
    np.testing.assert_allclose(inf.weights, 1 / 3, rtol=1e-14)
    zero = load_policy(
        {"kind": "temperature", "temperature": math.inf}, domains=NAMES, prior=[0.5, 0.5, 0.0]
    )
    np.testing.assert_allclose(zero.weights, [0.5, 0.5, 0.0])


def test_temperature_schedule_by_hand() -> None:
    p = load_policy(
        {"kind": "temperature", "temperature": 1.0, "final_temperature": 3.0, "schedule_steps": 4},
        domains=NAMES,
        prior=MU,
    )
    assert isinstance(p, Temperature)
    np.testing.assert_allclose(p.weights, MU, rtol=1e-14)  # batch 0: T = 1
    p.update(StepStats(step=0, counts=[1, 1, 1], loss_sums=[1, 1, 1]))  # batch 1: T = 1.5
    w = MU ** (1 / 1.5)
    np.testing.assert_allclose(p.weights, w / w.sum(), rtol=1e-14)
    p.update(StepStats(step=9, counts=[1, 1, 1], loss_sums=[1, 1, 1]))  # batch 10: T = 3
    w = MU ** (1 / 3)
    np.testing.assert_allclose(p.weights, w / w.sum(), rtol=1e-14)
    assert p.metrics()["temperature"] == 3.0


def test_doremi_by_hand() -> None:
    p = load_policy(
        {"kind": "doremi", "eta": 1.0, "smoothing": 1e-3, "init": "uniform"},
        domains=NAMES,
        prior=MU,
    )
    assert isinstance(p, DoReMi)
    # step 0: losses 3, 2, (absent); reference 2, 2.5 -> lambda = [1, 0, 0]
    p.update(StepStats(step=0, counts=[2, 1, 0], loss_sums=[6, 2, 0], ref_loss_sums=[4, 2.5, 0]))
    a = np.array([1 / 3, 1 / 3, 1 / 3]) * np.exp([1.0, 0.0, 0.0])
    a = a / a.sum()
    a = 0.999 * a + 0.001 / 3
    np.testing.assert_allclose(p.weights, a, rtol=1e-14)
    # step 1: domain a absent keeps lambda 1; c: 1.5 vs 1.0 -> 0.5; b: 1 vs 2 -> 0
    p.update(StepStats(step=1, counts=[0, 1, 2], loss_sums=[0, 1, 3], ref_loss_sums=[0, 2, 2]))
    b = a * np.exp([1.0, 0.0, 0.5])
    b = b / b.sum()
    b = 0.999 * b + 0.001 / 3
    np.testing.assert_allclose(p.weights, b, rtol=1e-14)
    np.testing.assert_allclose(p.metrics()["signal/a"], 1.0)


def test_doremi_reference_table_and_missing_reference() -> None:
    p = load_policy(
        {
            "kind": "doremi",
            "eta": 0.5,
            "smoothing": 0.0,
            "init": "prior",
            "estimator": {"kind": "excess_loss", "reference_losses": {"a": 1, "b": 1, "c": 5}},
        },
        domains=NAMES,
        prior=MU,
    )
    p.update(StepStats(step=0, counts=[1, 1, 1], loss_sums=[3, 1, 2]))
    w = MU * np.exp(0.5 * np.array([2.0, 0.0, 0.0]))
    np.testing.assert_allclose(p.weights, w / w.sum(), rtol=1e-14)
    q = load_policy(POLICIES / "doremi.yaml", domains=NAMES, prior=MU)
    with pytest.raises(InvalidInputError, match="ref_loss_sums"):
        q.update(StepStats(step=0, counts=[1, 1, 1], loss_sums=[3, 1, 2]))


def test_odm_by_hand() -> None:
    names = [f"d{i}" for i in range(4)]
    p = load_policy(POLICIES / "odm.yaml", domains=names)
    assert isinstance(p, ODM)
    np.testing.assert_allclose(p.weights, 0.25)
    beta = p.config.estimator.decay  # type: ignore[attr-defined]
    assert beta == 0.5  # the ODM authors' scripts (the preset's comment says why)
    reward = np.zeros(4)
    rng = np.random.default_rng(0)
    for t in range(40):
        counts = rng.integers(0, 3, 4).astype(float)
        losses = rng.uniform(1, 3, 4)
        p.update(StepStats(step=t, counts=counts, loss_sums=counts * losses))
        present = counts > 0
        reward[present] = beta * reward[present] + (1 - beta) * np.exp(losses[present])
        eps = min(0.25, math.sqrt(math.log(4) / (4 * (t + 1))))
        expected = (1 - 4 * eps) * reward / reward.sum() + eps
        np.testing.assert_allclose(p.weights, expected, rtol=1e-13)
    assert eps < 0.25  # exploration did decay within the test


def test_odm_gibbs_by_hand() -> None:
    p = load_policy({"kind": "odm", "update": "gibbs"}, domains=["x", "y"])
    p.update(StepStats(step=0, counts=[1, 1], loss_sums=[1.0, 2.0]))
    # t = 1: eps_1 = min(1/2, sqrt(ln 2 / 2)) = 1/2 -> uniform
    np.testing.assert_allclose(p.weights, 0.5)
    p.update(StepStats(step=1, counts=[1, 0], loss_sums=[1.5, 0.0]))
    r = np.array([0.9 * 0.1 * math.e + 0.1 * math.exp(1.5), 0.1 * math.exp(2.0)])
    eps_prev, eps = 0.5, min(0.5, math.sqrt(math.log(2) / 4))
    z = np.exp(eps_prev * r)
    np.testing.assert_allclose(p.weights, (1 - 2 * eps) * z / z.sum() + eps, rtol=1e-13)


def test_clip_min_probability_matches_the_reference_formula() -> None:
    rho = np.array([0.9, 0.095, 0.005])
    out = clip_min_probability(rho, 0.01)
    f = np.maximum(rho, 0.01)
    np.testing.assert_allclose(out, f / f.sum(), rtol=1e-15)
    # K * delta > 1: the deficit path rescales first
    rho = np.array([0.7, 0.3])
    out = clip_min_probability(rho, 0.6)
    deficit = 0.6 * 2 - 1.0
    f = np.maximum(rho * (1 - deficit), 0.6)
    np.testing.assert_allclose(out, f / f.sum(), rtol=1e-15)


def short_ado(overrides: dict[str, Any]) -> ADO:
    """The ado.yaml preset with its schedule overridden (3 domains, prior MU)."""
    p = load_policy(POLICIES / "ado.yaml", domains=NAMES, prior=MU, overrides=overrides)
    assert isinstance(p, ADO)
    return p


def test_ado_uses_the_prior_until_the_first_fit_and_skips_thin_fits() -> None:
    p = short_ado({"ignore_steps": 0, "start_step": 50, "update_interval": 50, "min_points": 12})
    for stats in stream(3, 200, seed=3):
        p.update(stats)
        # fit points are every 10th step: 6 at t = 50 and 11 at t = 100 (< 12: skipped), 16 at 150
        if stats.step < 150:
            np.testing.assert_array_equal(p.weights, p.prior)
        else:
            assert not np.allclose(p.weights, p.prior)
    m = p.metrics()
    assert (m["fits_skipped"], m["fits"], m["last_fit_step"]) == (2, 1, 150)


def test_ado_rejects_a_failed_fit_and_keeps_the_last() -> None:
    p = short_ado({"ignore_steps": 0, "start_step": 100, "update_interval": 100, "min_points": 5})
    steps = list(stream(3, 201, seed=4))
    for stats in steps[:101]:
        p.update(stats)
    good = p.estimator.current
    assert good is not None
    # an infeasible objective (hard bound eps >= e^10, above every loss): the fitter fails
    p.estimator.fit_config = FitConfig(log_eps_lower=Limit(at=10.0))
    for stats in steps[101:]:
        p.update(stats)
    assert p.estimator.current is good
    assert (p.metrics()["fits"], p.metrics()["fits_rejected"]) == (1, 1)
    assert np.all(np.isfinite(p.weights))
    assert abs(p.weights.sum() - 1) < 1e-12


def test_ado_weights_stay_the_prior_when_every_fit_fails() -> None:
    p = short_ado(
        {
            "ignore_steps": 0,
            "start_step": 50,
            "update_interval": 50,
            "min_points": 3,
            "fit": {"log_eps_lower": {"at": 10.0}},
        }
    )
    for stats in stream(3, 160, seed=6):
        p.update(stats)
        np.testing.assert_array_equal(p.weights, p.prior)
    assert p.metrics()["fits_rejected"] == 3


def test_ado_credit_and_first_fit_average() -> None:
    """After the first fit, with average: first_fit and prior_weight 1, pi_bar = (mu + rho) / 2."""
    p = short_ado(
        {
            "ignore_steps": 0,
            "start_step": 100,
            "update_interval": 100,
            "min_points": 5,
            "average": "first_fit",
            "alpha_floor": 0.0,
        }
    )
    h = MU.copy()
    for stats in stream(3, 101, seed=5):
        p.update(stats)
        h = 0.9 * h + 0.1 * stats.counts / stats.counts.sum()
    np.testing.assert_allclose(p._h, h, rtol=1e-14)
    rho = p._rho
    np.testing.assert_allclose(p.weights, 0.9 * MU + 0.1 * rho, rtol=1e-14)
    np.testing.assert_allclose(p._pi_bar, 0.5 * MU + 0.5 * rho, rtol=1e-14)
    fit = p.estimator.current
    assert fit is not None
    n = 101 * 32.0
    score = MU * np.sqrt(h) * fit.alpha * fit.beta * n**-fit.alpha / n
    np.testing.assert_allclose(rho, clip_min_probability(score / score.sum(), 0.01), rtol=1e-10)


def test_ado_background_fit_is_applied_exactly_fit_delay_steps_later() -> None:
    schedule = {"ignore_steps": 0, "start_step": 100, "update_interval": 100, "min_points": 5}
    sync = short_ado(schedule)
    delayed = short_ado({**schedule, "fit_delay": 7})
    fits_sync: dict[int, Any] = {}
    for stats in stream(3, 320, seed=8):
        sync.update(stats)
        delayed.update(stats)
        t = stats.step
        if sync.estimator.last_fit_step == t:
            fits_sync[t] = sync.estimator.current
        if t % 100 < 7 and t >= 100:  # between a refit and its application: the old fit is used
            assert delayed.estimator.last_fit_step in (-1, t - t % 100 - 100)
        if t % 100 == 7 and t > 100:
            assert delayed.estimator.last_fit_step == t - 7
            got, want = delayed.estimator.current, fits_sync[t - 7]
            assert got is not None
            assert want is not None
            for field in ("eps", "beta", "alpha"):
                assert np.array_equal(getattr(got, field), getattr(want, field))
    assert delayed.metrics()["fits"] == 3
    with pytest.raises(ValueError, match="fit_delay"):
        short_ado({**schedule, "fit_delay": 100})
