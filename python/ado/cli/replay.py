"""``ado replay``: feed a logged run's statistics through another policy."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ado.cli._common import add_override_arg, parse_overrides
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
    p.add_argument("--policy", required=True, type=Path, help="policy YAML")
    p.add_argument("--out", type=Path, help="output JSONL (default: RUN.<policy>.replay.jsonl)")
    add_override_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Replay and report where the weights went."""
    out = args.out or args.run.with_name(f"{args.run.stem}.{args.policy.stem}.replay.jsonl")
    with out.open("w") as handle:
        policy = replay(args.run, args.policy, handle, overrides=parse_overrides(args.overrides))
    print(f"replayed {policy.step + 1} steps through {args.policy} ({policy.config.kind})")
    for name, w in zip(policy.domains, policy.weights, strict=True):
        print(f"{name:<16}{w:>10.4f}")
    print(f"wrote {out}")
    return 0
