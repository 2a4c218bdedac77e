"""Run-size presets of ``ado compare``: model, tokens, evaluation cadence, ADO schedule.

ADO's shipped schedule (``ignore_steps: 1000, start_step: 2000, update_interval: 1000``) suits
runs of tens of thousands of steps; a preset that trains a few hundred steps scales it to its length
(and nothing else: the rule's constants stay the paper's). The overrides are written in the report.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["PRESETS", "Preset"]


class Preset(BaseModel):
    """Everything about a compare run that is not the corpus or the policy list.

    Attributes:
        name: preset name.
        n_layer: transformer blocks.
        n_head: attention heads.
        n_embd: width.
        seq_len: tokens per row.
        batch_size: rows per step.
        steps: optimizer steps per run (every policy trains the same number of tokens).
        lr: peak learning rate.
        warmup: warm-up steps.
        eval_every: steps between held-out evaluations.
        eval_batches: held-out batches per domain per evaluation.
        ckpt_every: steps between checkpoints (resume granularity).
        log_every: steps between JSONL training records (weights, policy metrics).
        device: torch device.
        dtype: ``fp32`` or ``bf16``.
        threads: torch CPU threads per run (None: the usable cores divided by the runs trained
            at once; a tiny CPU model gains little from a second thread and loses a lot when
            the cores are shared).
        ado_overrides: ADO schedule scaled to the run length.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    n_layer: int = Field(gt=0)
    n_head: int = Field(gt=0)
    n_embd: int = Field(gt=0)
    seq_len: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    steps: int = Field(gt=0)
    lr: float = Field(gt=0)
    warmup: int = Field(ge=0)
    eval_every: int = Field(gt=0)
    eval_batches: int = Field(gt=0)
    ckpt_every: int = Field(gt=0)
    log_every: int = Field(gt=0)
    device: str = "cpu"
    dtype: Literal["fp32", "bf16"] = "fp32"
    threads: int | None = None
    ado_overrides: dict[str, Any] = Field(default_factory=dict)

    def tokens_per_run(self) -> int:
        """Training tokens of each run."""
        return self.steps * self.batch_size * self.seq_len

    def scaled(self, steps: int) -> Preset:
        """The same preset with ``steps`` steps (cadences and ADO's schedule scaled too)."""
        f = steps / self.steps

        def sc(v: int, lo: int = 1) -> int:
            return max(lo, round(v * f))

        ado = dict(self.ado_overrides)
        for key in ("ignore_steps", "start_step", "update_interval"):
            if key in ado:
                ado[key] = sc(int(ado[key]), 0 if key == "ignore_steps" else 1)
        if "start_step" in ado and "update_interval" in ado:
            ado["start_step"] = max(ado["start_step"], ado.get("ignore_steps", 0) + 3)
        return self.model_copy(
            update={
                "steps": steps,
                "warmup": min(self.warmup, max(steps // 10, 0)),
                "eval_every": sc(self.eval_every),
                "ckpt_every": sc(self.ckpt_every),
                "log_every": sc(self.log_every),
                "ado_overrides": ado,
            }
        )


def _ado(
    ignore: int,
    start: int,
    interval: int,
    subsample: int,
    window: int,
    min_points: int | None = None,
) -> dict[str, Any]:
    """The schedule; ``min_points`` only where the first refit has fewer points than the policy
    files ask for (otherwise each ADO variant keeps its own)."""
    schedule = {
        "ignore_steps": ignore,
        "start_step": start,
        "update_interval": interval,
        "subsample": subsample,
        "window": window,
    }
    return schedule if min_points is None else {**schedule, "min_points": min_points}


PRESETS: dict[str, Preset] = {
    # README command: 6 policies on the built-in corpus in <= 10 min on 2 CPU cores.
    "cpu-small": Preset(
        name="cpu-small",
        n_layer=2,
        n_head=2,
        n_embd=64,
        seq_len=64,
        batch_size=16,
        steps=120,
        lr=3e-3,
        warmup=10,
        eval_every=20,
        eval_batches=2,
        ckpt_every=40,
        log_every=5,
        # one thread: this model is too small to gain from a second one (5.5 s vs 5.1-5.3 s for
        # 40 steps at load 3 on 2 cores), and a second thread can stall a shared machine
        threads=1,
        ado_overrides=_ado(10, 40, 10, 1, 11, 10),
    ),
    # The 10-domain CPU benchmark: 12 runs (6 policies x 2 seeds), 2 M tokens each, in about
    # 55 min on 2 idle cores (0.25 s per step, evaluations included).
    "cpu-full": Preset(
        name="cpu-full",
        n_layer=2,
        n_head=2,
        n_embd=64,
        seq_len=128,
        batch_size=16,
        steps=1000,
        lr=3e-3,
        warmup=50,
        eval_every=200,
        eval_batches=8,
        ckpt_every=100,
        log_every=10,
        ado_overrides=_ado(50, 200, 50, 2, 51),
    ),
    # One GPU: a 6-layer, 384-wide model on ~330 M tokens per policy.
    "gpu": Preset(
        name="gpu",
        n_layer=6,
        n_head=6,
        n_embd=384,
        seq_len=512,
        batch_size=64,
        steps=10000,
        lr=1e-3,
        warmup=200,
        eval_every=250,
        eval_batches=16,
        ckpt_every=500,
        log_every=25,
        device="cuda",
        dtype="bf16",
        ado_overrides=_ado(500, 1000, 500, 5, 101),
    ),
}
