"""ADO ablation: the reference, the default, and the default with each departure switched back.

Every variant is `policies/ado.yaml` with one field set back to the reference's value (the
variant files are written to ``OUT-variants/`` beside ``OUT``); `policies/ado-reference.yaml`
and `natural` run beside them. All ADO variants get the same schedule (the preset's, as in
``ado compare``), and every policy trains the same model from the same seeds, so each variant's
held-out loss is paired per seed against `natural`. The table goes to ``OUT/ablation.md`` and
``OUT/ablation.json``; the runs, report and plots (weights over time, mean and band over seeds)
are ``ado compare``'s.

    python benchmarks/ado_ablation.py --corpus .cache/corpora/debian-8mb \\
        --out runs/ado-ablation --seeds 0 1 2 --jobs 2

A killed ablation resumes when the same command is run again (finished runs are kept).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from ado.compare import PRESETS, CompareConfig, run_compare
from ado.compare.report import paired_interval

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ROOT / "policies"

#: Departure of ``ado.yaml`` -> the fields that switch it back to the reference's behaviour.
DEPARTURES: dict[str, tuple[dict[str, Any], str]] = {
    "average": (
        {"average": "step"},
        "pi_bar averaged over every step (the prior keeps the weight of the steps before the "
        "first fit) instead of from the first fit on with prior_weight 1",
    ),
    "alpha_floor": ({"alpha_floor": 0.05}, "alpha floored at 0.05 in the slope"),
    "fit": ({"fit": "reference"}, "the reference's fit objective (log-space penalties)"),
    "min_points": ({"min_points": 3}, "fit on as few as 3 points"),
    "max_points": ({"max_points": None}, "unbounded fit memory"),
}


def write_variants(folder: Path, names: list[str]) -> list[Path]:
    """``ado-no-<departure>.yaml`` for each name: ``ado.yaml`` with that departure switched back."""
    folder.mkdir(parents=True, exist_ok=True)
    base = yaml.safe_load((POLICIES / "ado.yaml").read_text())
    paths = []
    for name in names:
        change, what = DEPARTURES[name]
        path = folder / f"ado-no-{name}.yaml"
        text = (
            f"# policies/ado.yaml with one departure switched back: {what}.\n"
            f"# Written by benchmarks/ado_ablation.py.\n"
            + yaml.safe_dump({**base, **change}, sort_keys=False)
        )
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        paths.append(path)
    return paths


def _row(runs: list[dict[str, Any]], policy: str, natural: dict[int, dict[str, Any]]) -> dict:
    mine = {r["seed"]: r for r in runs if r["policy"] == policy}
    seeds = sorted(mine)
    ua = [mine[s]["uniform_avg"] for s in seeds]
    na = [mine[s]["natural_avg"] for s in seeds]
    paired = [mine[s]["uniform_avg"] - natural[s]["uniform_avg"] for s in seeds if s in natural]
    paired_nat = [mine[s]["natural_avg"] - natural[s]["natural_avg"] for s in seeds if s in natural]
    nat_std = float(np.std([natural[s]["uniform_avg"] for s in seeds], ddof=1))
    std = float(np.std(ua, ddof=1)) if len(ua) > 1 else float("nan")
    return {
        "policy": policy,
        "seeds": seeds,
        "uniform_avg": ua,
        "natural_avg": na,
        "uniform_avg_mean": float(np.mean(ua)),
        "uniform_avg_std": std,
        "natural_avg_mean": float(np.mean(na)),
        "paired_delta_uniform": paired,
        "paired_delta_uniform_mean": float(np.mean(paired)),
        "paired_delta_uniform_rel": float(
            np.mean(paired) / np.mean([natural[s]["uniform_avg"] for s in seeds])
        ),
        "paired_ci95_uniform": paired_interval(paired),
        "paired_delta_natural": paired_nat,
        "paired_delta_natural_mean": float(np.mean(paired_nat)),
        "paired_ci95_natural": paired_interval(paired_nat),
        "spread_vs_natural": std / nat_std if nat_std > 0 else float("nan"),
    }


def table(report: dict[str, Any], labels: dict[str, str]) -> tuple[list[dict], str]:
    """Rows (one per policy) and the Markdown table."""
    runs = report["runs"]
    natural = {r["seed"]: r for r in runs if r["policy"] == "natural"}
    rows = [_row(runs, p, natural) for p in labels]

    def ci(x: tuple[float, float] | None) -> str:
        return f"[{x[0]:+.3f}, {x[1]:+.3f}]" if x else "-"

    lines = [
        "| variant | what differs from `ado.yaml` | uniform avg (mean ± std) | Δ uniform vs "
        "natural, per seed | mean Δ (95 % CI) | natural avg | Δ natural avg (95 % CI) | "
        "seed std / natural's |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| `{row['policy']}` | {labels[row['policy']]} | "
            f"{row['uniform_avg_mean']:.4f} ± {row['uniform_avg_std']:.4f} | "
            + ", ".join(f"{d:+.3f}" for d in row["paired_delta_uniform"])
            + f" | {row['paired_delta_uniform_mean']:+.4f} "
            f"({100 * row['paired_delta_uniform_rel']:+.2f} %) "
            f"{ci(row['paired_ci95_uniform'])} | {row['natural_avg_mean']:.4f} | "
            f"{row['paired_delta_natural_mean']:+.4f} {ci(row['paired_ci95_natural'])} | "
            f"{row['spread_vs_natural']:.1f}x |"
        )
    return rows, "\n".join(lines)


def main() -> None:
    """Train what is missing, then write the ablation table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True, help="a built corpus folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu-full")
    parser.add_argument("--steps", type=int, default=None, help="override the preset's steps")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--departures",
        nargs="*",
        choices=sorted(DEPARTURES),
        default=list(DEPARTURES),
        help="departures to switch back one at a time (default: all)",
    )
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()

    preset = PRESETS[args.preset]
    if args.steps is not None:
        preset = preset.scaled(args.steps)
    variants = write_variants(args.out.parent / f"{args.out.name}-variants", args.departures)
    labels = {
        "ado-reference": "the reference (`policies/ado-reference.yaml`)",
        "ado": "— (the default)",
        **{p.stem: DEPARTURES[n][1] for p, n in zip(variants, args.departures, strict=True)},
    }
    policies = [POLICIES / "natural.yaml", POLICIES / "ado-reference.yaml", POLICIES / "ado.yaml"]
    cfg = CompareConfig(
        corpus=args.corpus,
        policies=[*policies, *variants],
        preset=preset,
        out=args.out,
        seeds=args.seeds,
        progress=not args.no_progress,
        command="python benchmarks/ado_ablation.py " + shlex.join(sys.argv[1:]),
        jobs=args.jobs,
        threads=args.threads,
    )
    report = run_compare(cfg)
    rows, md = table(report, labels)
    (args.out / "ablation.json").write_text(
        json.dumps({"command": cfg.command, "preset": preset.model_dump(), "rows": rows}, indent=2)
        + "\n"
    )
    (args.out / "ablation.md").write_text(
        "# ADO ablation\n\n"
        f"Preset `{preset.name}` ({preset.steps} steps), seeds {args.seeds}, corpus "
        f"`{args.corpus}`. Held-out loss in nats/token; Δ = variant - natural on the same seed "
        "(same model init, data seed and held-out rows); the interval is a paired Student-t "
        "95 % interval of the mean Δ. ADO schedule for every variant: "
        + ", ".join(f"`{k}={v}`" for k, v in preset.ado_overrides.items())
        + ".\n\n"
        + md
        + f"\n\nCommand: `{cfg.command}`\n"
    )
    print(md)


if __name__ == "__main__":
    main()
