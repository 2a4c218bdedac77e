"""Wall-time overhead of ADO against the same run with static weights.

Both runs train the same tiny GPT from the same seed for the same steps over the same
``MixtureLoader`` (synthetic 3-domain corpus from ``train_gpt.py``) through the same loop (data
mixer, loss tracker, one all-reduce per step); the static run's policy keeps the prior weights.
ADO refits every ``--interval`` steps (the preset refits every 1000 steps; here the schedule is
moved early and made 20x denser so refits happen inside the run).
Runs alternate (static, ADO, static, ADO, ...); the ratio of the median (and of the fastest) wall
times is printed, with the time inside ``policy.update`` per step, split into the per-step hot path
and the refits. On a shared machine the wall ratio is noisy (±10 % between identical runs); the
policy time is measured directly and is the stable figure.

    python benchmarks/overhead.py                     # ~1-2 min on 2 cores
    python benchmarks/overhead.py --steps 500 --repeats 5 --device cuda --dtype bf16
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch
from ado import StepStats
from ado.torch import DataMixer, TrainConfig, train
from train_gpt import VOCAB, write_demo_corpus


def main() -> None:
    """Run the alternating benchmark and print one JSON summary."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
        static = TrainConfig(**common, policy=None)
        ado = TrainConfig(**common, policy="ado", overrides=ado_overrides)
        train(TrainConfig(**{**common, "steps": 20}, policy=None))  # warm-up (page cache, kernels)
        walls: dict[str, list[float]] = {"static": [], "ado": []}
        per_step: list[float] = []  # seconds inside policy.update, steps without a refit
        fits: list[float] = []  # the same, steps with a refit (it runs inside update)
        interval = args.interval

        def record(done: int, stats: StepStats | None, mixer: DataMixer) -> None:
            t = done - 1  # the step the policy just ingested
            refit = t >= interval and t % interval == 0
            (fits if refit else per_step).append(mixer.last_policy_seconds)

        for _ in range(args.repeats):
            walls["static"].append(train(static).wall_seconds)
            walls["ado"].append(train(ado, on_step=record).wall_seconds)
        median_s = statistics.median(per_step)
        static_med, ado_med = statistics.median(walls["static"]), statistics.median(walls["ado"])
        static_min, ado_min = min(walls["static"]), min(walls["ado"])
        policy_total = (sum(per_step) + sum(fits)) / args.repeats
        summary = {
            "steps": args.steps,
            "repeats": args.repeats,
            "device": args.device,
            "dtype": args.dtype,
            "torch_threads": torch.get_num_threads(),
            "static_wall_s": [round(w, 3) for w in walls["static"]],
            "ado_wall_s": [round(w, 3) for w in walls["ado"]],
            "step_ms_static_median": round(1e3 * static_med / args.steps, 3),
            "overhead_ratio_median": round(ado_med / static_med, 4),
            "overhead_ratio_min": round(ado_min / static_min, 4),
            "policy_ms_per_step_mean": round(1e3 * policy_total / args.steps, 4),
            "policy_us_per_step_median": round(1e6 * median_s, 1),
            "refits_per_run": len(fits) / args.repeats,
            "refit_ms_mean": round(1e3 * statistics.fmean(fits), 2) if fits else None,
            "policy_share_of_ado_wall_pct": round(100 * policy_total / ado_med, 3),
            "policy_share_without_refits_pct": round(
                100 * (policy_total - sum(fits) / args.repeats) / ado_med, 3
            ),
        }
        print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
