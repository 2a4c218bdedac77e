"""Replay a logged run's statistics through another policy (open loop)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy.typing as npt

from ado.policy.base import Policy, load_policy
from ado.runlog import read_run_log, start_record

__all__ = ["replay"]


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

    ``run`` is any run log (:mod:`ado.runlog`): of ``ado simulate``, of a training run, of one run
    of ``ado compare`` (``runs/<policy>/seed<k>/train.jsonl``). Writes a ``start`` record, then
    ``{"event": "replay", "step": t, "weights": [...]}`` per step: the distribution the policy
    proposes for batch ``t + 1`` after seeing step ``t``. Domains and prior default to the run's.
    Returns the policy in its final state.

    Raises:
        InvalidInputError: ``run`` is not a run log, or holds invalid statistics.
    """
    log = read_run_log(run)
    names = list(domains) if domains is not None else log.domains
    mu = prior if prior is not None else log.prior
    pol = load_policy(policy, domains=names, prior=mu, overrides=overrides)
    start = start_record(
        names,
        pol.prior,
        source=str(run),
        policy=pol.config.model_dump(mode="json"),
        initial_weights=pol.weights.tolist(),
    )
    out.write(json.dumps(start) + "\n")
    for stats in log.steps():
        pol.update(stats)
        rec = {"event": "replay", "step": stats.step, "weights": pol.weights.tolist()}
        out.write(json.dumps(rec) + "\n")
    return pol
