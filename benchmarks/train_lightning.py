"""Train the small GPT of ``train_gpt.py`` with PyTorch Lightning on a WebDataset mixture under any
policy preset (``pip install 'ado[lightning]'``).

The same options as ``train_gpt.py`` (any :class:`~ado.torch.TrainConfig` field), the same model,
optimizer (AdamW, betas 0.9/0.95), learning-rate schedule and gradient clipping, and the same run
log (``--jsonl``), which ``ado replay`` reads. Checkpoints are Lightning's (``--ckpt-dir``:
``step_00000050.ckpt``, the data side of every rank inside); run the same command again and it
resumes from the newest one. Under ``torchrun`` every rank runs this script (``strategy="ddp"``;
gloo on CPU, NCCL on CUDA).

    python benchmarks/train_lightning.py --demo-corpus /tmp/ado-demo --policy ado --steps 300 \\
        --set ignore_steps=10 --set start_step=100 --set update_interval=50 --set min_points=5 \\
        --set subsample=2 --set window=11 --jsonl /tmp/ado-demo/lightning.jsonl
    torchrun --nproc_per_node 2 benchmarks/train_lightning.py --manifest M --ckpt-dir ckpt \\
        --ckpt-every 50
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from ado.integrations.lightning import AdoCallback, MixtureDataModule
from ado.torch import GPT, HeldOut, TrainConfig
from lightning.pytorch.callbacks import ModelCheckpoint
from train_gpt import parse_config, run_main, run_summary

log = logging.getLogger("train_lightning")


class LitGPT(L.LightningModule):
    """:class:`~ado.torch.GPT` as a LightningModule: ``training_step`` returns the mean loss and
    the loss of each sequence (what :class:`AdoCallback` records)."""

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = GPT(cfg.gpt_config())

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, Any]:
        per_seq = self.model(batch["input_ids"], batch["targets"])
        return {"loss": per_seq.mean(), "per_sequence_loss": per_seq}

    def configure_optimizers(self) -> Any:
        cfg = self.cfg
        opt = torch.optim.AdamW(
            self.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95)
        )
        schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: cfg.lr_at(t) / cfg.lr)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


class Evaluate(L.Callback):
    """Held-out loss per domain every ``eval_every`` steps and at the end, into the run log
    (before the step's checkpoint: Lightning runs checkpoint callbacks last)."""

    def __init__(self, cfg: TrainConfig, ado: AdoCallback) -> None:
        self.cfg, self.ado = cfg, ado
        self.held_out: HeldOut | None = None
        self.done = -1

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        assert self.cfg.eval_manifest is not None
        self.held_out = HeldOut(
            self.cfg.eval_manifest,
            batch_size=self.cfg.batch_size,
            pack=self.cfg.pack(),
            batches=self.cfg.eval_batches,
            seed=self.cfg.eval_seed,
            rank=trainer.global_rank,
            world_size=trainer.world_size,
        )

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, *args: Any) -> None:
        done = trainer.global_step
        due = (self.cfg.eval_every and done % self.cfg.eval_every == 0) or done == self.cfg.steps
        if done != self.done and due and self.held_out is not None:
            self.done = done
            rec = self.held_out.evaluate(pl_module.model, pl_module.device)
            if self.ado.run_log is not None:
                self.ado.run_log.eval(done, rec)


def newest_checkpoint(folder: str | None) -> str | None:
    """The ``step_*.ckpt`` with the most steps in ``folder``, or None."""
    if folder is None or not Path(folder).is_dir():
        return None
    found = [(int(m.group(1)), p) for p in Path(folder).iterdir() if (m := _CKPT.match(p.name))]
    return str(max(found)[1]) if found else None


_CKPT = re.compile(r"^step_(\d{8,})\.ckpt$")


def build(cfg: TrainConfig) -> tuple[L.Trainer, LitGPT, MixtureDataModule, AdoCallback]:
    """Trainer, module, data module and callback of ``cfg`` (``torchrun``: one rank each)."""
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    module = LitGPT(cfg)
    data = MixtureDataModule(
        cfg.manifest,
        loader=cfg.loader,
        policy=cfg.policy,
        prior=cfg.prior,
        overrides=cfg.overrides,
        verify_every=cfg.verify_every,
    )
    ado = AdoCallback(
        log_path=cfg.log_path,
        log_every=cfg.log_every,
        log_batches=cfg.log_batches,
        run_config=cfg.model_dump(),
    )
    callbacks: list[L.Callback] = [ado]
    if cfg.eval_manifest is not None:
        callbacks.append(Evaluate(cfg, ado))
    if cfg.ckpt_dir is not None and cfg.ckpt_every:
        callbacks.append(
            ModelCheckpoint(
                dirpath=cfg.ckpt_dir,
                filename="step_{step:08d}",
                auto_insert_metric_name=False,
                monitor="step",
                mode="max",
                save_top_k=cfg.keep,
                every_n_train_steps=cfg.ckpt_every,
            )
        )
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    accelerator = "gpu" if cfg.device.startswith("cuda") else "cpu"
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=local,
        num_nodes=max(world // local, 1),
        strategy="ddp" if world > 1 else "auto",
        precision="bf16-mixed" if cfg.dtype == "bf16" else "32-true",
        max_steps=cfg.steps,
        accumulate_grad_batches=cfg.grad_accum,
        gradient_clip_val=cfg.grad_clip or None,
        deterministic=cfg.deterministic,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=cfg.ckpt_dir is not None and bool(cfg.ckpt_every),
        enable_progress_bar=cfg.progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=cfg.ckpt_dir,
    )
    return trainer, module, data, ado


def run(cfg: TrainConfig) -> dict[str, Any]:
    """Train (resuming from the newest checkpoint in ``cfg.ckpt_dir`` if there is one) and return
    a summary."""
    trainer, module, data, ado = build(cfg)
    resume = newest_checkpoint(cfg.ckpt_dir)
    t0 = time.perf_counter()
    trainer.fit(module, datamodule=data, ckpt_path=resume)
    wall = time.perf_counter() - t0
    start = ado.run_log.start_step if ado.run_log else 0
    return run_summary(cfg, ado.mixer, start, wall, resume and os.path.basename(resume))


def main() -> None:
    """Parse the flags (those of ``train_gpt.py``) and train with Lightning."""
    cfg = parse_config(__doc__)
    log.info("done: %s", json.dumps(run(cfg)))


if __name__ == "__main__":
    run_main(main)
