"""The README's two tables: mean over seeds per policy, and paired differences by seed.

Runs: ``runs/*.json`` here (one ``result.json`` of ``ado compare`` per policy and seed) plus the
per-seed runs of ``../debian-cpu-full/report.json`` (natural, ado, doremi with eta = 1: the same
corpus, model initialisation, data seed and held-out rows). Metrics: the unweighted mean of the
10 in-domain held-out losses (``uniform_avg``), the same weighted by the corpus's natural weights
(``natural_avg``) and each out-of-distribution set's loss. Intervals: Student-t 95 % over seeds
(``ado.compare.report.paired_interval``).

    python benchmarks/results/transfer-debian/tables.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from ado.compare.report import paired_interval

HERE = Path(__file__).resolve().parent
RENAME = {"doremi": "doremi-eta1"}
PAIRS = [
    ("ado-transfer", "natural"),
    ("ado-transfer", "ado"),
    ("doremi-eta0.1", "natural"),
    ("doremi-eta0.1", "ado"),
    ("doremi-eta0.1", "doremi-eta1"),
]


def main() -> None:
    """Print both tables (markdown)."""
    report = json.loads((HERE.parent / "debian-cpu-full" / "report.json").read_text())
    natural_w = report["natural_weights"]
    runs: dict[str, dict[int, dict[str, float]]] = {}

    def add(run: dict[str, Any], name: str) -> None:
        held = run["heldout_loss"]
        metrics = {
            "uniform_avg": float(np.mean(list(held.values()))),
            "natural_avg": float(sum(natural_w[d] * v for d, v in held.items())),
            **{k: float(v) for k, v in run["ood_loss"].items()},
        }
        runs.setdefault(name, {})[int(run["seed"])] = metrics

    for run in report["runs"]:
        if run["policy"] in ("natural", "ado", "doremi"):
            add(run, RENAME.get(run["policy"], run["policy"]))
    for path in sorted((HERE / "runs").glob("*.json")):  # <policy>-seed<k>.json
        add(json.loads(path.read_text()), path.stem.rsplit("-seed", 1)[0])
    names = ["uniform_avg", "natural_avg", *report["ood_sets"]]
    print("| policy | seeds | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for policy in ["natural", "ado", "ado-transfer", "doremi-eta0.1", "doremi-eta1"]:
        seeds = sorted(runs.get(policy, {}))
        cells = []
        for m in names:
            vals = [runs[policy][s][m] for s in seeds]
            std = f" ± {np.std(vals, ddof=1):.4f}" if len(vals) > 1 else ""
            cells.append(f"{np.mean(vals):.4f}{std}")
        print(f"| {policy} | {', '.join(map(str, seeds))} | " + " | ".join(cells) + " |")
    print()
    print("| comparison | metric | mean Δ | per seed | 95 % interval | lower on |")
    print("|---|---|---|---|---|---|")
    for a, b in PAIRS:
        seeds = sorted(set(runs.get(a, {})) & set(runs.get(b, {})))
        for m in names:
            deltas = [runs[a][s][m] - runs[b][s][m] for s in seeds]
            ci = paired_interval(deltas)
            interval = f"[{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else f"({len(seeds)} seed)"
            per = ", ".join(f"{s}: {d:+.4f}" for s, d in zip(seeds, deltas, strict=True))
            lower = sum(d < 0 for d in deltas)
            print(f"| {a} vs {b} | {m} | {np.mean(deltas):+.4f} | {per} | {interval} | "
                  f"{lower} of {len(seeds)} |")


if __name__ == "__main__":
    main()
