"""DomainLossTracker: device-side per-domain sums equal a float64 reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ado.errors import InvalidInputError, StateError
from ado.torch import DomainLossTracker


def test_sums_and_counts_match_reference() -> None:
    gen = torch.Generator().manual_seed(0)
    k = 4
    tracker = DomainLossTracker(k)
    ref_sum = np.zeros(k)
    ref_cnt = np.zeros(k)
    for _ in range(5):
        loss = torch.rand(7, generator=gen, dtype=torch.float32) * 3
        dom = torch.randint(0, 3, (7,), generator=gen)  # domain 3 never appears
        tracker.add(loss, dom)
        np.add.at(ref_sum, dom.numpy(), loss.double().numpy())
        np.add.at(ref_cnt, dom.numpy(), 1.0)
    stats = tracker.step_stats(3, tokens_per_sample=16)
    assert stats.step == 3
    np.testing.assert_allclose(stats.loss_sums, ref_sum, rtol=1e-12)
    np.testing.assert_array_equal(stats.counts, ref_cnt)
    assert stats.counts[3] == 0
    assert stats.loss_sums[3] == 0
    assert stats.token_counts is not None
    np.testing.assert_array_equal(stats.token_counts, ref_cnt * 16)
    # step_stats resets the accumulator
    empty = tracker.step_stats(4)
    assert empty.counts.sum() == 0
    assert empty.loss_sums.sum() == 0


def test_per_token_losses_with_mask() -> None:
    tracker = DomainLossTracker(2)
    loss = torch.tensor([[1.0, 3.0, 5.0], [2.0, 2.0, 8.0], [4.0, 4.0, 4.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [0, 0, 0]], dtype=torch.bool)
    tracker.add(loss, torch.tensor([0, 1, 1]), mask=mask)
    stats = tracker.step_stats(0)
    # row 0: mean(1, 3) = 2; row 1: mean(2, 2, 8) = 4; row 2 has no token and counts nothing
    np.testing.assert_array_equal(stats.loss_sums, [2.0, 4.0])
    np.testing.assert_array_equal(stats.counts, [1.0, 1.0])
    tracker.add(loss, torch.tensor([0, 0, 1]))  # no mask: mean over all tokens
    stats = tracker.step_stats(1)
    np.testing.assert_allclose(stats.loss_sums, [3.0 + 4.0, 4.0])


def test_invalid_inputs_and_state() -> None:
    tracker = DomainLossTracker(3)
    with pytest.raises(InvalidInputError, match="domain must be"):
        tracker.add(torch.ones(4), torch.zeros(3, dtype=torch.long))
    with pytest.raises(InvalidInputError, match="mask is only valid"):
        tracker.add(torch.ones(4), torch.zeros(4, dtype=torch.long), mask=torch.ones(4))
    with pytest.raises(InvalidInputError, match=r"loss must be \[B\]"):
        tracker.add(torch.ones(2, 2, 2), torch.zeros(2, dtype=torch.long))
    with pytest.raises(InvalidInputError, match="num_domains"):
        DomainLossTracker(0)
    with pytest.raises(InvalidInputError, match="would be truncated"):
        tracker.add(torch.ones(2), torch.tensor([0.7, 1.9]))
    with pytest.raises(InvalidInputError, match=r"in \[0, 3\)"):
        tracker.add(torch.ones(2), torch.tensor([0, 3]))
    assert tracker.reduce().tolist() == [0.0] * 6  # refused adds changed nothing
    tracker.add(torch.tensor([1.5, 2.5]), torch.tensor([2, 0]))
    state = tracker.state_dict()
    other = DomainLossTracker(3)
    other.load_state_dict(state)
    np.testing.assert_array_equal(other.reduce(), tracker.reduce())
    with pytest.raises(StateError, match="3 domains"):
        DomainLossTracker(2).load_state_dict(state)
    tracker.add(torch.tensor([float("nan")]), torch.tensor([1]))
    with pytest.raises(InvalidInputError, match="NaN or inf"):
        tracker.step_stats(0)


def test_gradients_are_not_kept() -> None:
    w = torch.ones(3, requires_grad=True)
    tracker = DomainLossTracker(2)
    tracker.add(w * 2, torch.tensor([0, 1, 1]))
    assert not tracker._buf.requires_grad
    np.testing.assert_array_equal(tracker.step_stats(0).loss_sums, [2.0, 4.0])
