"""A state saved by an earlier version of ado still loads and continues as that version did.

``data/ado_k10_state.json`` was written by commit 4401ea5's code (before the estimator kept its
rings as one matrix) with ``python tests/policy/test_state_replay.py --write``: the default
``ado`` preset at K = 10 over the deterministic stream :func:`_stats`, its ``state_dict()`` after
step 2950, then, continuing to step 3050 (a refit at 3000 included), the weights every 10 steps
and every domain's fit points at the end (their SHA-256). The points (Rust arithmetic only) must
match bitwise; the weights before the refit to 1e-12 (they go through numpy's ``power``, whose
last bit may depend on the CPU's vector instructions; on the machine that wrote the file they
match bitwise too). From the refit on, the weights also depend on the fitter, which has changed
since (issue 23): there they are held to 1e-6.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from ado import StepStats, load_policy
from ado.policy import ADO

DATA = Path(__file__).resolve().parent / "data" / "ado_k10_state.json"
K, SAVED, END = 10, 2950, 3050


def _stats(t: int) -> StepStats:
    """Step ``t`` of a stream with absent domains (no RNG: the same on every numpy)."""
    d = np.arange(K)
    counts = ((t * 7 + d * 13) % 11 - 2).clip(0).astype(np.float64)  # 2 of 11 absent
    wobble = 1.0 + 0.01 * (((t * 37 + d * 11) % 17) - 8.0)
    mean = (2.0 + 0.3 * (d + 1) * ((t + 1.0) * 64.0) ** -0.3) * wobble
    return StepStats(step=t, counts=counts, loss_sums=counts * mean)


def _policy() -> ADO:
    prior = (np.arange(K) + 1.0) / (K * (K + 1) / 2)
    policy = load_policy("ado", domains=[f"d{i}" for i in range(K)], prior=prior)
    assert isinstance(policy, ADO)
    return policy


def _continue(policy: ADO) -> tuple[dict[str, list[str]], str]:
    weights = {}
    for t in range(SAVED + 1, END + 1):
        policy.update(_stats(t))
        if t % 10 == 0:
            weights[str(t)] = [float(w).hex() for w in policy.weights]
    est = policy.estimator
    digest = hashlib.sha256()
    for d in range(K):
        for a in est.points(d):
            digest.update(np.ascontiguousarray(a, dtype="<f8").tobytes())
    return weights, digest.hexdigest()


def _write() -> None:
    policy = _policy()
    for t in range(SAVED + 1):
        policy.update(_stats(t))
    state = policy.state_dict()
    weights, points = _continue(policy)
    assert policy.estimator.num_fits == 2
    DATA.write_text(json.dumps({"state": state, "weights": weights, "points": points}))


def _columns(state: dict[str, Any]) -> list[bytes]:
    """The estimator's encoded arrays, decoded (zlib's output may differ between versions)."""
    est = state["state"]["estimator"]["estimator"]
    names = ("ints", "last", "raw", "points")
    return [zlib.decompress(base64.b64decode(est[name])) for name in names]


def test_an_earlier_versions_state_loads_and_continues_as_it_did() -> None:
    saved = json.loads(DATA.read_text())
    policy = _policy()
    policy.load_state_dict(saved["state"])
    assert _columns(policy.state_dict()) == _columns(saved["state"])  # saved back unchanged
    weights, points = _continue(policy)
    assert policy.estimator.num_fits == 2  # the refit at 3000 happened
    assert points == saved["points"]  # bitwise (a digest of the float64 bytes)
    # Up to the refit the weights come from the saved fit. From it on they also depend on the
    # fitter, which has changed since (issue 23): the new one reaches the old optimum to about
    # 1e-7 here, so those weights are held to 1e-6.
    for t, want in saved["weights"].items():
        got = [float.fromhex(w) for w in weights[t]]
        rtol = 1e-12 if int(t) < 3000 else 1e-6
        np.testing.assert_allclose(got, [float.fromhex(w) for w in want], rtol=rtol, atol=0)


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    _write()
