"""Presets, load_policy, overrides, errors, and custom policies (decorator and entry points)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
from ado import (
    ConfigError,
    InvalidInputError,
    Policy,
    PolicyConfig,
    StepStats,
    load_policy,
    load_policy_config,
    policy_kinds,
    register_policy,
)
from ado.policy import ADO, Guarded, Static
from ado.sim import default_spec, simulate
from helpers import POLICIES

PRESETS = sorted(POLICIES.glob("*.yaml"))
NAMES = ["a", "b", "c", "d"]
MU = np.array([0.4, 0.3, 0.2, 0.1])


def test_every_required_preset_exists() -> None:
    names = {p.stem for p in PRESETS}
    assert {"natural", "uniform", "temperature", "doremi", "odm", "ado", "ado-reference"} <= names


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_every_preset_loads_and_gives_a_distribution(path: Path) -> None:
    policy = load_policy(path, domains=NAMES, prior=MU)
    w = policy.weights
    assert w.shape == (4,)
    assert w.min() >= 0
    assert abs(w.sum() - 1) < 1e-12
    assert policy.config.kind in policy_kinds()


def test_natural_and_uniform() -> None:
    np.testing.assert_allclose(
        load_policy(POLICIES / "natural.yaml", domains=NAMES, prior=MU).weights, MU
    )
    np.testing.assert_allclose(
        load_policy(POLICIES / "uniform.yaml", domains=NAMES, prior=MU).weights, 0.25
    )


def test_overrides_apply_to_any_field_and_are_validated() -> None:
    policy = load_policy(
        POLICIES / "ado.yaml", domains=NAMES, prior=MU, overrides={"update_interval": 200}
    )
    assert isinstance(policy, ADO)
    assert policy.config.update_interval == 200
    assert policy.estimator.update_interval == 200
    with pytest.raises(ConfigError, match="update_interval"):
        load_policy_config(POLICIES / "ado.yaml", overrides={"update_interval": 0})
    with pytest.raises(ConfigError, match="not_a_field"):
        load_policy_config(POLICIES / "ado.yaml", overrides={"not_a_field": 1})
    cfg = load_policy_config(POLICIES / "odm.yaml", overrides={"estimator.decay": 0.5})
    assert cfg.estimator.decay == 0.5  # type: ignore[attr-defined]
    cfg = load_policy_config(
        {"kind": "static", "guardrails": [{"kind": "floor", "min_prob": 0.1}]},
        overrides={"guardrails.0.min_prob": 0.2},
    )
    assert cfg.guardrails[0].min_prob == 0.2  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"kind": "nope"}, "unknown policy kind 'nope'"),
        ({"weights": "natural"}, "missing 'kind'"),
        ({"kind": "static", "wieghts": "natural"}, "wieghts"),
        ({"kind": "temperature", "temperature": -1}, "temperature"),
        ({"kind": "static", "guardrails": [{"kind": "floor"}]}, "min_prob"),
        ({"kind": "static", "guardrails": [{"kind": "max_change"}]}, "exactly one"),
        ({"kind": "doremi", "estimator": {"kind": "bogus"}}, "estimator"),
    ],
)
def test_bad_configs_raise_config_error(data: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_policy_config(data)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_policy_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_policy_config(bad)


def test_build_time_errors() -> None:
    with pytest.raises(ConfigError, match="infeasible"):
        load_policy(
            {"kind": "static", "guardrails": [{"kind": "floor", "min_prob": 0.3}]}, domains=NAMES
        )
    with pytest.raises(ConfigError, match="missing"):
        load_policy({"kind": "static", "weights": {"a": 1.0}}, domains=NAMES)
    with pytest.raises(ConfigError, match="unknown"):
        load_policy(
            {
                "kind": "doremi",
                "estimator": {
                    "kind": "excess_loss",
                    "reference_losses": {"a": 1, "b": 1, "c": 1, "d": 1, "e": 1},
                },
            },
            domains=NAMES,
        )
    with pytest.raises(ValueError, match="unique"):
        load_policy({"kind": "static"}, domains=["a", "a"])
    with pytest.raises(ValueError, match="prior"):
        load_policy({"kind": "static"}, domains=NAMES, prior=[1, 2])


def test_explicit_static_weights_and_guardrails_wrap() -> None:
    policy = load_policy(
        {
            "kind": "static",
            "weights": {"a": 3, "b": 1, "c": 0, "d": 0},
            "guardrails": [{"kind": "floor", "min_prob": 0.05}],
        },
        domains=NAMES,
    )
    assert isinstance(policy, Guarded)
    assert isinstance(policy.inner, Static)
    np.testing.assert_allclose(policy.inner.weights, [0.75, 0.25, 0, 0])
    np.testing.assert_allclose(policy.weights, [0.675, 0.225, 0.05, 0.05])


# --- custom policies ------------------------------------------------------------------------------


@register_policy
class InverseCount(Policy):
    """Test policy: weights ∝ 1 / (1 + samples seen so far)."""

    class Config(PolicyConfig):
        kind: Literal["test_inverse_count"] = "test_inverse_count"
        power: float = 1.0

    config: Config

    def __init__(self, config: PolicyConfig, domains: Any, prior: Any = None) -> None:
        super().__init__(config, domains, prior)
        self.seen = np.zeros(self.num_domains)

    def _update(self, stats: StepStats) -> Any:
        self.seen += stats.counts
        w = (1.0 + self.seen) ** -self.config.power
        return w / w.sum()

    def _state(self) -> dict[str, Any]:
        return {"seen": self.seen.tolist()}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.seen = np.asarray(state["seen"])


def test_custom_policy_by_decorator_runs_in_the_simulator() -> None:
    spec = default_spec()
    policy = load_policy({"kind": "test_inverse_count", "power": 2.0}, domains=spec.names)
    assert isinstance(policy, InverseCount)
    result = simulate(policy, spec, 200, seed=1)
    # inverse-count weighting keeps the per-domain totals balanced
    totals = result.counts.sum(axis=0)
    assert totals.max() - totals.min() <= 0.05 * totals.mean()
    np.testing.assert_allclose(policy.weights.sum(), 1.0)


def test_registering_a_taken_kind_fails() -> None:
    with pytest.raises(ConfigError, match="already registered"):

        @register_policy
        class Another(InverseCount):
            pass

    with pytest.raises(ConfigError, match="Config"):
        register_policy(type("NoConfig", (Policy,), {}))  # type: ignore[arg-type]


def test_custom_policy_from_an_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real installed-distribution layout (dist-info with entry_points.txt) on sys.path."""
    (tmp_path / "ado_test_plugin.py").write_text(
        textwrap.dedent("""
        from typing import Literal
        from ado import Policy, PolicyConfig

        class Reverse(Policy):
            class Config(PolicyConfig):
                kind: Literal["test_reverse_prior"] = "test_reverse_prior"

            def __init__(self, config, domains, prior=None):
                super().__init__(config, domains, prior)
                w = self.prior[::-1]
                self._set_weights(w / w.sum())

            def _update(self, stats):
                return self.weights
    """)
    )
    dist = tmp_path / "ado_test_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ado-test-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[ado.policies]\ntest_reverse_prior = ado_test_plugin:Reverse\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "test_reverse_prior" not in policy_kinds()
    policy = load_policy({"kind": "test_reverse_prior"}, domains=NAMES, prior=MU)
    np.testing.assert_allclose(policy.weights, MU[::-1])
    assert "test_reverse_prior" in policy_kinds()
    monkeypatch.delitem(sys.modules, "ado_test_plugin")


