"""Wall-time overhead of ADO + loss tracking against the same run with static weights.

Both runs train the same tiny GPT from the same seed for the same steps over the same
``MixtureLoader`` (synthetic 3-domain corpus from ``train_gpt.py``); the static run draws with the
prior weights and has no policy and no tracker. ADO refits every ``--interval`` steps (the preset's
refit schedule moved early so that refits happen inside the run). Runs alternate (static, ADO,
static, ADO, ...) and the median wall time of each is compared. Also prints the time inside
``policy.update`` per step.

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
from ado.torch import TrainConfig, train
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
        policy_ms: list[float] = []
        fits = 0.0
        for _ in range(args.repeats):
            walls["static"].append(train(static).wall_seconds)
            res = train(ado)
            walls["ado"].append(res.wall_seconds)
            policy_ms.append(1e3 * res.policy_seconds / args.steps)
        static_s = statistics.median(walls["static"])
        ado_s = statistics.median(walls["ado"])
        fits = args.steps // args.interval
        summary = {
            "steps": args.steps,
            "device": args.device,
            "dtype": args.dtype,
            "torch_threads": torch.get_num_threads(),
            "static_wall_s": [round(w, 3) for w in walls["static"]],
            "ado_wall_s": [round(w, 3) for w in walls["ado"]],
            "overhead_ratio": round(ado_s / static_s, 4),
            "overhead_pct": round(100 * (ado_s / static_s - 1), 2),
            "policy_ms_per_step_median": round(statistics.median(policy_ms), 4),
            "policy_share_pct": round(
                100 * statistics.median(policy_ms) * args.steps / 1e3 / ado_s, 3
            ),
            "scheduled_refits": fits,
            "step_ms_static": round(1e3 * static_s / args.steps, 3),
        }
        print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
