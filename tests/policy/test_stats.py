"""StepStats validation at the boundary."""

from __future__ import annotations

import numpy as np
import pytest
from ado import InvalidInputError, StepStats


def test_valid_stats_are_float64_and_give_mean_losses() -> None:
    s = StepStats(step=3, counts=[2, 0, 1], loss_sums=[5.0, 0.0, 1.5])
    assert s.counts.dtype == np.float64
    np.testing.assert_array_equal(s.mean_losses(), [2.5, np.nan, 1.5])
    back = StepStats.from_dict(s.to_dict())
    assert back.step == 3
    np.testing.assert_array_equal(back.counts, s.counts)
    np.testing.assert_array_equal(back.loss_sums, s.loss_sums)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"counts": [1, 2], "loss_sums": [1.0, 2.0, 3.0]}, "loss_sums has 3 entries"),
        ({"counts": [1, -2], "loss_sums": [1.0, 0.0]}, "counts must be >= 0"),
        ({"counts": [1, 2], "loss_sums": [1.0, np.nan]}, "loss_sums holds NaN"),
        ({"counts": [1, np.inf], "loss_sums": [1.0, 2.0]}, "counts holds NaN or inf"),
        ({"counts": [1, 0], "loss_sums": [1.0, 2.0]}, "non-zero for a domain with counts == 0"),
        ({"counts": [[1, 2]], "loss_sums": [1.0, 2.0]}, "must be 1-D"),
        ({"counts": [], "loss_sums": []}, "empty"),
        ({"counts": [1, 2], "loss_sums": [1, 2], "token_counts": [5, -1]}, "token_counts"),
        ({"counts": [1, 2], "loss_sums": [1, 2], "ref_loss_sums": [1.0]}, "ref_loss_sums"),
    ],
)
def test_bad_stats_name_the_problem(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        StepStats(step=0, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("step", [-1, 1.5, True])
def test_bad_step(step: object) -> None:
    with pytest.raises(InvalidInputError, match="step"):
        StepStats(step=step, counts=[1], loss_sums=[1.0])  # type: ignore[arg-type]


def test_from_dict_missing_field() -> None:
    with pytest.raises(InvalidInputError, match="lacks field 'loss_sums'"):
        StepStats.from_dict({"step": 0, "counts": [1]})
