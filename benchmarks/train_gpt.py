"""Train a small GPT on a WebDataset mixture under any policy preset (the readable example).

CPU by default; on a GPU add ``--device cuda --dtype bf16`` (and a bigger model). Logs the policy
metrics and tokens/s to JSONL (``--log``) and shows a progress bar. Under ``torchrun`` every rank
runs this script; the process group (gloo on CPU, NCCL on CUDA) is set up by ``ado.torch.train``.

    # a synthetic 3-domain corpus (a counting pattern, repeated pairs, noise), then ADO with a
    # refit every 50 steps:
    python benchmarks/train_gpt.py --demo-corpus /tmp/ado-demo --policy ado --steps 300 \
        --set ignore_steps=10 --set start_step=100 --set update_interval=50 --set min_points=5 \
        --set subsample=2 --set window=11 --jsonl /tmp/ado-demo/ado.jsonl
    python benchmarks/train_gpt.py --manifest corpus/manifest.yaml --policy natural
    torchrun --nproc_per_node 2 benchmarks/train_gpt.py --manifest M --ckpt-dir ckpt --ckpt-every 50
    python benchmarks/train_gpt.py --config run.json     # any TrainConfig field, JSON or YAML
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
import tarfile
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from ado.cli._common import parse_overrides, plain
from ado.errors import AdoError
from ado.torch import TrainConfig, destroy_process_group, train

VOCAB = 64


def write_demo_corpus(root: Path, seed: int = 0) -> Path:
    """Three synthetic domains of ``u16`` token documents (ids ``< 64``, 0 = EOS) as tar shards:
    ``cycle`` (learnable), ``pairs`` (half learnable) and ``noise`` (unlearnable). Returns the
    manifest path."""
    rng = np.random.default_rng(seed)
    for name, n in (("cycle", 600), ("pairs", 600), ("noise", 600)):
        (root / name).mkdir(parents=True, exist_ok=True)
        for shard in range(n // 200):
            with tarfile.open(root / name / f"shard-{shard:03d}.tar", "w") as tar:
                for i in range(200):
                    length = int(rng.integers(50, 300))
                    if name == "cycle":
                        doc = (int(rng.integers(1, VOCAB)) + np.arange(length)) % (VOCAB - 1) + 1
                    elif name == "pairs":
                        doc = np.repeat(rng.integers(1, VOCAB, (length + 1) // 2), 2)[:length]
                    else:
                        doc = rng.integers(1, VOCAB, length)
                    data = doc.astype("<u2").tobytes()
                    info = tarfile.TarInfo(f"{name}-{shard:03d}-{i:04d}.u16")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    manifest = root / "manifest.yaml"
    manifest.write_text(
        "domains:\n" + "".join(f"  {n}: {n}/*.tar\n" for n in ("cycle", "pairs", "noise"))
    )
    return manifest


def parse_config(doc: str, argv: list[str] | None = None) -> TrainConfig:
    """The command line of the training examples (this script, ``train_hf.py`` and
    ``train_lightning.py``) as a :class:`~ado.torch.TrainConfig`; sets up logging. ``doc``: the
    script's docstring (its first paragraph is the description, the rest the epilog)."""
    first, _, rest = plain(doc).strip().partition("\n\n")
    p = argparse.ArgumentParser(
        description=textwrap.fill(" ".join(first.split()), 88),
        epilog=rest,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    def flag(name: str, *, field: str | None = None, **kw: Any) -> None:
        """A TrainConfig field's flag, its help ending with the field's default."""
        info = TrainConfig.model_fields[field or name[2:].replace("-", "_")]
        text = kw.pop("help", None) or info.description or ""
        if info.is_required():
            text += " (required, or from --config or --demo-corpus)"
        elif name != "--no-progress":
            text += f" (default: {info.get_default(call_default_factory=True)})"
        p.add_argument(name, help=text.strip(), **kw)

    p.add_argument("--config", help="JSON/YAML file of TrainConfig fields (flags override it)")
    flag("--manifest", help="training manifest (shards with token ids)")
    p.add_argument("--demo-corpus", metavar="DIR", help="write a synthetic corpus to DIR, use it")
    flag("--policy", help="preset name (ado, natural, uniform, ...) or YAML path")
    p.add_argument(
        "--set",
        dest="set_overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a policy-config field (repeatable)",
    )
    for name in ("--steps", "--batch-size", "--grad-accum", "--seq-len", "--vocab-size",
                 "--n-layer", "--n-head", "--n-embd", "--seed", "--threads", "--log-every",
                 "--ckpt-every", "--eval-every"):  # fmt: skip
        flag(name, type=int)
    flag("--lr", type=float)
    flag("--device")
    flag("--dtype", choices=["fp32", "bf16"])
    flag("--jsonl", field="log_path", dest="log_path", help="JSONL run log")
    flag("--ckpt-dir")
    flag("--eval-manifest")
    flag("--no-progress", field="progress", dest="progress", action="store_false", default=None,
         help="no progress bar")  # fmt: skip
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    fields: dict[str, Any] = {}
    if args.config:
        text = Path(args.config).read_text()
        fields.update(json.loads(text) if args.config.endswith(".json") else yaml.safe_load(text))
    if args.demo_corpus:
        fields["manifest"] = str(write_demo_corpus(Path(args.demo_corpus)))
        fields.setdefault("vocab_size", VOCAB)
    for name, value in vars(args).items():
        if name in TrainConfig.model_fields and value is not None:
            fields[name] = value
    if args.set_overrides:
        fields["overrides"] = {**fields.get("overrides", {}), **parse_overrides(args.set_overrides)}
    return TrainConfig(**fields)


def run_summary(
    cfg: TrainConfig, mixer: Any, start_step: int, wall_s: float, resumed_from: str | None
) -> dict[str, Any]:
    """What the integration examples print at the end: steps, resume point, wall time, policy
    time per step run here, the last step's loss and the final weights."""
    weights = mixer.weights / mixer.weights.sum()
    stats = mixer.last_stats
    return {
        "steps": cfg.steps,
        "resumed_from": resumed_from,
        "wall_s": round(wall_s, 3),
        "policy_ms_per_step": round(1e3 * mixer.policy_seconds / max(cfg.steps - start_step, 1), 4),
        "final_loss": None if stats is None else float(stats.loss_sums.sum() / stats.counts.sum()),
        "weights": {d: round(float(w), 4) for d, w in zip(mixer.domains, weights, strict=True)},
    }


def run_main(main: Callable[[], None]) -> None:
    """Run a training example's ``main``: bad input (a missing manifest, an invalid option) is
    one line on stderr and exit status 2, as with ``ado``; anything else keeps its traceback. The
    process group, if any, is destroyed before the process exits."""
    try:
        main()
    except (AdoError, OSError, ValueError) as err:
        text = " | ".join(line.strip() for line in str(err).splitlines() if line.strip())
        print(f"{Path(sys.argv[0]).name}: error: {text}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        # the HF Trainer and Lightning create the process group themselves and leave it to the
        # interpreter's exit, where gloo can abort a finished rank
        destroy_process_group()


def main() -> None:
    """Parse the flags, build the :class:`~ado.torch.TrainConfig` and train."""
    cfg = parse_config(__doc__)
    result = train(cfg)
    summary = {
        "steps": result.steps,
        "tokens": result.tokens,
        "wall_s": round(result.wall_seconds, 3),
        "tokens_per_s": round(result.tokens_per_second, 1),
        "policy_ms_per_step": round(
            1e3 * result.policy_seconds / max(result.steps - (result.resumed_from or 0), 1), 4
        ),
        "final_loss": result.train_losses[-1] if result.train_losses else None,
        "weights": {k: round(v, 4) for k, v in result.weights.items()},
    }
    if result.evals:
        summary["eval"] = result.evals[-1]
    logging.getLogger("train_gpt").info("done: %s", json.dumps(summary))


if __name__ == "__main__":
    run_main(main)
