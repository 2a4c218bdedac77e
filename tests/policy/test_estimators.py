"""The estimator Protocol and the loss-EMA / excess-loss estimators."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from ado import InvalidInputError, StateError, StepStats, load_policy
from ado.estimators import (
    Estimator,
    ExcessLossEstimator,
    LossEMAConfig,
    LossEMAEstimator,
    PowerLawEstimator,
    ScalingLawEstimator,
)
from helpers import POLICIES


def test_builtin_estimators_satisfy_the_protocol() -> None:
    for est in (
        LossEMAEstimator(3),
        ExcessLossEstimator(3, reference_losses=np.ones(3)),
        ScalingLawEstimator(3, ignore_steps=0, start_step=0, update_interval=10),
    ):
        assert isinstance(est, Estimator)
        assert est.num_domains == 3


def test_loss_ema_by_hand() -> None:
    first = LossEMAEstimator(2, decay=0.5, init="first")
    zero = LossEMAConfig(decay=0.5, init="zero", transform="exp").build(["a", "b"])
    assert np.isnan(first.signal()).all()
    s0 = StepStats(step=0, counts=[2, 0], loss_sums=[4.0, 0.0])
    s1 = StepStats(step=1, counts=[1, 1], loss_sums=[1.0, 3.0])
    for s in (s0, s1):
        first.observe(s)
        zero.observe(s)
    np.testing.assert_allclose(first.signal(), [0.5 * 2 + 0.5 * 1, 3.0])
    np.testing.assert_allclose(zero.signal(), [0.25 * np.exp(2) + 0.5 * np.e, 0.5 * np.exp(3)])
    back = LossEMAEstimator(2, decay=0.5)
    back.load_state_dict(first.state_dict())
    np.testing.assert_array_equal(back.signal(), first.signal())
    with pytest.raises(StateError):
        LossEMAEstimator(3).load_state_dict(first.state_dict())
    with pytest.raises(InvalidInputError, match="overflows"):
        zero.observe(StepStats(step=2, counts=[1, 0], loss_sums=[800.0, 0.0]))


def test_excess_loss_prefers_ref_loss_sums_and_keeps_absent_domains() -> None:
    est = ExcessLossEstimator(2, reference_losses=np.array([10.0, 10.0]))
    est.observe(StepStats(step=0, counts=[1, 2], loss_sums=[3.0, 4.0], ref_loss_sums=[1.0, 6.0]))
    np.testing.assert_allclose(est.signal(), [2.0, 0.0])  # from ref_loss_sums, clipped at 0
    est.observe(StepStats(step=1, counts=[0, 1], loss_sums=[0.0, 12.0]))
    np.testing.assert_allclose(est.signal(), [2.0, 2.0])  # table; domain 0 absent keeps 2


def test_each_configuration_has_one_set_of_defaults_across_rust_and_python() -> None:
    # the Python models are passed to Rust whole (JSON); their defaults are Rust's
    import json

    from ado import _core
    from ado.estimators import FitConfig, LrFitConfig, PowerLawEstimatorConfig

    fit_json, est_json, lr_json = _core.default_configs()
    assert json.loads(fit_json) == FitConfig().model_dump(mode="json")
    assert json.loads(est_json) == PowerLawEstimatorConfig().model_dump(mode="json")
    assert json.loads(lr_json) == LrFitConfig().model_dump(mode="json")


def test_ado_config_is_the_estimator_config_plus_the_rule() -> None:
    # each ADO option is declared once: the estimator's fields come from ScalingLawConfig
    from ado.estimators import PowerLawEstimatorConfig, ScalingLawConfig
    from ado.policy import ADO

    assert issubclass(ADO.Config, ScalingLawConfig)
    assert issubclass(ScalingLawConfig, PowerLawEstimatorConfig)
    own = set(ADO.Config.model_fields) - set(ScalingLawConfig.model_fields)
    assert own == {
        "kind",
        "guardrails",
        "credit_rate",
        "credit_exponent",
        "credit_source",
        "min_prob",
        "mix_rate",
        "average",
        "prior_weight",
        "transfer",
        "target",
        "target_set",
    }
    policy = load_policy(POLICIES / "ado.yaml", domains=["a", "b"])
    assert isinstance(policy, ADO)
    assert policy.estimator.config is policy.config  # passed whole, not copied field by field
    with pytest.raises(InvalidInputError, match="window"):
        PowerLawEstimator(2, window=100)  # validated in Rust: must be odd


def test_ado_config_defaults_are_the_shipped_preset() -> None:
    from ado.policy import ADO, load_policy_config

    assert load_policy_config("ado") == ADO.Config()


def test_scaling_estimator_close_stops_its_fit_thread() -> None:
    """The background fit thread is joined by ``close()`` (idempotent); a later refit starts
    it again."""
    est = ScalingLawEstimator(
        2, ignore_steps=0, start_step=0, update_interval=10, fit_delay=5, min_points=3
    )

    def fit_threads() -> int:
        return sum(t.name.startswith("ado-fit") for t in threading.enumerate())

    step = 0

    def run(steps: int) -> None:
        nonlocal step
        for _ in range(steps):
            n = (step + 1) * 100.0
            est.observe(
                StepStats(step=step, counts=[4, 4], loss_sums=[4 * (2 + 5 * n**-0.3), 4 * 3.0])
            )
            step += 1

    run(60)
    assert fit_threads() == 1
    est.close()
    est.close()
    assert fit_threads() == 0
    run(30)
    assert fit_threads() == 1
    est.close()
    assert fit_threads() == 0
