"""The transfer estimator and ADO's ``transfer:`` / ``target:`` options (issue 24)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ado import load_policy
from ado.errors import ConfigError, StateError
from ado.estimators import TransferConfig, TransferEstimator
from ado.policy import ADO
from ado.sim import SimSpec, simulate
from helpers import POLICIES, stream

#: ADO's schedule in these closed loops: first fit at step 200, then every 200 steps.
LOOP = {"ignore_steps": 0, "start_step": 200, "update_interval": 200, "subsample": 2, "window": 51}


def transfer_spec(noise: float) -> SimSpec:
    """``a`` and ``b`` share structure (0.6 each way), ``d`` helps ``c`` (1.5 per sample, more
    than ``c`` itself), ``noise`` is flat. ``noise``: the per-sample log-loss noise of a-d."""
    return SimSpec.model_validate(
        {
            "batch_size": 64,
            "transfer": [
                [1, 0.6, 0, 0, 0],
                [0.6, 1, 0, 0, 0],
                [0, 0, 1, 1.5, 0],
                [0, 0, 0, 1, 0],
                [0, 0, 0, 0, 1],
            ],
            "domains": [
                {"name": "a", "eps": 2.0, "beta": 8.0, "alpha": 0.3, "noise": noise},
                {"name": "b", "eps": 2.0, "beta": 8.0, "alpha": 0.3, "noise": noise},
                {"name": "c", "eps": 1.5, "beta": 6.0, "alpha": 0.35, "noise": noise},
                {"name": "d", "eps": 1.8, "beta": 5.0, "alpha": 0.3, "noise": noise},
                {"name": "noise", "eps": 3.0, "noise": 0.1},
            ],
        }
    )


def relative_truth(spec: SimSpec) -> np.ndarray:
    t = spec.transfer_matrix()
    out: np.ndarray = t / np.diag(t)[:, None]
    return out


def transfer_ado(spec: SimSpec, **transfer: float) -> ADO:
    policy = load_policy(
        POLICIES / "ado.yaml",
        domains=spec.names,
        prior=spec.prior(),
        overrides={**LOOP, "target": {"c": 1.0}, "transfer": transfer},
    )
    assert isinstance(policy, ADO)
    return policy


@pytest.mark.parametrize("seed", range(5))
def test_estimator_recovers_the_transfer_matrix_when_the_losses_are_exact(seed: int) -> None:
    """Closed loop, ADO with transfer: with exact per-sample losses (the batch draws and the
    5 % exploration are the only variation), the error of A on the learnable domains falls
    from the identity's (0.169) to under a third of it, and the two large effects (a <-> b,
    d -> c) are found."""
    spec = transfer_spec(noise=0.0)
    truth = relative_truth(spec)[:4, :4]
    ado = transfer_ado(spec)
    errors: list[float] = []

    def on_step(t: int, p: object) -> None:
        if t % 1000 == 999:
            assert ado.transfer is not None
            errors.append(float(np.abs(ado.transfer.matrix()[:4, :4] - truth).mean()))

    simulate(ado, spec, 6000, seed=seed, on_step=on_step)
    identity_error = float(np.abs(np.eye(4) - truth).mean())
    assert errors[-1] < identity_error / 3
    assert ado.transfer is not None
    a = ado.transfer.matrix()
    assert a[0, 1] > 0.3
    assert a[1, 0] > 0.3
    assert a[2, 3] > 0.9  # truth 1.5


def test_state_dict_restores_exactly_and_memory_is_bounded() -> None:
    names = [f"d{i}" for i in range(4)]
    cfg = {**LOOP, "start_step": 100, "update_interval": 100, "min_points": 20}
    cfg["transfer"] = {"block": 10, "min_blocks": 3}

    def make() -> ADO:
        p = load_policy(POLICIES / "ado.yaml", domains=names, overrides=cfg)
        assert isinstance(p, ADO)
        return p

    steps = list(stream(4, 600, seed=3))
    a = make()
    sizes = []
    for s in steps[:300]:
        a.update(s)
        if s.step in (150, 299):
            assert a.transfer is not None
            sizes.append(len(json.dumps(a.transfer.state_dict())))
    state = json.loads(json.dumps(a.state_dict()))
    b = make()
    b.load_state_dict(state)
    for s in steps[300:]:
        a.update(s)
        b.update(s)
        assert np.array_equal(a.weights, b.weights)
    assert a.transfer is not None
    assert b.transfer is not None
    assert a.transfer.blocks > 3
    assert np.array_equal(a.transfer.matrix(), b.transfer.matrix())
    # the state does not grow with the run (digits of the floats aside)
    assert abs(sizes[1] - sizes[0]) < 0.2 * sizes[0]
    plain = load_policy(POLICIES / "ado.yaml", domains=names)
    with pytest.raises(StateError, match="transfer"):
        plain.load_state_dict(state, strict=False)


def test_without_exploration_and_with_the_identity_transfer_is_plain_ado() -> None:
    """``A`` stays the identity until ``min_blocks``; with no exploration the weights are plain
    ADO's (to the last bits: the transfer path multiplies in another order); a target equal to
    the prior is the default, bit for bit."""
    names = [f"d{i}" for i in range(3)]
    cfg = {**LOOP, "start_step": 100, "update_interval": 100, "min_points": 20}
    plain = load_policy(POLICIES / "ado.yaml", domains=names, overrides=cfg)
    off = load_policy(
        POLICIES / "ado.yaml",
        domains=names,
        overrides={**cfg, "transfer": {"explore": 0.0, "min_blocks": 10**6}},
    )
    targeted = load_policy(
        POLICIES / "ado.yaml",
        domains=names,
        overrides={**cfg, "target": {"d0": 1.0, "d1": 1.0, "d2": 1.0}},
    )
    for s in stream(3, 400, seed=1):
        for p in (plain, off, targeted):
            p.update(s)
        np.testing.assert_allclose(off.weights, plain.weights, rtol=1e-12, atol=0)
        assert np.array_equal(plain.weights, targeted.weights)


def test_exploration_moves_its_share_on_the_known_schedule() -> None:
    names = [f"d{i}" for i in range(4)]
    p = load_policy(
        POLICIES / "ado.yaml", domains=names, overrides={"transfer": {"block": 5, "explore": 0.05}}
    )
    assert isinstance(p, ADO)
    assert p.transfer is not None
    seen = set()
    for s in stream(4, 40, seed=0):
        p.update(s)
        j = p.transfer.explore_domain(s.step + 1)
        assert j is not None
        seen.add(j)
        expected = p.prior * 0.95
        expected[j] += 0.05
        np.testing.assert_allclose(p.weights, expected)
    assert seen == set(range(4))  # every domain within each cycle of K blocks


def test_bad_target_and_transfer_settings_are_refused() -> None:
    names = ["a", "b"]
    with pytest.raises(ConfigError, match="unknown domains"):
        load_policy(POLICIES / "ado.yaml", domains=names, overrides={"target": {"z": 1.0}})
    with pytest.raises(ConfigError, match="all 0"):
        load_policy(POLICIES / "ado.yaml", domains=names, overrides={"target": {"a": 0.0}})
    with pytest.raises(ConfigError, match="explore"):
        load_policy(POLICIES / "ado.yaml", domains=names, overrides={"transfer": {"explore": 0.2}})


def test_estimator_alone_is_deterministic_and_starts_at_the_identity() -> None:
    est = TransferEstimator(3, TransferConfig(block=4, min_blocks=2))
    assert np.array_equal(est.matrix(), np.eye(3))
    other = TransferEstimator(3, TransferConfig(block=4, min_blocks=2))
    for s in stream(3, 200, seed=5):
        est.observe(s)
        other.observe(s)
    assert np.array_equal(est.matrix(), other.matrix())
    assert (est.matrix() >= 0).all()
    with pytest.raises(Exception, match="not after"):
        est.observe(next(iter(stream(3, 1))))


def test_ado_with_transfer_lowers_the_target_loss_below_natural_on_five_seeds() -> None:
    # Issue 24 §3 asked for "lower than plain ADO and natural"; measured (benchmarks/results/
    # transfer-sim/, 5 seeds, 6000 steps) it is lower than natural on every seed but NOT lower
    # than plain ADO (1.5705 vs 1.5688 with exact losses): the 5 % exploration costs more than
    # the transfer credit gains. This asserts what holds, at per-sample noise 0.005.
    spec = transfer_spec(0.005)
    c = spec.names.index("c")
    for seed in range(5):
        natural = load_policy(POLICIES / "natural.yaml", domains=spec.names)
        base = simulate(natural, spec, 3000, seed=seed).final_loss[c]
        with_transfer = simulate(transfer_ado(spec), spec, 3000, seed=seed).final_loss[c]
        assert with_transfer < base - 0.005, (seed, with_transfer, base)


@pytest.mark.parametrize("bad", [True, 2.0, "3", -1, 0])
def test_every_estimator_checks_num_domains_alike(bad: object) -> None:
    """The transfer, held-out-target and power-law estimators share one check of
    ``num_domains`` (the power law's allows 0)."""
    from ado.errors import InvalidInputError
    from ado.estimators import HeldOutTargetEstimator, PowerLawEstimator

    for build, minimum in (
        (TransferEstimator, 1),
        (HeldOutTargetEstimator, 1),
        (PowerLawEstimator, 0),
    ):
        if bad == 0 and minimum == 0:
            continue  # an empty power-law estimator is allowed
        with pytest.raises(InvalidInputError, match=f"num_domains must be an integer >= {minimum}"):
            build(bad)
    assert TransferEstimator(2).num_domains == 2
    assert HeldOutTargetEstimator(2).num_domains == 2