@register_policy
class ReturnsGiven(Policy):
    """Test policy: proposes whatever ``next_weights`` holds."""

    class Config(PolicyConfig):
        kind: Literal["test_returns_given"] = "test_returns_given"

    config: Config
    next_weights: Any = None

    def _update(self, stats: StepStats) -> Any:
        return self.next_weights


@pytest.mark.parametrize(
    "bad",
    [
        [0.5, np.nan, 0.25, 0.25],
        [0.5, np.inf, 0.25, 0.25],
        [0.5, -0.1, 0.3, 0.3],
        [0.0, 0.0, 0.0, 0.0],
        [0.5, 0.5],
        [[0.25] * 4],
    ],
    ids=["nan", "inf", "negative", "zero-sum", "short", "2-d"],
)
def test_update_rejects_weights_that_are_not_a_distribution(bad: list[Any]) -> None:
    policy = load_policy({"kind": "test_returns_given"}, domains=NAMES, prior=MU)
    assert isinstance(policy, ReturnsGiven)
    before = policy.weights.copy()
    policy.next_weights = bad
    stats = StepStats(step=0, counts=[1, 1, 1, 1], loss_sums=[1.0, 1.0, 1.0, 1.0])
    with pytest.raises(
        InvalidInputError, match=r"policy ReturnsGiven \(kind 'test_returns_given'\)"
    ):
        policy.update(stats)
    np.testing.assert_array_equal(policy.weights, before)


