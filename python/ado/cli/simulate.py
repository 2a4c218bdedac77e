"""``ado simulate``: run a policy in closed loop against synthetic scaling-law domains."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from ado._deps import require
from ado.cli._common import add_override_arg, non_negative_int, parse_overrides, positive_int
from ado.errors import MissingDependencyError
from ado.policy import load_policy
from ado.sim import default_spec, load_spec, plot_weights, simulate

__all__ = ["register"]

logger = logging.getLogger(__name__)


def register(sub: Any) -> None:
    """Add the ``simulate`` subcommand."""
    p: argparse.ArgumentParser = sub.add_parser(
        "simulate",
        help="run a policy against synthetic domains (closed loop)",
        description="Each synthetic domain's loss is a power law of its own sample count plus "
        "noise (default: 4 learnable domains and a flat noise domain). Writes run.jsonl (weights "
        "and stats per step) and weights.png to --out, and prints the final weights and losses.",
    )
    p.add_argument(
        "--policy",
        required=True,
        help="preset name (e.g. ado) or policy YAML file",
    )
    p.add_argument("--domains", type=Path, help="simulator spec YAML (default: built-in 4+1)")
    p.add_argument("--steps", type=positive_int, default=6000, help="training steps (default 6000)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default 0)")
    p.add_argument("--out", type=Path, default=Path("runs/simulate"), help="output directory")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_override_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Simulate, write the artefacts, print a summary."""
    plot = not args.no_plot
    if plot:
        try:
            require("matplotlib", "plot", "the weights plot")
        except MissingDependencyError as err:  # known before the work, not after it
            logger.warning("%s; skipping weights.png", err)
            plot = False
    spec = load_spec(args.domains) if args.domains else default_spec()
    policy = load_policy(
        args.policy,
        domains=spec.names,
        prior=spec.prior(),
        overrides=parse_overrides(args.overrides),
    )
    args.out.mkdir(parents=True, exist_ok=True)
    log_path = args.out / "run.jsonl"
    with log_path.open("w") as log:
        result = simulate(
            policy, spec, args.steps, seed=args.seed, log=log, progress=not args.no_progress
        )
    print(f"policy {args.policy} ({policy.config.kind}), {args.steps} steps, seed {args.seed}")
    print(f"{'domain':<16}{'final weight':>14}{'final loss':>12}")
    for name, w, loss in zip(result.domains, result.final_weights, result.final_loss, strict=True):
        print(f"{name:<16}{w:>14.4f}{loss:>12.4f}")
    print(f"mean final loss: {result.mean_final_loss:.4f}")
    print(f"wrote {log_path}")
    if plot:
        png = args.out / "weights.png"
        plot_weights(result, png, title=f"{args.policy} (seed {args.seed})")
        print(f"wrote {png}")
    return 0
