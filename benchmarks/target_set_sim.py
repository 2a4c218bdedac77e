"""A held-out target set in the simulator: does ADO with ``target_set`` lower the target loss
below plain ADO and natural? (issue 24, sections 2 and 3).

The domains of ``benchmarks/transfer_sim.py`` (``tests/policy/test_transfer.py::transfer_spec``):
``a`` and ``b`` share structure, ``d`` helps ``c`` (1.5 per sample, more than ``c`` itself),
``noise`` is flat. The target is ``c``'s loss. Plain ADO gets ``target: {c: 1}`` (it can only
credit ``c`` itself); ADO with ``target_set`` gets the same and, every ``--every`` steps, the
held-out target loss: ``c``'s noise-free loss at that point times the noise of a mean over
``--eval-samples`` samples (lognormal, sigma = the domains' per-sample noise / sqrt(samples)).
Per seed and noise level: the final noise-free target loss under each policy.

    python benchmarks/target_set_sim.py --seeds 0 1 2 3 4 --noise 0 0.005
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
from ado import load_policy
from ado.policy import Policy
from ado.sim import SimSpec, simulate
from ado.stats import StepStats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "policy"))
from test_transfer import LOOP, transfer_spec  # noqa: E402


def target_losses(spec: SimSpec, counts: np.ndarray) -> np.ndarray:
    """Noise-free losses after training on ``counts`` samples per domain (the simulator's law)."""
    eps = np.array([d.eps for d in spec.domains])
    beta = np.array([d.beta for d in spec.domains])
    alpha = np.array([d.alpha for d in spec.domains])
    out: np.ndarray = eps + beta * (spec.n0 + spec.transfer_matrix() @ counts) ** -alpha
    return out


def run(
    policy: Policy, spec: SimSpec, steps: int, seed: int, every: int, sigma: float
) -> float:
    """The final noise-free target (``c``) loss; feeds the held-out target every ``every``
    steps when the policy asks for it."""
    c = spec.names.index("c")
    seen = np.zeros(len(spec.names))
    rng = np.random.default_rng([seed, 0x7A6E])
    wants = "target_set" in policy.config.harness_needs()
    inner_update = policy.update

    def update(stats: StepStats) -> None:
        seen[:] += stats.counts
        inner_update(stats)

    policy.update = update  # type: ignore[method-assign]

    def on_step(t: int, p: Any) -> None:
        if wants and (t + 1) % every == 0:
            loss = target_losses(spec, seen)[c] * float(np.exp(sigma * rng.standard_normal()))
            p.observe_target(t, loss)

    res = simulate(policy, spec, steps, seed=seed, on_step=on_step)
    return float(res.final_loss[c])


def main() -> None:
    """Print one line per (noise, seed) and the means."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.005])
    parser.add_argument("--every", type=int, default=25)
    parser.add_argument("--eval-samples", type=int, default=64)
    args = parser.parse_args()
    policies = ROOT / "policies"
    for noise in args.noise:
        spec = transfer_spec(noise)
        sigma = noise / np.sqrt(args.eval_samples)
        print(f"noise {noise}: target loss natural / ado (target c) / ado + target_set")
        rows = []
        for seed in args.seeds:
            losses = []
            for mode in ("natural", "ado", "target_set"):
                if mode == "natural":
                    p = load_policy(policies / "natural.yaml", domains=spec.names)
                else:
                    over: dict[str, object] = {**LOOP, "target": {"c": 1.0}}
                    if mode == "target_set":
                        over["target_set"] = {"every": args.every}
                    p = load_policy(policies / "ado.yaml", domains=spec.names, overrides=over)
                losses.append(run(p, spec, args.steps, seed, args.every, sigma))
            rows.append(losses)
            print(f"  seed {seed}: target {losses[0]:.4f} / {losses[1]:.4f} / {losses[2]:.4f}",
                  flush=True)
        mean = np.mean(rows, axis=0)
        print(f"  mean: target {mean[0]:.4f} / {mean[1]:.4f} / {mean[2]:.4f}", flush=True)


if __name__ == "__main__":
    main()
