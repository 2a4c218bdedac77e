"""Simulator acceptance figures: ADO (policies/ado.yaml) vs uniform on 4 learnable + 1 noise domain.

For each seed: the first-fit step, the noise domain's weight two refits after it and its maximum
from then on, and the mean final loss of ADO and of uniform. ``--set alpha_floor=0`` is ado.yaml's
option for unlearnable domains (without it, the exponent floor keeps the noise domain near its
prior share); ``--set average=first_fit`` forgets the prior after the first fit.

    python benchmarks/sim_acceptance.py --steps 5000 --seeds 0 1 2 3 4 --set alpha_floor=0
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ado import Policy, load_policy
from ado.cli._common import add_override_arg, parse_overrides
from ado.policy import ADO
from ado.sim import default_spec, simulate

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    """Print one line per seed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--policy", type=Path, default=ROOT / "policies" / "ado.yaml")
    add_override_arg(parser)
    args = parser.parse_args()
    overrides = parse_overrides(args.overrides)
    spec = default_spec()
    noise = spec.names.index("noise")
    print(
        f"{'seed':>4} {'first fit':>9} {'w_noise@+2 refits':>18} {'max after':>10} "
        f"{'ADO loss':>9} {'uniform loss':>13}"
    )
    for seed in args.seeds:
        ado = load_policy(args.policy, domains=spec.names, prior=spec.prior(), overrides=overrides)
        assert isinstance(ado, ADO)
        first: list[int] = []

        def on_step(t: int, p: Policy, ado: ADO = ado, first: list[int] = first) -> None:
            if not first and ado.estimator.num_fits:
                first.append(t)

        res = simulate(ado, spec, args.steps, seed=seed, on_step=on_step)
        after = first[0] + 2 * ado.config.update_interval + 1
        uni = simulate(
            load_policy(ROOT / "policies" / "uniform.yaml", domains=spec.names, prior=spec.prior()),
            spec,
            args.steps,
            seed=seed,
        )
        print(
            f"{seed:>4} {first[0]:>9} {res.weights[after, noise]:>18.4f} "
            f"{res.weights[after:, noise].max():>10.4f} {res.mean_final_loss:>9.4f} "
            f"{uni.mean_final_loss:>13.4f}"
        )


if __name__ == "__main__":
    main()
