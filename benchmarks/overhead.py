"""Wall-time overhead of ADO against the same run with static weights, through each training stack.

For each stack (``own``: ``ado.torch.train``; ``hf``: the Hugging Face Trainer of
``train_hf.py``; ``lightning``: ``train_lightning.py``) both runs train the same tiny model from the
same seed for the same steps over the same ``MixtureLoader`` (synthetic 3-domain corpus from
``train_gpt.py``) through the same adapter (data mixer, loss tracker, one all-reduce per step); the
static run's policy keeps the prior weights. ADO refits every ``--interval`` steps (the preset
refits every 1000 steps; here the schedule is moved early and made 20x denser so refits happen
inside the run). Runs alternate (static, ADO, static, ADO, ...). Each run's log has every step's
wall time and the time inside ``policy.update``; printed per stack: the median step time of each
policy and their ratio, and ADO's time inside the policy per step (the per-step hot path, the
refits, and its mean as a share of a step). On a shared machine the wall ratio is noisy (±10 %
between identical runs); the policy time is measured directly and is the stable figure; it depends
only on the number of domains, not on the model (compare ``--n-embd 64`` and ``--n-embd 256``).

    python benchmarks/overhead.py                     # ~3-5 min on 2 cores
    python benchmarks/overhead.py --stacks hf lightning --steps 200 --repeats 2
    python benchmarks/overhead.py --steps 500 --repeats 5 --device cuda --dtype bf16
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from ado.runlog import read_run_log
from ado.torch import TrainConfig, train
from train_gpt import VOCAB, write_demo_corpus


def _stack(name: str) -> Callable[[TrainConfig], Any]:
    """The function that trains a config through stack ``name`` (its imports only when asked)."""
    if name == "hf":
        from train_hf import run as run_hf

        return run_hf
    if name == "lightning":
        from train_lightning import run as run_lightning

        return run_lightning
    return train


def _steps(log: Path) -> tuple[list[float], list[tuple[int, float]]]:
    """Per step of a run log: its wall seconds, and (step, seconds inside the policy)."""
    recs = read_run_log(log).events("step")
    return [r["step_s"] for r in recs], [(r["step"], r["policy_s"]) for r in recs]


def measure(
    stack: str, common: dict[str, Any], overrides: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    """Alternate static and ADO runs of one stack; their step times and ADO's policy time."""
    run = _stack(stack)
    with tempfile.TemporaryDirectory() as tmp:
        log = str(Path(tmp) / "run.jsonl")
        run(TrainConfig(**{**common, "steps": 20}, policy=None))  # warm-up (caches, kernels)
        static_ms: list[float] = []
        ado_ms: list[float] = []
        walls: dict[str, list[float]] = {"static": [], "ado": []}
        per_step: list[float] = []  # seconds inside policy.update, steps without a refit
        fits: list[float] = []  # the same, steps with a refit (it runs inside update)
        for _ in range(args.repeats):
            for name, cfg in (
                ("static", TrainConfig(**common, policy=None, log_path=log)),
                ("ado", TrainConfig(**common, policy="ado", overrides=overrides, log_path=log)),
            ):
                run(cfg)
                step_s, policy = _steps(Path(log))
                # the first steps pay for lazy setup in every stack; the steady state is after
                steady = step_s[5:]
                (static_ms if name == "static" else ado_ms).append(1e3 * statistics.median(steady))
                walls[name].append(sum(step_s))
                if name == "ado":
                    for t, sec in policy:
                        refit = t >= args.interval and t % args.interval == 0
                        (fits if refit else per_step).append(sec)
    step_static, step_ado = statistics.median(static_ms), statistics.median(ado_ms)
    policy_total = (sum(per_step) + sum(fits)) / args.repeats
    ado_wall = statistics.median(walls["ado"])
    return {
        "step_ms_static_median": round(step_static, 3),
        "step_ms_ado_median": round(step_ado, 3),
        "overhead_ratio_median_step": round(step_ado / step_static, 4),
        "overhead_ratio_wall": round(ado_wall / statistics.median(walls["static"]), 4),
        "policy_us_per_step_median": round(1e6 * statistics.median(per_step), 1),
        "policy_ms_per_step_mean": round(1e3 * policy_total / args.steps, 4),
        "refits_per_run": len(fits) / args.repeats,
        "refit_ms_mean": round(1e3 * statistics.fmean(fits), 2) if fits else None,
        "policy_share_of_step_pct": round(100 * policy_total / ado_wall, 3),
        "policy_share_without_refits_pct": round(
            100 * (policy_total - sum(fits) / args.repeats) / ado_wall, 3
        ),
    }


def main() -> None:
    """Run the alternating benchmark per stack and print one JSON summary."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stacks", nargs="+", default=["own", "hf", "lightning"],
                   choices=["own", "hf", "lightning"])  # fmt: skip
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--interval", type=int, default=50, help="ADO refit interval (steps)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--n-layer", type=int, default=2)
    p.add_argument("--n-embd", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--corpus", help="manifest to use (default: the synthetic demo corpus)")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        manifest = args.corpus or str(write_demo_corpus(Path(tmp)))
        common = {
            "manifest": manifest,
            "steps": args.steps,
            "batch_size": args.batch_size,
            "seq_len": args.seq_len,
            "vocab_size": VOCAB if args.corpus is None else 256,
            "n_layer": args.n_layer,
            "n_embd": args.n_embd,
            "device": args.device,
            "dtype": args.dtype,
            "threads": args.threads,
            "log_every": 50,
            "progress": False,
        }
        ado_overrides = {
            "ignore_steps": 0,
            "start_step": args.interval,
            "update_interval": args.interval,
            "min_points": 10,
            "subsample": 1,
            "window": 11,
        }
        summary: dict[str, Any] = {
            "steps": args.steps,
            "repeats": args.repeats,
            "device": args.device,
            "dtype": args.dtype,
            "n_layer": args.n_layer,
            "n_embd": args.n_embd,
            "torch_threads": args.threads or torch.get_num_threads(),
        }
        for stack in args.stacks:
            summary[stack] = measure(stack, common, ado_overrides, args)
        print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