def test_update_renormalises_the_policys_weights() -> None:
    policy = load_policy({"kind": "test_returns_given"}, domains=NAMES, prior=MU)
    assert isinstance(policy, ReturnsGiven)
    policy.next_weights = [2.0, 1.0, 1.0, 0.0]
    policy.update(StepStats(step=0, counts=[1, 1, 1, 1], loss_sums=[1.0, 1.0, 1.0, 1.0]))
    np.testing.assert_array_equal(policy.weights, [0.5, 0.25, 0.25, 0.0])


def test_presets_resolve_by_name_and_path() -> None:
    from ado.policy import presets, resolve_policy

    shipped = presets()
    assert set(shipped) == {p.stem for p in PRESETS}
    assert resolve_policy("ado") == shipped["ado"]
    assert resolve_policy(POLICIES / "ado.yaml") == POLICIES / "ado.yaml"
    np.testing.assert_allclose(load_policy("natural", domains=NAMES, prior=MU).weights, MU)
    with pytest.raises(ConfigError, match="neither a file nor a preset name; presets: "):
        resolve_policy("no-such-preset")
    with pytest.raises(ConfigError, match="no such file"):
        resolve_policy("somewhere/ado.yaml")


def test_huge_priors_and_weights_normalise_without_overflow() -> None:
    for source in ("natural", {"kind": "static", "weights": [1e308, 1e308, 1e308, 1e308]}):
        policy = load_policy(source, domains=NAMES, prior=[1e308] * 4)
        np.testing.assert_array_equal(policy.weights, [0.25] * 4)
    from ado.stats import normalised

    np.testing.assert_allclose(normalised([1e308, 1.5e308, 0.0]), [0.4, 0.6, 0.0], rtol=1e-15)
    w = np.array([0.1, 0.2, 0.3])
    np.testing.assert_array_equal(normalised(w), w / w.sum())  # the plain division otherwise


def test_many_domains_load_in_linear_time() -> None:
    # the duplicate check is a count, not a scan per name (10^5 names took minutes before)
    names = [f"d{i}" for i in range(100_000)]
    policy = load_policy("natural", domains=names)
    assert policy.num_domains == 100_000
    with pytest.raises(InvalidInputError, match=r"repeated: \['d7'\]"):
        load_policy("natural", domains=[*names, "d7"])


def test_policies_declare_what_a_harness_must_serve_them() -> None:
    # ado compare serves these declarations; it knows no policy by name
    needs = {p.stem: load_policy_config(p).harness_needs() for p in PRESETS}
    assert needs["ado"] == needs["ado-reference"] == {"schedule"}
    assert needs["doremi"] == {"reference_losses"}
    assert needs["natural"] == needs["uniform"] == needs["temperature"] == needs["odm"] == set()
    table = {"kind": "doremi", "estimator": {"kind": "excess_loss", "reference_losses": [1.0] * 4}}
    assert load_policy_config(table).harness_needs() == set()
