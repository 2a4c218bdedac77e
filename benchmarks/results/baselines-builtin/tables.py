"""The README's tables: each candidate's in-domain and out-of-distribution losses on seed 0 (the
choice), and the paired differences over seeds 0-2 against natural and the former setting.

    python benchmarks/results/baselines-builtin/tables.py [report.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # benchmarks/
from ado_ablation import paired_table  # noqa: E402


def main() -> None:
    """Print both tables (Markdown)."""
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "report.json"
    report = json.loads(path.read_text())
    ood = report["ood_sets"]
    print("| policy (seed 0) | uniform avg | w/o noise | " + " | ".join(ood) + " |")
    print("|---|---|---|" + "---|" * len(ood))
    for run in report["runs"]:
        if run["seed"] != 0:
            continue
        held = run["heldout_loss"]
        learnable = [v for k, v in held.items() if k not in report["noise_domains"]]
        cells = [f"{run['uniform_avg']:.4f}", f"{sum(learnable) / len(learnable):.4f}"]
        cells += [f"{run['ood_loss'][s]:.4f}" for s in ood]
        print(f"| {run['policy']} | " + " | ".join(cells) + " |")
    print()
    print(paired_table(report, ["temperature-T3.3"], ["natural", "temperature-T2"]))
    print()
    print(paired_table(report, ["odm-beta0.5"], ["natural", "odm-beta0.9"]))


if __name__ == "__main__":
    main()
