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
from ado import StepStats, load_policy
from ado.compare import PRESETS, CompareConfig, run_compare
from ado.compare.report import paired_interval
from ado.data import Manifest
from ado.policy import load_policy_config
from ado.runlog import read_records
from ado.torch.train import natural_prior

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ROOT / "policies"

#: What switching a field back to the reference's value means (for the table).
WHAT = {
    "average": "pi_bar averaged over every step (the prior keeps the weight of the steps before "
    "the first fit) instead of from the first fit on with prior_weight 1",
    "alpha_floor": "alpha floored at 0.05 in the slope",
    "fit": "the reference's fit objective (log-space penalties)",
    "min_points": "fit on as few as 3 points",
    "max_points": "unbounded fit memory",
}


def departures(overrides: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each field in which ``ado.yaml`` departs from ``ado-reference.yaml`` (both under the
    preset's schedule ``overrides``) → the change that switches it back."""
    ado, ref = (
        load_policy_config(POLICIES / name, overrides).model_dump(mode="json")
        for name in ("ado.yaml", "ado-reference.yaml")
    )
    return {k: {k: ref[k]} for k in ado if ado[k] != ref[k]}


def write_variants(folder: Path, changes: dict[str, dict[str, Any]]) -> list[Path]:
    """``ado-no-<field>.yaml`` per departure: ``ado.yaml`` with that departure switched back."""
    folder.mkdir(parents=True, exist_ok=True)
    base = yaml.safe_load((POLICIES / "ado.yaml").read_text())
    paths = []
    for name, change in changes.items():
        what = WHAT.get(name, f"{name} = {change[name]!r}")
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


def _logged_steps(folder: Path) -> list[StepStats]:
    """The statistics a finished run's policy was given, from its run log (or, for runs logged
    before the run log had step records, from compare's former ``steps.jsonl``)."""
    records = [r for r in read_records(folder / "train.jsonl") if r.get("event") == "step"]
    if records:
        return [StepStats.from_dict(r) for r in records]
    legacy = read_records(folder / "steps.jsonl")  # "step" counted the steps done
    return [StepStats.from_dict({**r, "step": r["step"] - 1}) for r in legacy]


def same_on_replay(
    out: Path, corpus: Path, overrides: dict[str, Any], change: dict[str, Any]
) -> tuple[int, int, int | None]:
    """Replay every finished run of the default through ``ado.yaml`` and through ``ado.yaml``
    with ``change``. Equal weights after every step mean the variant's runs would be the
    default's runs (same seed: same batches, same losses, same weights, by induction).

    Returns:
        (runs replayed, steps replayed, first step where the weights differ or None).
    """
    manifest = Manifest.load(corpus / "manifest.yaml")
    prior = natural_prior(manifest)
    base = yaml.safe_load((POLICIES / "ado.yaml").read_text())
    runs = steps = 0
    for result in sorted((out / "runs" / "ado").glob("seed*/result.json")):
        a = load_policy(base, domains=manifest.names, prior=prior, overrides=overrides)
        b = load_policy(
            {**base, **change}, domains=manifest.names, prior=prior, overrides=overrides
        )
        for stats in _logged_steps(result.parent):
            a.update(stats)
            b.update(stats)
            steps += 1
            if not np.array_equal(a.weights, b.weights):
                return runs, steps, stats.step
        runs += 1
    return runs, steps, None


def _describe(path: Path) -> str:
    """A policy file's first comment line, without its ``policies/ado.yaml with`` prefix."""
    first = path.read_text().splitlines()[0].lstrip("# ").strip()
    return first.removeprefix("policies/ado.yaml with ").rstrip(".") or path.name


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


def paired_table(report: dict[str, Any], policies: list[str], baselines: list[str]) -> str:
    """Every policy against every baseline, paired by seed, metric by metric: the in-domain
    uniform and natural averages and each out-of-distribution set (Markdown)."""
    runs = report["runs"]
    ood = report.get("ood_sets") or []
    metrics = ["uniform_avg", "natural_avg", *ood]

    def value(run: dict[str, Any], metric: str) -> float:
        return float(run[metric] if metric in ("uniform_avg", "natural_avg") else
                     run["ood_loss"][metric])

    by = {(r["policy"], r["seed"]): r for r in runs}
    lines = [
        "| comparison | metric | mean Δ | per seed | 95 % interval | lower on |",
        "|---|---|---|---|---|---|",
    ]
    for a in policies:
        for b in baselines:
            if a == b:
                continue
            seeds = sorted(s for (p, s) in by if p == a and (b, s) in by)
            if not seeds:
                continue
            for m in metrics:
                d = [value(by[(a, s)], m) - value(by[(b, s)], m) for s in seeds]
                ci = paired_interval(d)
                interval = f"[{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else "-"
                per = ", ".join(f"{s}: {x:+.4f}" for s, x in zip(seeds, d, strict=True))
                lines.append(
                    f"| `{a}` vs `{b}` | {m} | {np.mean(d):+.4f} | {per} | {interval} | "
                    f"{sum(x < 0 for x in d)} of {len(d)} |"
                )
    return "\n".join(lines)


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
        default=None,
        help="fields to switch back one at a time (default: every field in which ado.yaml "
        "departs from ado-reference.yaml under the preset's schedule)",
    )
    parser.add_argument(
        "--extra",
        nargs="*",
        type=Path,
        default=[],
        help="more policy files trained and tabulated beside the variants (e.g. a candidate "
        "default with several departures switched back); the first comment line describes it",
    )
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()

    preset = PRESETS[args.preset]
    if args.steps is not None:
        preset = preset.scaled(args.steps)
    found = departures(preset.ado_overrides)
    unknown = set(args.departures or ()) - set(found)
    if unknown:
        parser.error(f"not departures of ado.yaml: {sorted(unknown)}; they are {sorted(found)}")
    wanted = found if args.departures is None else {k: found[k] for k in args.departures}
    variants = write_variants(args.out.parent / f"{args.out.name}-variants", wanted)
    labels = {
        "ado-reference": "the reference (`policies/ado-reference.yaml`)",
        "ado": "— (the default)",
        **{f"ado-no-{k}": WHAT.get(k, f"{k} = {v[k]!r}") for k, v in wanted.items()},
        **{p.stem: _describe(p) for p in args.extra},
    }
    policies = [POLICIES / "natural.yaml", POLICIES / "ado-reference.yaml", POLICIES / "ado.yaml"]
    cfg = CompareConfig(
        corpus=args.corpus,
        policies=[*policies, *variants, *args.extra],
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
    paired = paired_table(report, list(labels), ["ado-reference", "natural"])
    checked = []
    for name, change in found.items():
        if name in wanted:
            continue
        runs, steps, differs = same_on_replay(args.out, args.corpus, preset.ado_overrides, change)
        checked.append(
            {"departure": name, "change": change, "runs": runs, "steps": steps, "differs": differs}
        )
    notes = [
        f"- `{c['departure']}` switched back ({WHAT.get(c['departure'], '')}): "
        + (
            f"not trained: replaying the {c['runs']} runs of the default ({c['steps']} steps) "
            "through both gives bitwise the same weights after every step, so its runs are the "
            "default's."
            if c["differs"] is None and c["runs"]
            else f"NOT the same as the default (weights differ at step {c['differs']}); train it "
            f"with --departures {c['departure']}."
        )
        for c in checked
    ]
    (args.out / "ablation.json").write_text(
        json.dumps(
            {
                "command": cfg.command,
                "preset": preset.describe(),
                "rows": rows,
                "untrained_departures": checked,
            },
            indent=2,
        )
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
        + "\n\nPaired by seed against `ado-reference` and `natural`, metric by metric (in-domain "
        "averages and each out-of-distribution set):\n\n"
        + paired
        + ("\n\nDepartures not trained:\n\n" + "\n".join(notes) if notes else "")
        + f"\n\nCommand: `{cfg.command}`\n"
    )
    print(md)
    print()
    print(paired)
    print("\n".join(notes))


if __name__ == "__main__":
    main()
