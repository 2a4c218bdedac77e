"""Train a GPT-2 (transformers, randomly initialised from a config) with the Hugging Face Trainer on
a WebDataset mixture under any policy preset (``pip install 'ado[hf]'``).

The same options as ``train_gpt.py`` (any :class:`~ado.torch.TrainConfig` field; ``n_layer``,
``n_head``, ``n_embd`` shape a ``GPT2Config`` with ``seq_len + 1`` positions), the same optimizer
(AdamW, betas 0.9/0.95) and learning-rate schedule, and the same run log (``--jsonl``), which
``ado replay`` reads. Checkpoints are the Trainer's (``--ckpt-dir``: ``checkpoint-N/`` with the
data side in ``ado_data.pt``); run the same command again and it resumes from the newest one.
Under ``torchrun`` every rank runs this script (gloo on CPU, NCCL on CUDA).

    python benchmarks/train_hf.py --demo-corpus /tmp/ado-demo --policy ado --steps 300 \\
        --set ignore_steps=10 --set start_step=100 --set update_interval=50 --set min_points=5 \\
        --set subsample=2 --set window=11 --jsonl /tmp/ado-demo/hf.jsonl
    torchrun --nproc_per_node 2 benchmarks/train_hf.py --manifest M --ckpt-dir ckpt --ckpt-every 50
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from typing import Any

import torch
import torch.nn.functional as F
from ado.data import Manifest
from ado.integrations.hf import AdoTrainer
from ado.torch import HeldOut, TrainConfig
from torch import nn
from train_gpt import parse_config, run_main, run_summary
from transformers import GPT2Config, GPT2LMHeadModel, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback
from transformers.trainer_utils import get_last_checkpoint

log = logging.getLogger("train_hf")


class PerSequenceLoss(nn.Module):
    """``forward(x, y)``: the mean token loss of each row ``[B]`` of a causal LM (what
    :class:`~ado.torch.HeldOut` evaluates)."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = self.lm(input_ids=x).logits
        return F.cross_entropy(logits.float().transpose(1, 2), y, reduction="none").mean(dim=1)


class Evaluate(TrainerCallback):
    """Held-out loss per domain every ``eval_every`` steps and at the end, into the run log."""

    def __init__(self, trainer: AdoTrainer, held_out: HeldOut, cfg: TrainConfig) -> None:
        self.trainer, self.held_out, self.cfg = trainer, held_out, cfg
        self.last: dict[str, float] = {}

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        done = state.global_step
        if (self.cfg.eval_every and done % self.cfg.eval_every == 0) or done == self.cfg.steps:
            model = PerSequenceLoss(self.trainer.model)
            self.last = self.held_out.evaluate(model, self.trainer.args.device)
            if self.trainer.ado_log is not None:
                self.trainer.ado_log.eval(done, self.last)


def training_arguments(cfg: TrainConfig, output_dir: str) -> TrainingArguments:
    """The Trainer's arguments for ``cfg`` (checkpoints in ``output_dir``)."""
    cpu = cfg.device == "cpu"
    return TrainingArguments(
        output_dir=output_dir,
        max_steps=cfg.steps,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        max_grad_norm=cfg.grad_clip,
        seed=cfg.seed,
        logging_steps=cfg.log_every,
        save_strategy="steps" if cfg.ckpt_dir and cfg.ckpt_every else "no",
        save_steps=cfg.ckpt_every or 500,
        save_total_limit=cfg.keep,
        use_cpu=cpu,
        ddp_backend="gloo" if cpu and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
        bf16=cfg.dtype == "bf16",
        report_to=[],
        disable_tqdm=not cfg.progress,
        dataloader_pin_memory=False,
        full_determinism=False,
    )


def build(cfg: TrainConfig, output_dir: str) -> AdoTrainer:
    """Model, optimizer, loader, policy and the :class:`AdoTrainer` of ``cfg``."""
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
    args = training_arguments(cfg, output_dir)
    manifest = Manifest.load(cfg.manifest)
    policy = cfg.make_policy(manifest)
    torch.manual_seed(cfg.seed)
    model = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=cfg.vocab_size,
            n_positions=cfg.seq_len + 1,
            n_embd=cfg.n_embd,
            n_layer=cfg.n_layer,
            n_head=cfg.n_head,
            bos_token_id=cfg.eos_id,
            eos_token_id=cfg.eos_id,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
        )
    )
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95)
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: cfg.lr_at(t) / cfg.lr)
    trainer = AdoTrainer(
        model=model,
        args=args,
        optimizers=(optimizer, schedule),
        loader=cfg.loader,  # built by the Trainer for its rank
        manifest=manifest,
        policy=policy,
        run_log=cfg.log_path,
        log_every=cfg.log_every,
        log_batches=cfg.log_batches,
        verify_every=cfg.verify_every,
        run_config=cfg.model_dump(),
    )
    if not cfg.progress:  # the run log has the metrics; no progress bar, no printed records
        trainer.remove_callback(PrinterCallback)
    if cfg.eval_manifest is not None:
        held_out = HeldOut(
            cfg.eval_manifest,
            batch_size=cfg.batch_size,
            pack=cfg.pack(),
            batches=cfg.eval_batches,
            seed=cfg.eval_seed,
            rank=args.process_index,
            world_size=args.world_size,
        )
        trainer.add_callback(Evaluate(trainer, held_out, cfg))
    return trainer


def run(cfg: TrainConfig) -> dict[str, Any]:
    """Train (resuming from the newest checkpoint in ``cfg.ckpt_dir`` if there is one) and return
    a summary."""
    with tempfile.TemporaryDirectory() as scratch:
        output_dir = cfg.ckpt_dir or scratch
        trainer = build(cfg, output_dir)
        resume = get_last_checkpoint(output_dir) if os.path.isdir(output_dir) else None
        t0 = time.perf_counter()
        trainer.train(resume_from_checkpoint=resume)
        wall = time.perf_counter() - t0
    start = trainer.ado_log.start_step if trainer.ado_log else 0
    return run_summary(cfg, trainer.mixer, start, wall, resume and os.path.basename(resume))


def main() -> None:
    """Parse the flags (those of ``train_gpt.py``) and train with the HF Trainer."""
    cfg = parse_config(__doc__)
    log.info("done: %s", json.dumps(run(cfg)))


if __name__ == "__main__":
    run_main(main)
