"""The README's tables: the re-tuned temperature (T = 3.33) and ODM (beta = 0.5) baselines on the
debian corpus (``cpu-full``, seeds 0-2), paired by seed against natural and against the former
settings (T = 2, beta = 0.9), whose runs are those of ``../debian-cpu-full/`` (the same corpus:
its shard sha256 equal that folder's ``corpus.json``).

    python benchmarks/results/baselines-debian/tables.py [report.json of the new runs]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # benchmarks/
from ado_ablation import paired_table  # noqa: E402

#: The committed comparison's policies under the names of their settings.
FORMER = {"natural": "natural", "temperature": "temperature-T2", "odm": "odm-beta0.9"}


def merged(new: dict) -> dict:
    """The new runs plus natural and the former settings' runs of ``../debian-cpu-full``."""
    old = json.loads((HERE.parent / "debian-cpu-full" / "report.json").read_text())
    runs = [{**r, "policy": FORMER[r["policy"]]} for r in old["runs"] if r["policy"] in FORMER]
    return {**new, "runs": runs + new["runs"]}


def main() -> None:
    """Print the per-policy means and both paired tables (Markdown)."""
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "report.json"
    report = merged(json.loads(path.read_text()))
    ood = report["ood_sets"]
    print("| policy | seeds | uniform avg | natural avg | " + " | ".join(ood) + " |")
    print("|---|---|---|---|" + "---|" * len(ood))
    names = dict.fromkeys(r["policy"] for r in report["runs"])
    for name in names:
        runs = sorted((r for r in report["runs"] if r["policy"] == name), key=lambda r: r["seed"])
        values = [
            [r["uniform_avg"], r["natural_avg"], *(r["ood_loss"][s] for s in ood)] for r in runs
        ]
        means = [sum(col) / len(col) for col in zip(*values, strict=True)]
        seeds = ",".join(str(r["seed"]) for r in runs)
        print(f"| {name} | {seeds} | " + " | ".join(f"{m:.4f}" for m in means) + " |")
    print()
    print(paired_table(report, ["temperature-T3.3"], ["natural", "temperature-T2"]))
    print()
    print(paired_table(report, ["odm-beta0.5"], ["natural", "odm-beta0.9"]))


if __name__ == "__main__":
    main()
