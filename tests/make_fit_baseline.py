"""Regenerate ``tests/fit_baseline.json``: the best objective of the 512-start L-BFGS-B baseline
(``ado.estimators.baseline.multistart_fit``) on every seeded test curve.

The baseline is slow (seconds per curve), so the default test suite compares against these stored
values; ``pytest -m slow`` recomputes all of them live, and the default suite recomputes two.

Run: ``python -m tests.make_fit_baseline``
"""

from __future__ import annotations

import json
from pathlib import Path

from ado.estimators import FitConfig
from ado.estimators.baseline import multistart_fit

from tests.curves import CASES, curve_checksum, make_curve

OUT = Path(__file__).with_name("fit_baseline.json")


def main() -> None:
    """Compute and write the table."""
    rows = []
    for config_name, kind, seed in CASES:
        config = FitConfig.reference() if config_name == "reference" else FitConfig()
        n, losses = make_curve(kind, seed)
        base = multistart_fit(n, losses, config)
        rows.append(
            {
                "config": config_name,
                "kind": kind,
                "seed": seed,
                "checksum": curve_checksum(n, losses),
                "objective": base.objective,
                "theta": base.theta.tolist(),
            }
        )
        print(config_name, kind, seed, base.objective)
    OUT.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
