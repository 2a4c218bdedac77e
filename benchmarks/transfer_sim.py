"""Transfer in the simulator: does the estimator recover A, and does ADO with transfer lower the
target loss? (issue 24, section 3).

Domains (``tests/policy/test_transfer.py::transfer_spec``): ``a`` and ``b`` share structure (0.6
each way), ``d`` helps ``c`` (1.5 per sample, more than ``c`` itself), ``noise`` is flat. Target:
``c``. ADO's schedule: first fit at step 200, a refit every 200 steps (``LOOP``); 6000 steps.
Per seed and per-sample noise level: the mean absolute error of A on the learnable domains every
1000 steps (the identity's error is 0.169), and the target loss (c's final noise-free loss) under
natural, plain ADO (target c) and ADO with transfer (target c).

    python benchmarks/transfer_sim.py --seeds 0 1 2 3 4 --noise 0 0.005
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from ado import load_policy
from ado.policy import ADO
from ado.sim import simulate

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "policy"))
from test_transfer import LOOP, relative_truth, transfer_spec  # noqa: E402


def main() -> None:
    """Print one line per (noise, seed) and the means."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.005])
    args = parser.parse_args()
    policies = ROOT / "policies"
    for noise in args.noise:
        spec = transfer_spec(noise)
        truth = relative_truth(spec)[:4, :4]
        c = spec.names.index("c")
        print(f"noise {noise}: A error every 1000 steps; target loss natural / ado / ado+transfer")
        rows = []
        for seed in args.seeds:
            losses = []
            errors: list[float] = []
            for transfer in (None, False, True):
                if transfer is None:
                    p = load_policy(policies / "natural.yaml", domains=spec.names)
                else:
                    over: dict[str, object] = {**LOOP, "target": {"c": 1.0}}
                    if transfer:
                        over["transfer"] = {}
                    p = load_policy(policies / "ado.yaml", domains=spec.names, overrides=over)

                def on_step(
                    t: int,
                    q: object,
                    p: object = p,
                    truth: np.ndarray = truth,
                    errors: list[float] = errors,
                ) -> None:
                    if isinstance(p, ADO) and p.transfer is not None and t % 1000 == 999:
                        err = np.abs(p.transfer.matrix()[:4, :4] - truth).mean()
                        errors.append(float(err))

                res = simulate(p, spec, args.steps, seed=seed, on_step=on_step)
                losses.append(float(res.final_loss[c]))
            rows.append((errors, losses))
            print(f"  seed {seed}: error {[round(e, 3) for e in errors]}; "
                  f"target {losses[0]:.4f} / {losses[1]:.4f} / {losses[2]:.4f}")
        err = np.mean([r[0] for r in rows], axis=0)
        loss = np.mean([r[1] for r in rows], axis=0)
        print(f"  mean: error {[round(float(e), 3) for e in err]}; "
              f"target {loss[0]:.4f} / {loss[1]:.4f} / {loss[2]:.4f}")


if __name__ == "__main__":
    main()
