"""state_dict round trips: future weights are bitwise identical; mismatches raise StateError."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ado import StateError, load_policy
from helpers import POLICIES, stream

NAMES = ["a", "b", "c", "d"]
MU = np.array([0.4, 0.3, 0.2, 0.1])
SHORT_ADO = {
    "ignore_steps": 20,
    "start_step": 60,
    "update_interval": 40,
    "min_points": 5,
    "window": 21,
}
RAILS = [
    {"kind": "fallback"},
    {"kind": "max_change", "max_kl": 0.05},
    {"kind": "smoothing", "rate": 0.5},
    {"kind": "floor", "min_prob": 0.02},
    {"kind": "token_budget", "budgets": {"b": 5000.0}},
]


def _cases() -> list[tuple[str, Path, dict[str, Any]]]:
    out = []
    for path in sorted(POLICIES.glob("*.yaml")):
        over = dict(SHORT_ADO) if path.stem.startswith("ado") else {}
        out.append((path.stem, path, over))
        out.append((path.stem + "+guardrails", path, {**over, "guardrails": RAILS}))
    # a background fit pending at the split (refits at 80, 120, ...; applied 35 steps later)
    out.append(("ado+fit_delay", POLICIES / "ado.yaml", {**SHORT_ADO, "fit_delay": 35}))
    return out


@pytest.mark.parametrize(("name", "path", "overrides"), _cases(), ids=[c[0] for c in _cases()])
@pytest.mark.parametrize("split", [30, 130])
def test_round_trip_mid_run_gives_bitwise_identical_future(
    name: str, path: Path, overrides: dict[str, Any], split: int
) -> None:
    steps = list(stream(4, 260, seed=11, with_ref=True))
    a = load_policy(path, domains=NAMES, prior=MU, overrides=overrides)
    for s in steps[:split]:
        a.update(s)
    saved = json.loads(json.dumps(a.state_dict(), allow_nan=False))
    b = load_policy(path, domains=NAMES, prior=MU, overrides=overrides)
    b.load_state_dict(saved)
    assert np.array_equal(a.weights, b.weights)
    for s in steps[split:]:
        a.update(s)
        b.update(s)
        assert np.array_equal(a.weights, b.weights), (name, s.step)
    assert a.metrics().keys() == b.metrics().keys()
    if name.startswith("ado") and split == 130:
        assert a.metrics()["fits"] >= 2  # the round trip happened between refits


def test_state_mismatches_raise() -> None:
    a = load_policy(POLICIES / "ado.yaml", domains=NAMES, prior=MU, overrides=SHORT_ADO)
    for s in stream(4, 80, seed=1):
        a.update(s)
    sd = a.state_dict()
    assert sd["format_version"] == 1
    assert sd["domains"] == NAMES
    assert len(sd["config_fingerprint"]) == 64
    other = load_policy(
        POLICIES / "ado.yaml", domains=["a", "b", "c", "x"], prior=MU, overrides=SHORT_ADO
    )
    with pytest.raises(StateError, match="domains"):
        other.load_state_dict(sd)
    changed = load_policy(
        POLICIES / "ado.yaml",
        domains=NAMES,
        prior=MU,
        overrides={**SHORT_ADO, "update_interval": 50},
    )
    with pytest.raises(StateError, match="fingerprint"):
        changed.load_state_dict(sd)
    changed.load_state_dict(sd, strict=False)
    assert changed.step == a.step
    with pytest.raises(StateError, match="kind"):
        load_policy(POLICIES / "odm.yaml", domains=NAMES).load_state_dict(sd)
    with pytest.raises(StateError, match="format_version"):
        a.load_state_dict({**sd, "format_version": 99})
    with pytest.raises(StateError, match="ado state is invalid: h: "):
        a.load_state_dict({**sd, "state": {**sd["state"], "h": None}})
