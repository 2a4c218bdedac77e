"""``ado replay``: feed a logged run's statistics through another policy."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ado.cli._common import add_override_arg, parse_overrides
from ado.policy import resolve_policy
from ado.sim import replay

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``replay`` subcommand."""
    p: argparse.ArgumentParser = sub.add_parser(
        "replay",
        help="replay a run log through another policy",
        description="Reads RUN.jsonl (as written by 'ado simulate': a header with the domains and "
        "prior, then one record per step with counts and loss_sums) and writes, per step, the "
        "weights POLICY would have chosen for the next batch.",
    )
    p.add_argument("run", type=Path, help="run log (JSONL)")
    p.add_argument(
        "--policy",
        required=True,
        help="preset name (e.g. ado) or policy YAML file",
    )
    p.add_argument("--out", type=Path, help="output JSONL (default: RUN.<policy>.replay.jsonl)")
    add_override_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Replay and report where the weights went."""
    path = resolve_policy(args.policy)
    out = args.out or args.run.with_name(f"{args.run.stem}.{path.stem}.replay.jsonl")
    with out.open("w") as handle:
        policy = replay(args.run, path, handle, overrides=parse_overrides(args.overrides))
    print(f"replayed {policy.step + 1} steps through {args.policy} ({policy.config.kind})")
    for name, w in zip(policy.domains, policy.weights, strict=True):
        print(f"{name:<16}{w:>10.4f}")
    print(f"wrote {out}")
    return 0
