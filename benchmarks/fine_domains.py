"""Does ADO get better with finer domains? ADO over the 10 named debian domains vs ADO over K
clusters of the whole corpus (``ado corpus cluster``), against natural, on the original domains'
held-out sets and the out-of-distribution sets.

Reads the per-seed results of the 10-domain comparison (its ``report.json``: ``natural`` and
``ado``) and the ``runs/ado/seed*/result.json`` of one ``ado compare`` per clustered corpus, and
writes ``OUT/summary.json``, ``OUT/summary.md`` and a heatmap of each clustered ADO's weights
(``OUT/weights-<label>.png``). Paired by seed (same model initialisation and data seed).

Run::

    python benchmarks/fine_domains.py --ten benchmarks/results/debian-cpu-full/report.json \\
        --clustered k32=/tmp/cmp-k32 k128=/tmp/cmp-k128 --out benchmarks/results/fine-domains
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from ado.compare.plots import weights_heatmap
from ado.compare.report import paired_interval


def _avg(losses: dict[str, float], weights: dict[str, float] | None = None) -> float:
    if weights is None:
        return float(np.mean(list(losses.values())))
    total = sum(weights[d] for d in losses)
    return float(sum(losses[d] * weights[d] for d in losses) / total)


def _row(r: dict[str, Any], natural: dict[str, float]) -> dict[str, Any]:
    return {
        "seed": int(r["seed"]),
        "uniform_avg": _avg(r["heldout_loss"]),
        "natural_avg": _avg(r["heldout_loss"], natural),
        "ood": dict(r.get("ood_loss") or {}),
        "policy_s_per_step": float(r["policy_seconds"]) / int(r["steps"]),
    }


def main() -> None:
    """Write the summary."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--ten", type=Path, required=True, help="report.json of the 10-domain compare")
    p.add_argument("--clustered", nargs="+", default=[], help="LABEL=compare-out-folder")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    ten = json.loads(args.ten.read_text())
    natural = ten["natural_weights"]
    arms: dict[str, list[dict[str, Any]]] = {
        name: [_row(r, natural) for r in ten["runs"] if r["policy"] == name]
        for name in ("natural", "ado")
    }
    folders: dict[str, Path] = {}
    for spec in args.clustered:
        label, folder = spec.split("=", 1)
        folders[label] = Path(folder)
        runs = sorted(Path(folder).glob("runs/ado/seed*/result.json"))
        arms[f"ado-{label}"] = [_row(json.loads(f.read_text()), natural) for f in runs]
    sets = sorted({o for rows in arms.values() for r in rows for o in r["ood"]})
    metrics = ["uniform_avg", "natural_avg", *(f"ood/{o}" for o in sets)]

    def value(r: dict[str, Any], m: str) -> float:
        return float(r["ood"][m[4:]] if m.startswith("ood/") else r[m])

    summary: dict[str, Any] = {"arms": {}, "paired": {}}
    for name, rows in arms.items():
        summary["arms"][name] = {
            "seeds": [r["seed"] for r in rows],
            **{m: float(np.mean([value(r, m) for r in rows])) if rows else None for m in metrics},
            "policy_s_per_step": float(np.mean([r["policy_s_per_step"] for r in rows]))
            if rows
            else None,
            "runs": rows,
        }
    for name in arms:
        if name == "natural" or not arms[name]:
            continue
        for base in ("natural", "ado"):
            if base == name:
                continue
            by_seed = {r["seed"]: r for r in arms[base]}
            pairs = [(r, by_seed[r["seed"]]) for r in arms[name] if r["seed"] in by_seed]
            out = {}
            for m in metrics:
                deltas = [value(a, m) - value(b, m) for a, b in pairs]
                ci = paired_interval(deltas)
                out[m] = {
                    "deltas": {str(a["seed"]): d for (a, _), d in zip(pairs, deltas, strict=True)},
                    "mean": float(np.mean(deltas)) if deltas else None,
                    "ci95": list(ci) if ci else None,
                    "lower_on": sum(d < 0 for d in deltas),
                }
            summary["paired"][f"{name} - {base}"] = out
    args.out.mkdir(parents=True, exist_ok=True)
    plots = []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for label, folder in folders.items():
        seeds = sorted(folder.glob("runs/ado/seed*"))
        seeds = [s for s in seeds if (s / "result.json").exists()]
        if seeds:
            clusters = json.loads((Path(_corpus_of(folder)) / "corpus.json").read_text())[
                "clusters"
            ]
            path = args.out / f"weights-{label}.png"
            weights_heatmap(plt, {f"ado over {label} clusters": seeds}, list(clusters), path)
            plots.append(path.name)
    summary["plots"] = plots
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [
        "| arm | seeds | in-domain uniform avg | in-domain natural avg | "
        + " | ".join(f"OOD {o}" for o in sets)
        + " | policy s/step |",
        "|---" * (5 + len(sets)) + "|",
    ]
    for name, a in summary["arms"].items():
        if not a["seeds"]:
            continue
        lines.append(
            f"| {name} | {','.join(map(str, a['seeds']))} | {a['uniform_avg']:.4f} | "
            f"{a['natural_avg']:.4f} | "
            + " | ".join(f"{a[f'ood/{o}']:.4f}" for o in sets)
            + f" | {a['policy_s_per_step'] * 1e3:.2f} ms |"
        )
    lines += [
        "",
        "Paired by seed (Δ = first - second; 95 % Student-t interval; lower on n seeds):",
        "",
    ]
    lines.append("| comparison | " + " | ".join(metrics) + " |")
    lines.append("|---" * (1 + len(metrics)) + "|")
    for key, out in summary["paired"].items():
        cells = []
        for m in metrics:
            s = out[m]
            if s["mean"] is None:
                cells.append("n/a")
                continue
            ci = f" [{s['ci95'][0]:+.3f}, {s['ci95'][1]:+.3f}]" if s["ci95"] else ""
            cells.append(f"{s['mean']:+.3f}{ci}, {s['lower_on']}/{len(s['deltas'])}")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _corpus_of(folder: Path) -> str:
    """The corpus a compare folder trained on (its ``compare.json``)."""
    return str(json.loads((folder / "compare.json").read_text())["corpus"])


if __name__ == "__main__":
    main()
