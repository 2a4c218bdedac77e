"""Size-like options are bounded where they are declared (pydantic fields, the Rust serde
structs): a huge number is a clear error naming the field, never hours of work or an
allocation failure. Construction is linear in K (the costs are measured in
``benchmarks/policy_overhead.py --scaling``)."""

from __future__ import annotations

import json

import pytest
from ado import _core, load_policy
from ado.errors import ConfigError, InvalidInputError
from ado.estimators import FitConfig, LrFitConfig, PowerLawEstimator, PowerLawEstimatorConfig
from ado.policy import load_policy_config
from pydantic import ValidationError


@pytest.mark.parametrize(
    ("field", "value"),
    [("alpha_grid", 10**13), ("alpha_grid", 10**8), ("search_points", 10**9), ("max_iter", 10**9)],
)
def test_fit_search_sizes_are_bounded(field: str, value: int) -> None:
    with pytest.raises(ValidationError, match=field):
        FitConfig(**{field: value})
    with pytest.raises(ConfigError, match="less than or equal to"):
        load_policy_config({"kind": "ado", "fit": {field: value}})
    # the Rust side has the same bounds (a config built around the Python model)
    data = json.loads(FitConfig().model_dump_json())
    data[field] = value
    with pytest.raises(InvalidInputError, match=f"{field} must be in"):
        _core.FitSpec(json.dumps(data))


@pytest.mark.parametrize(
    ("field", "value"), [("alpha_grid", 10**10), ("polish_starts", 10**6), ("max_iter", 10**9)]
)
def test_lr_fit_search_sizes_are_bounded(field: str, value: int) -> None:
    """The learning-rate-aware fit is bounded as the power-law fitter is (was SIGABRT)."""
    with pytest.raises(ValidationError, match=field):
        LrFitConfig(**{field: value})
    with pytest.raises(ConfigError, match="less than or equal to"):
        load_policy_config({"kind": "ado", "law": "lr", "lr_fit": {field: value}})
    data = json.loads(LrFitConfig().model_dump_json())
    data[field] = value
    with pytest.raises(InvalidInputError, match=f"{field} must be in"):
        _core.LrFitSpec(json.dumps(data))


@pytest.mark.parametrize(
    ("field", "value"), [("window", 10**6 + 1), ("order", 40), ("max_points", 10**12)]
)
def test_estimator_sizes_are_bounded(field: str, value: int) -> None:
    with pytest.raises(ValidationError, match=field):
        PowerLawEstimatorConfig(**{field: value})
    data = json.loads(PowerLawEstimatorConfig().model_dump_json())
    data[field] = value
    with pytest.raises(InvalidInputError, match=field):
        _core.PowerLawEstimator(2, json.dumps(data))


def test_python_and_rust_bounds_agree() -> None:
    """The largest value the Python model accepts, Rust accepts too (and one more it refuses)."""
    for model, build in (
        (FitConfig, lambda d: _core.FitSpec(json.dumps(d))),
        (PowerLawEstimatorConfig, lambda d: _core.PowerLawEstimator(1, json.dumps(d))),
        (LrFitConfig, lambda d: _core.LrFitSpec(json.dumps(d))),
    ):
        for name, info in model.model_fields.items():
            le = next((m.le for m in info.metadata if getattr(m, "le", None) is not None), None)
            if le is None or name in ("ignore_steps", "subsample"):
                continue
            data = json.loads(model().model_dump_json())
            data[name] = le
            if name == "window" and data["order"] >= le:
                continue
            build(data)
            model(**{name: le})
            data[name] = le + 1
            with pytest.raises(InvalidInputError):
                build(data)


def test_many_domains_build_and_duplicates_are_named() -> None:
    names = [f"domain-{i:06d}" for i in range(100_000)]
    policy = load_policy("ado", domains=names)
    assert policy.num_domains == 100_000
    with pytest.raises(InvalidInputError, match=r"repeated: \['domain-000007'\]"):
        load_policy("ado", domains=[*names, "domain-000007"])
    with pytest.raises(InvalidInputError, match="num_domains"):
        PowerLawEstimator(-1)


def test_estimator_domain_count_is_bounded() -> None:
    with pytest.raises(InvalidInputError, match="num_domains must be in"):
        PowerLawEstimator(10**12)  # an error, not an allocation failure (abort)
