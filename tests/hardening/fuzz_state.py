"""Fuzz target: random edits of every policy's ``state_dict`` into ``load_state_dict`` + ``update``.

Each case takes a real state (a policy after a few dozen updates, fits included), applies one to
three random edits to it (delete a field, change its type, NaN/inf, negative, huge or truncated
values, lists cut or grown, weights scaled...), loads it and, if the load is accepted, runs a few
updates. The only acceptable outcomes are success or an ``ado.errors.AdoError``; anything else
(a ``pyo3_runtime.PanicException``, a bare ``ZeroDivisionError``, ``TypeError``...) is a
failure. A load that raises must leave the policy exactly as it was (its ``state_dict`` is
compared), and accepted states must keep producing distributions.

    python tests/hardening/fuzz_state.py --cases 100000      # about 2-4 min on 2 cores

prints the cases run per policy, how many loads were refused, accepted, and the failures (0).
``test_fuzz_state.py`` runs a few thousand cases in a fresh interpreter.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["POLICIES", "fuzz", "mutate"]

NAMES = ["web", "code", "books"]
SHORT = {
    "ignore_steps": 0,
    "start_step": 10,
    "update_interval": 5,
    "min_points": 5,
    "subsample": 1,
    "window": 5,
}

#: (label, source, overrides): every built-in kind, ADO in both presets, and guardrails.
POLICIES: list[tuple[str, Any, dict[str, Any]]] = [
    ("natural", "natural", {}),
    ("uniform", "uniform", {}),
    ("temperature", {"kind": "temperature", "final_temperature": 5.0, "schedule_steps": 50}, {}),
    ("doremi", "doremi", {}),
    ("odm", "odm", {}),
    ("ado", "ado", {**SHORT, "max_points": 8}),
    ("ado-reference", "ado-reference", SHORT),
    ("ado-delayed", "ado", {**SHORT, "fit_delay": 2, "x_axis": "domain", "average": "first_fit"}),
    (
        "ado-guarded",
        {
            "kind": "ado",
            "guardrails": [
                {"kind": "floor", "min_prob": 0.05},
                {"kind": "max_change", "max_l1": 0.2},
                {"kind": "fallback"},
                {"kind": "token_budget", "budgets": {"web": 1e12}},
            ],
        },
        SHORT,
    ),
]

_ODD: list[Any] = [
    None,
    "12",
    True,
    math.nan,
    math.inf,
    -math.inf,
    -1,
    -1.0,
    0,
    2**64,
    -(2**64),
    1e308,
    [],
    {},
    [None],
    "",
]


def _stats(t: int, rng: np.random.Generator) -> Any:
    from ado.stats import StepStats

    counts = rng.multinomial(24, [0.5, 0.3, 0.2]).astype(np.float64)
    loss = np.array([2.0, 1.0, 2.5]) + np.array([3.0, 4.0, 1.0]) * (t + 1.0) ** -0.5
    loss = loss * np.exp(0.02 * rng.standard_normal(3))
    return StepStats(
        step=t,
        counts=counts,
        loss_sums=counts * loss,
        token_counts=counts * 100,
        ref_loss_sums=counts * (loss - 0.3),
    )


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into ``node`` (containers and leaves)."""
    out = [path]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _leaves(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _leaves(v, (*path, i))
    return out


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        node = node[p]
    return node


def mutate(state: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """``state`` with one to three random edits (a deep copy; ``state`` is not touched)."""
    out = copy.deepcopy(state)
    for _ in range(int(rng.integers(1, 4))):
        paths = [p for p in _leaves(out) if p]
        if not paths:
            break
        path = paths[int(rng.integers(len(paths)))]
        parent, key = _get(out, path[:-1]), path[-1]
        value = parent[key]
        op = int(rng.integers(10))
        if op == 0 and isinstance(parent, dict):
            del parent[key]
        elif op == 1 and isinstance(value, list) and value:
            parent[key] = value[: int(rng.integers(len(value)))]  # truncated
        elif op == 2 and isinstance(value, list):
            grow = value * int(rng.integers(2, 6)) if value else [1.0]
            parent[key] = grow if rng.random() < 0.9 else value * 200_000  # grown, or huge
        elif op == 3 and isinstance(value, int | float) and not isinstance(value, bool):
            parent[key] = value * float(rng.choice([-1.0, 0.0, 2.0, 1e300, 0.5]))
        elif op == 4 and isinstance(value, int) and not isinstance(value, bool):
            parent[key] = value + int(rng.integers(-3, 4))
        elif op == 5 and isinstance(value, list) and value:
            parent[key] = list(np.asarray(rng.permutation(len(value))).tolist())
        elif op == 6 and isinstance(value, dict) and value:
            k = list(value)[int(rng.integers(len(value)))]
            value[k + "_x"] = value.pop(k)  # renamed field
        else:
            parent[key] = copy.deepcopy(_ODD[int(rng.integers(len(_ODD)))])
    return out


def _make(label: str, source: Any, overrides: dict[str, Any]) -> Any:
    from ado.policy import load_policy

    return load_policy(source, domains=NAMES, prior=[0.5, 0.3, 0.2], overrides=overrides)


def _is_distribution(w: Any) -> bool:
    arr = np.asarray(w)
    return bool(
        arr.shape == (3,)
        and np.isfinite(arr).all()
        and arr.min() >= 0
        and abs(arr.sum() - 1) < 1e-9
    )


def fuzz(cases: int, seed: int = 0, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run ``cases`` cases spread over :data:`POLICIES`; returns the tallies and failures."""
    from ado.errors import AdoError

    rng = np.random.default_rng(seed)
    tally: Counter[str] = Counter()
    failures: list[str] = []
    setups = []
    for label, source, overrides in POLICIES:
        policy = _make(label, source, overrides)
        for t in range(37):
            policy.update(_stats(t, rng))
        setups.append((label, policy, policy.state_dict()))
    for case in range(cases):
        label, policy, base = setups[case % len(setups)]
        policy.load_state_dict(base)
        state = mutate(base, rng)
        stage = "load"
        try:
            policy.load_state_dict(state)
            tally[f"{label}: accepted"] += 1
            stage = "update"
            step = max(policy.step, 36) + 1
            for t in range(step, step + 3):
                try:
                    policy.update(_stats(t, rng))
                except AdoError:
                    tally[f"{label}: update refused"] += 1
                    break
                if not _is_distribution(policy.weights):
                    failures.append(f"{label} case {case}: weights {policy.weights.tolist()}")
                    break
        except AdoError:
            if stage == "load":
                tally[f"{label}: load refused"] += 1
                if policy.state_dict() != base:
                    failures.append(f"{label} case {case}: a refused load changed the policy")
        except BaseException as err:
            if isinstance(err, KeyboardInterrupt):
                raise
            failures.append(
                f"{label} case {case} ({stage}): {type(err).__module__}."
                f"{type(err).__name__}: {str(err)[:200]}"
            )
        if log is not None and (case + 1) % 10_000 == 0:
            log(f"{case + 1} cases, {len(failures)} failures")
    return {"cases": cases, "tally": dict(sorted(tally.items())), "failures": failures}


def main() -> None:
    """Run the fuzzer and print the tallies."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    out = fuzz(args.cases, args.seed, log=lambda s: print(s, file=sys.stderr, flush=True))
    for key, n in out["tally"].items():
        print(f"{key:<40} {n:>8}")
    for line in out["failures"][:50]:
        print("FAILURE", line)
    print(
        f"{out['cases']} cases in {time.perf_counter() - start:.0f} s, "
        f"{len(out['failures'])} failures"
    )
    sys.exit(1 if out["failures"] else 0)


if __name__ == "__main__":
    main()
