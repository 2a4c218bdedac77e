"""Issue 23: ADO's state at many domains: binary arrays, bounded per domain, exact, strict.

The estimator's arrays (every domain's smoothing ring and fit points) are saved as encoded
binary columns, not JSON lists; each domain holds at most ``points_per_domain(K)`` fit points
(``max_points`` lowered to a share of ``point_budget``), so a state's size has a bound that does
not grow with steps; the earlier JSON form still loads.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from ado import StateError, StepStats, load_policy
from ado._state import decode_array, encode_array
from ado.estimators import PowerLawEstimator, ScalingLawConfig
from ado.policy import ADO

SHORT = {"ignore_steps": 0, "start_step": 10, "update_interval": 5, "min_points": 5}


def _policy(k: int, **overrides: Any) -> ADO:
    names = [f"d{i}" for i in range(k)]
    policy = load_policy("ado", domains=names, overrides={**SHORT, **overrides})
    assert isinstance(policy, ADO)
    return policy


def _step(t: int, k: int, rng: np.random.Generator) -> StepStats:
    counts = rng.multinomial(4 * k, np.full(k, 1.0 / k)).astype(np.float64)  # some absent
    loss = (2.0 + 3.0 * (t + 1.0) ** -0.4) * np.exp(0.02 * rng.standard_normal(k))
    return StepStats(step=t, counts=counts, loss_sums=counts * loss)


def test_points_per_domain_is_a_share_of_the_budget() -> None:
    cfg = ScalingLawConfig()  # the preset's: max_points 4096, point_budget 2^20, min_points 50
    assert cfg.points_per_domain(22) == 4096
    assert cfg.points_per_domain(256) == 4096
    assert cfg.points_per_domain(1000) == 2**20 // 1000
    assert cfg.points_per_domain(10_000) == 104
    assert cfg.points_per_domain(100_000) == 100  # 2 * min_points: refits must stay possible
    assert ScalingLawConfig(point_budget=None).points_per_domain(10**5) == 4096
    unbounded = ScalingLawConfig(max_points=None, point_budget=None)
    assert unbounded.points_per_domain(10) is None
    policy = _policy(40, point_budget=400, max_points=64)
    assert policy.estimator._est.config.max_points == 10  # 400 // 40 = 10 = 2 * min_points


def test_state_is_binary_exact_and_bounded_whatever_the_steps() -> None:
    k, rng = 6, np.random.default_rng(3)
    policy = _policy(k, window=7, subsample=1, point_budget=60)  # 10 points per domain
    sizes = []
    for t in range(400):
        policy.update(_step(t, k, rng))
        if t in (30, 399):
            est = policy.state_dict()["state"]["estimator"]["estimator"]
            assert all(isinstance(est[f], str) for f in ("ints", "last", "raw", "points"))
            sizes.append(len(json.dumps(est)))
    assert policy.estimator.num_fits > 50
    cap = policy.estimator._est.config.max_points
    assert cap == 10
    assert int(policy.estimator._est.num_points().max()) <= cap + 7  # + the pending half window
    bound = policy.estimator._est.state_bytes_bound()
    assert bound is not None
    assert max(sizes) <= bound
    assert sizes[1] < 1.5 * sizes[0]  # 370 more steps: the state did not grow with them
    # exact: a policy resumed from the JSON text continues bitwise
    text = json.dumps(policy.state_dict(), allow_nan=False)
    again = _policy(k, window=7, subsample=1, point_budget=60)
    again.load_state_dict(json.loads(text))
    for t in range(400, 460):
        s = _step(t, k, rng)
        policy.update(s)
        again.update(s)
        assert np.array_equal(policy.weights, again.weights)


def test_the_earlier_json_form_still_loads() -> None:
    k, rng = 4, np.random.default_rng(5)
    policy = _policy(k, window=5)
    for t in range(40):
        policy.update(_step(t, k, rng))
    state = policy.state_dict()
    legacy = json.loads(policy.estimator._est._inner.state_json())
    assert "series" in legacy
    assert isinstance(legacy["series"][0]["points_y"], list)
    state["state"]["estimator"]["estimator"] = legacy
    again = _policy(k, window=5)
    again.load_state_dict(json.loads(json.dumps(state)))
    for t in range(40, 70):
        s = _step(t, k, rng)
        policy.update(s)
        again.update(s)
        assert np.array_equal(policy.weights, again.weights)


def _tampered(edit: Any) -> str:
    k, rng = 3, np.random.default_rng(7)
    policy = _policy(k, window=5, max_points=8)
    for t in range(30):
        policy.update(_step(t, k, rng))
    before = policy.state_dict()
    state = policy.state_dict()
    edit(state["state"]["estimator"]["estimator"])
    with pytest.raises(StateError) as info:
        policy.load_state_dict(state)
    assert policy.state_dict() == before  # a refused load changes nothing
    return str(info.value)


def _set_ints(est: dict[str, Any], row: int, value: int) -> None:
    ints = decode_array(est["ints"], np.uint64, 12, "ints").reshape(4, 3)
    ints[row, 1] = value
    est["ints"] = encode_array(ints)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda e: e.update(raw="not base64!"), "estimator state raw is not an encoded array"),
        (lambda e: e.update(raw=encode_array(np.ones(3))), "raw holds 24 bytes where 30 values"),
        (lambda e: e.update(last=encode_array(np.ones(300))), "last holds more than the 3 values"),
        (lambda e: e.update(points=7), "points: Input should be a valid string"),
        (lambda e: e.pop("ints"), "ints: Field required"),
        (lambda e: e.update(format="columns-9"), "format: Input should be 'columns-1'"),
        (lambda e: e["config"].update(window=7), "estimator state was saved with"),
        (lambda e: _set_ints(e, 3, 9), "domain 1: 9 points exceed max_points 8"),
        (lambda e: _set_ints(e, 2, 3), "domain 1: stride 3 is not subsample"),
        (lambda e: _set_ints(e, 1, 10**6), "domain 1: ordinals 1000000 exceed count"),
    ],
)
def test_a_tampered_binary_state_is_refused_naming_the_field(edit: Any, message: str) -> None:
    assert message in _tampered(edit)


def test_encoded_arrays_are_exact_and_decoding_is_bounded() -> None:
    values = np.array([0.1, -0.0, math.nan, math.inf, 5e-324, 1.7976931348623157e308])
    back = decode_array(encode_array(values), np.float64, 6, "x")
    assert back.tobytes() == values.tobytes()
    ints = np.array([0, 1, 2**64 - 1], dtype=np.uint64)
    assert np.array_equal(decode_array(encode_array(ints), np.uint64, 3, "x"), ints)
    bomb = encode_array(np.zeros(10**7))  # 80 MB of zeros in < 0.5 MB of text
    assert len(bomb) < 500_000
    with pytest.raises(StateError, match="more than the 10 values"):
        decode_array(bomb, np.float64, 10, "x")  # stops after 81 bytes, never inflates it all


def test_a_standalone_estimator_round_trips() -> None:
    est = PowerLawEstimator(2, window=5, order=2, subsample=1, max_points=8)
    for t in range(50):
        est.update(t, [2.0 + 1.0 / (t + 1), math.nan if t % 4 else 3.0], [t + 1.0] * 2, 3.0)
    other = PowerLawEstimator(2, window=5, order=2, subsample=1, max_points=8)
    other.load_state_dict(json.loads(json.dumps(est.state_dict())))
    for d in range(2):
        (xa, ya), (xb, yb) = est.points(d), other.points(d)
        assert np.array_equal(xa, xb)
        assert np.array_equal(ya, yb)
