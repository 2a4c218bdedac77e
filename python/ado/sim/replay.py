"""Replay a logged run's statistics through another policy (open loop)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy.typing as npt

from ado.errors import InvalidInputError
from ado.policy.base import Policy, load_policy
from ado.stats import StepStats

__all__ = ["read_run", "replay"]


def read_run(path: str | Path) -> tuple[dict[str, Any], Iterator[StepStats]]:
    """Read a run log (JSONL): the header record and an iterator over its steps' statistics.

    The format is the one :func:`ado.sim.simulate` writes: a ``{"type": "header", "domains": [...],
    "prior": [...]}`` line, then ``{"type": "step", "step": t, "counts": [...], "loss_sums":
    [...]}``
    lines (optional ``token_counts``, ``ref_loss_sums``; other fields ignored). A training loop can
    write the same records.
    """
    path = Path(path)
    try:
        handle = path.open()
    except OSError as err:
        raise InvalidInputError(f"{path}: cannot open run log: {err}") from None
    first = handle.readline()
    try:
        header = json.loads(first)
    except json.JSONDecodeError:
        handle.close()
        raise InvalidInputError(f"{path}: line 1 is not JSON") from None
    if not isinstance(header, dict) or header.get("type") != "header" or "domains" not in header:
        handle.close()
        raise InvalidInputError(f"{path}: line 1 must be a header record with 'domains'")

    def steps() -> Iterator[StepStats]:
        with handle:
            for lineno, line in enumerate(handle, start=2):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    raise InvalidInputError(f"{path}:{lineno}: not JSON") from None
                if row.get("type", "step") == "step":
                    yield StepStats.from_dict(row)

    return header, steps()


def replay(
    run: str | Path,
    policy: str | Path | Mapping[str, Any],
    out: IO[str],
    *,
    overrides: Mapping[str, Any] | None = None,
    domains: Sequence[str] | None = None,
    prior: npt.ArrayLike | None = None,
) -> Policy:
    """Feed ``run``'s statistics through ``policy`` and write the weights it would have chosen.

    Writes a header line, then ``{"step": t, "weights": [...]}`` per step: the distribution the
    policy proposes for batch ``t + 1`` after seeing step ``t``. Domains and prior default to the
    run's. Returns the policy in its final state.
    """
    header, steps = read_run(run)
    names = list(domains) if domains is not None else list(header["domains"])
    mu = prior if prior is not None else header.get("prior")
    pol = load_policy(policy, domains=names, prior=mu, overrides=overrides)
    out.write(
        json.dumps(
            {
                "type": "header",
                "domains": names,
                "source": str(run),
                "policy": pol.config.model_dump(mode="json"),
                "initial_weights": pol.weights.tolist(),
            }
        )
        + "\n"
    )
    for stats in steps:
        pol.update(stats)
        out.write(
            json.dumps({"type": "step", "step": stats.step, "weights": pol.weights.tolist()}) + "\n"
        )
    return pol
