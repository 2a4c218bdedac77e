"""The learning-rate-aware law ``L(s) = L0 + A*S1^-alpha - C*S2``: areas, parameter recovery under
cosine and WSD schedules, global quality against a multi-start local solver, extrapolation
against the plain power law, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
from ado.errors import InvalidInputError
from ado.estimators import (
    LrFitConfig,
    LrLawFit,
    fit_lr_laws,
    fit_power_laws,
    lr_areas,
)
from ado.schedule import LrSchedule
from pydantic import ValidationError

COSINE = LrSchedule(kind="cosine", peak=3e-3, total=3000, warmup=100, final=0.1)
WSD = LrSchedule(kind="wsd", peak=2e-3, total=3000, warmup=100, decay_steps=600, final=0.0)
LAWS = {
    "l0": [1.8, 0.9, 2.5],
    "a": [1.2, 2.5, 0.4],
    "alpha": [0.45, 0.3, 1.1],
    "c": [0.15, 0.3, 0.05],
}


def test_areas_follow_the_definition() -> None:
    rng = np.random.default_rng(0)
    lr = rng.uniform(0, 1e-3, 200)
    for count_rises in (True, False):
        s1, s2 = lr_areas(lr, LrFitConfig(decay=0.9, count_rises=count_rises))
        m = np.zeros_like(lr)
        for i in range(1, lr.size):
            fall = lr[i - 1] - lr[i]
            m[i] = 0.9 * m[i - 1] + (fall if count_rises else max(fall, 0.0))
        np.testing.assert_allclose(s1, np.cumsum(lr), rtol=1e-12)
        np.testing.assert_allclose(s2, np.cumsum(m), rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("schedule", [COSINE, WSD], ids=["cosine", "wsd"])
def test_recovers_parameters_of_clean_curves(schedule: LrSchedule) -> None:
    lr = schedule.values()
    steps = np.arange(20, schedule.total, 7)
    truth = LrLawFit.from_params(lr, **LAWS)
    fit = fit_lr_laws(lr, steps, truth.predict(steps))
    assert fit.num_domains == 3
    np.testing.assert_allclose(fit.alpha, LAWS["alpha"], atol=1e-5)
    np.testing.assert_allclose(fit.l0, LAWS["l0"], rtol=1e-5)
    np.testing.assert_allclose(fit.a, LAWS["a"], rtol=1e-4)
    np.testing.assert_allclose(fit.c, LAWS["c"], rtol=1e-4)
    assert np.all(fit.n_points == steps.size)
    whole = np.arange(1, schedule.total)
    np.testing.assert_allclose(fit.predict(whole), truth.predict(whole), rtol=1e-6)


def test_noisy_curve_is_fitted_within_the_noise_and_deterministically() -> None:
    lr = COSINE.values()
    steps = np.arange(30, COSINE.total, 5)
    truth = LrLawFit.from_params(lr, l0=[2.0], a=[0.8], alpha=[0.5], c=[0.25])
    rng = np.random.default_rng(3)
    y = truth.predict(steps) * np.exp(0.003 * rng.standard_normal(steps.size))
    fit = fit_lr_laws(lr, steps, y)
    again = fit_lr_laws(lr, steps, y)
    assert fit.params().tobytes() == again.params().tobytes()
    assert np.max(np.abs(fit.predict(steps) / truth.predict(steps) - 1)) < 2e-3
    assert fit.alpha[0] == pytest.approx(0.5, abs=0.1)


def test_global_search_is_no_worse_than_a_multistart_local_solver() -> None:
    optimize = pytest.importorskip("scipy.optimize")
    lr = WSD.values()
    steps = np.arange(40, WSD.total, 11)
    truth = LrLawFit.from_params(lr, l0=[1.2], a=[1.5], alpha=[0.7], c=[0.4])
    rng = np.random.default_rng(11)
    y = truth.predict(steps)[0] * np.exp(0.01 * rng.standard_normal(steps.size))
    s1, s2 = lr_areas(lr)
    s1, s2 = s1[steps], s2[steps]

    def residual(p: np.ndarray) -> np.ndarray:
        return p[0] + p[1] * s1 ** -p[2] - p[3] * s2 - y

    best = np.inf
    for l0 in (0.5, 1.5):
        for alpha in (0.05, 0.3, 1.0, 2.5):
            for a in (0.1, 3.0):
                r = optimize.least_squares(
                    residual,
                    [l0, a, alpha, 0.1],
                    bounds=([0, 0, 0.01, 0], [np.inf, np.inf, 3.0, np.inf]),
                )
                best = min(best, float(np.sum(r.fun**2)))
    fit = fit_lr_laws(lr, steps, y)
    assert fit.objective[0] <= best * (1 + 1e-9)
    sse = float(np.sum((fit.predict(steps)[0] - y) ** 2))
    assert sse == pytest.approx(fit.objective[0], rel=1e-9)


def _final_loss_errors(schedule: LrSchedule) -> tuple[np.ndarray, np.ndarray, LrLawFit]:
    """|predicted - true| final loss from the first 60 % of a clean curve: (lr-aware, plain)."""
    lr = schedule.values()
    last = schedule.total - 1
    steps = np.arange(20, int(0.6 * schedule.total), 5)
    truth = LrLawFit.from_params(lr, **LAWS)
    y = truth.predict(steps)
    final = truth.predict([last])[:, 0]
    fit = fit_lr_laws(lr, steps, y)
    plain = fit_power_laws((steps + 1.0) * 64, y).predict([(last + 1.0) * 64])[:, 0]
    return np.abs(fit.predict([last])[:, 0] - final), np.abs(plain - final), fit


@pytest.mark.parametrize(
    "schedule",
    [COSINE, LrSchedule(kind="wsd", peak=2e-3, total=3000, warmup=100, decay_steps=1500)],
    ids=["cosine", "wsd-decay-from-50%"],
)
def test_final_loss_from_the_first_60_percent_beats_the_plain_power_law(
    schedule: LrSchedule,
) -> None:
    lr_err, plain_err, _ = _final_loss_errors(schedule)
    assert np.all(lr_err < 1e-6)
    assert np.all(plain_err > 0.01)


def test_before_any_decay_the_annealing_term_is_unknown() -> None:
    # WSD decaying over the last 20 %: the first 60 % has S2 = 0, so C cannot be fitted; the
    # prediction misses exactly the annealing drop C * S2(end)
    lr_err, _, fit = _final_loss_errors(WSD)
    np.testing.assert_array_equal(fit.c, 0.0)
    s2_end = lr_areas(WSD.values())[1][-1]
    np.testing.assert_allclose(lr_err, np.asarray(LAWS["c"]) * s2_end, rtol=1e-6)


def test_config_round_trips_and_is_validated_in_both_languages() -> None:
    cfg = LrFitConfig(decay=0.99, alpha_grid=10)
    assert LrFitConfig.model_validate_json(cfg.model_dump_json()).model_dump() == cfg.model_dump()
    with pytest.raises(ValidationError, match="decay"):
        LrFitConfig(decay=1.0)
    with pytest.raises(ValidationError, match="alpha_lower < alpha_upper"):
        LrFitConfig(alpha_lower=2.0, alpha_upper=1.0)  # checked by Rust
    with pytest.raises(ValidationError, match="lamda"):
        LrFitConfig(lamda=0.9)  # type: ignore[call-arg]


@pytest.mark.parametrize("count_rises", [False, True])
def test_the_fit_uses_the_configured_areas(count_rises: bool) -> None:
    lr = WSD.values()
    steps = np.arange(20, WSD.total, 7)
    cfg = LrFitConfig(decay=0.99, count_rises=count_rises)
    y = LrLawFit.from_params(lr, l0=[2.0], a=[1.0], alpha=[0.5], c=[0.2], config=cfg)
    fit = fit_lr_laws(lr, steps, y.predict(steps), cfg)
    assert fit.config == cfg
    assert fit.c[0] == pytest.approx(0.2, rel=1e-4)
    other = fit_lr_laws(lr, steps, y.predict(steps))  # default areas: not the same law
    assert other.objective[0] > 1e3 * fit.objective[0] + 1e-12


@pytest.mark.parametrize(
    ("lr", "steps", "losses", "message"),
    [
        ([], [0, 1, 2, 3], [3.0, 2.9, 2.8, 2.7], "lr is empty"),
        ([1e-3, np.nan, 1e-3, 1e-3, 1e-3], [0, 1, 2, 3], [3.0, 2.9, 2.8, 2.7], r"lr\[1\]"),
        ([1e-3, -1e-3, 1e-3, 1e-3], [0, 1, 2, 3], [3.0, 2.9, 2.8, 2.7], r"lr\[1\]"),
        ([1e-3] * 4, [0, 1, 2, 4], [3.0, 2.9, 2.8, 2.7], r"steps\[3\] = 4 is outside"),
        ([1e-3] * 4, [-1, 1, 2, 3], [3.0, 2.9, 2.8, 2.7], r"steps\[0\] = -1"),
        ([1e-3] * 4, [0, 1.5, 2, 3], [3.0, 2.9, 2.8, 2.7], "steps must be integers"),
        ([0.0, 0.0, 1e-3, 1e-3], [1, 2, 3, 3], [3.0, 2.9, 2.8, 2.7], "S1 = 0"),
        ([1e-3] * 4, [0, 1, 2, 3], [3.0, np.inf, 2.8, 2.7], r"domain 0: loss\[1\]"),
        ([1e-3] * 4, [0, 1, 2, 3], [[3.0, 2.9, 2.8, 2.7], [3, 2, 0, 1]], r"domain 1: loss\[2\]"),
        ([1e-3] * 4, [0, 1, 2], [3.0, 2.9, 2.8], "at least 4"),
        ([1e-3] * 4, [0, 1, 2, 3], [3.0, 2.9, 2.8], "3 points per domain but steps has 4"),
        ([[1e-3] * 4], [0, 1, 2, 3], [3.0, 2.9, 2.8, 2.7], "lr must be 1-D"),
    ],
)
def test_bad_inputs_raise_clear_errors(
    lr: list[float], steps: list[float], losses: list[float], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        fit_lr_laws(lr, steps, losses)


def test_predict_checks_its_steps() -> None:
    fit = LrLawFit.from_params([1e-3] * 10, l0=[1.0], a=[1.0], alpha=[0.5], c=[0.0])
    assert fit.predict([0, 9]).shape == (1, 2)
    with pytest.raises(InvalidInputError, match="outside the schedule"):
        fit.predict([10])
    with pytest.raises(InvalidInputError, match="equal length"):
        LrLawFit.from_params([1e-3] * 10, l0=[1.0, 2.0], a=[1.0], alpha=[0.5], c=[0.0])


def test_module_examples_run() -> None:
    import doctest

    import ado.estimators.lr_law
    import ado.schedule

    for module in (ado.estimators.lr_law, ado.schedule):
        result = doctest.testmod(module)
        assert result.attempted > 0
        assert result.failed == 0


def test_schedules_follow_their_definitions() -> None:
    cos = LrSchedule(kind="cosine", peak=1.0, total=11, warmup=1, final=0.1).values()
    assert cos[0] == 1.0  # warmup of one step reaches the peak
    assert cos[1] == pytest.approx(1.0)
    assert cos[6] == pytest.approx(0.1 + 0.9 * 0.5)  # half way through the cosine
    wsd = LrSchedule(kind="wsd", peak=2.0, total=10, decay_steps=4, final=0.0).values()
    np.testing.assert_allclose(wsd, [2, 2, 2, 2, 2, 2, 1.5, 1.0, 0.5, 0.0])
    assert LrSchedule(kind="constant", peak=0.5, total=3).values().tolist() == [0.5] * 3
    with pytest.raises(ValidationError, match="decay_steps"):
        LrSchedule(kind="wsd", peak=1.0, total=10)
    with pytest.raises(ValidationError, match="warmup"):
        LrSchedule(peak=1.0, total=10, warmup=10)
