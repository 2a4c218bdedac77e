"""DoReMi with an estimator that has no value for a domain before it is first seen."""

from __future__ import annotations

import numpy as np
from ado import StepStats, load_policy


def test_doremi_with_loss_ema_keeps_finite_weights_when_a_domain_is_missing_at_first() -> None:
    policy = load_policy(
        {"kind": "doremi", "estimator": {"kind": "loss_ema"}}, domains=["a", "b", "c"]
    )
    # Domain c is absent from the first batches: its EMA is still undefined (NaN).
    for t in range(3):
        policy.update(
            StepStats(step=t, counts=np.array([4, 4, 0]), loss_sums=np.array([8.0, 12.0, 0.0]))
        )
        w = policy.weights
        assert np.all(np.isfinite(w))
        assert abs(w.sum() - 1.0) < 1e-12
    # The unseen domain is neither boosted nor starved by the missing signal beyond the update rule.
    assert w[2] > 0
