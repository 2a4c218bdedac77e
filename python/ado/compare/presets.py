"""Run-size presets of ``ado compare``: training-config overrides, plus ADO's schedule.

A preset names only what it changes in :class:`ado.torch.train.TrainConfig` (model shape, tokens,
cadences, device); every other training option keeps the one default declared there. What a
compare run sets itself (corpus manifests, policy, seed, log and checkpoint paths, tokenizer
fields) cannot be set by a preset.

ADO's shipped schedule (``ignore_steps: 1000, start_step: 2000, update_interval: 1000``) suits
runs of tens of thousands of steps; a preset that trains a few hundred steps scales it to its length
(and nothing else: the rule's constants stay the paper's). The overrides are written in the report.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ado.errors import ConfigError
from ado.torch.train import TrainConfig

__all__ = ["PRESETS", "RUN_FIELDS", "Preset"]

#: TrainConfig fields that ``ado compare`` sets for each run (not a preset's to choose).
RUN_FIELDS = frozenset(
    {
        "manifest",
        "eval_manifest",
        "ood_manifest",
        "policy",
        "overrides",
        "prior",
        "vocab_size",
        "eos_id",
        "field",
        "seed",
        "log_path",
        "log_batches",
        "ckpt_dir",
        "progress",
    }
)
#: Cadences (in steps) that :meth:`Preset.scaled` scales with the run length.
_CADENCES = ("eval_every", "ckpt_every", "log_every")


class Preset(BaseModel):
    """A compare run size: a name, training-config overrides and ADO's schedule for that length.

    Attributes:
        name: preset name.
        train: :class:`~ado.torch.train.TrainConfig` fields this preset sets (e.g. ``n_layer``,
            ``steps``, ``threads``); the rest keep TrainConfig's defaults.
        ado_overrides: ADO schedule scaled to the run length (served to policies that declare
            they need it, see :meth:`ado.policy.PolicyConfig.harness_needs`).
        seeds: the seeds ``ado compare`` trains when none are given.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    train: dict[str, Any] = Field(default_factory=dict)
    ado_overrides: dict[str, Any] = Field(default_factory=dict)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)

    @field_validator("train")
    @classmethod
    def _valid_overrides(cls, v: dict[str, Any]) -> dict[str, Any]:
        run_set = sorted(RUN_FIELDS & v.keys())
        if run_set:
            raise ValueError(f"{run_set} are set by compare for each run, not by a preset")
        try:
            TrainConfig(manifest="", **v)
        except ValidationError as e:
            raise ValueError(f"not valid training-config overrides: {e}") from None
        return v

    def config(self) -> TrainConfig:
        """The training configuration of this preset (TrainConfig defaults + the overrides);
        the run fields (``manifest``, ``seed``...) are placeholders."""
        return TrainConfig(manifest="", **self.train)

    def train_config(self, **run: Any) -> TrainConfig:
        """The training configuration of one run: the preset's overrides plus ``run`` (the
        fields compare sets: manifests, policy, seed, paths, tokenizer fields, threads)."""
        return TrainConfig(**{**self.train, **run})

    def with_train(self, **changes: Any) -> Preset:
        """The same preset with more training-config overrides (e.g. ``device="cuda"``)."""
        try:
            return Preset(
                name=self.name,
                train={**self.train, **changes},
                ado_overrides=self.ado_overrides,
                seeds=self.seeds,
            )
        except ValidationError as e:
            raise ConfigError(f"preset {self.name!r}: {e}") from None

    @property
    def steps(self) -> int:
        """Optimizer steps per run."""
        return self.config().steps

    @property
    def threads(self) -> int | None:
        """torch CPU threads per run this preset asks for (None: compare decides)."""
        return self.config().threads

    def tokens_per_run(self) -> int:
        """Training tokens of each run."""
        c = self.config()
        return c.steps * c.batch_size * c.grad_accum * c.seq_len

    def estimated_cost(self, vocab_size: int, *, mfu: float = 0.4) -> dict[str, float]:
        """A rough estimate (not a measurement) of one run's compute, time and disk.

        FLOPs per token: 6 x the non-embedding parameters (12 x layers x width^2) + 6 x the
        tied head (``vocab_size`` x width) + 12 x layers x ``seq_len`` x width (attention
        scores and values, forward and backward). GPU hours at ``mfu`` of an H100's dense bf16
        peak (989 TFLOP/s). Disk: the checkpoints kept (``keep``), each the fp32 model and
        AdamW's two moments (12 bytes per parameter).

        Returns:
            ``{"params", "flops", "h100_hours", "checkpoint_gb"}`` per run.
        """
        c = self.config()
        width, layers = c.n_embd, c.n_layer
        params = 12 * layers * width**2 + (vocab_size + c.seq_len) * width
        per_token = 6 * 12 * layers * width**2 + 6 * vocab_size * width
        per_token += 12 * layers * c.seq_len * width
        flops = float(per_token * self.tokens_per_run())
        return {
            "params": float(params),
            "flops": flops,
            "h100_hours": flops / (989e12 * mfu) / 3600,
            "checkpoint_gb": c.keep * 12 * params / 1e9,
        }

    def describe(self) -> dict[str, Any]:
        """JSON-safe record for reports: the name, the overrides and the effective training
        configuration (defaults included; run fields left out)."""
        effective = self.config().model_dump(exclude=set(RUN_FIELDS))
        return {**self.model_dump(), "effective": effective}

    def scaled(self, steps: int) -> Preset:
        """The same preset with ``steps`` steps (cadences and ADO's schedule scaled too)."""
        c = self.config()
        f = steps / c.steps

        def sc(v: int, lo: int = 1) -> int:
            return max(lo, round(v * f))

        ado = dict(self.ado_overrides)
        for key in ("ignore_steps", "start_step", "update_interval"):
            if key in ado:
                ado[key] = sc(int(ado[key]), 0 if key == "ignore_steps" else 1)
        if "start_step" in ado and "update_interval" in ado:
            ado["start_step"] = max(ado["start_step"], ado.get("ignore_steps", 0) + 3)
        train = {**self.train, "steps": steps, "warmup": min(c.warmup, max(steps // 10, 0))}
        for key in _CADENCES:
            if value := getattr(c, key):  # 0 means never
                train[key] = sc(value)
        return Preset(name=self.name, train=train, ado_overrides=ado, seeds=self.seeds)


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
        train={
            "n_layer": 2,
            "n_head": 2,
            "n_embd": 64,
            "seq_len": 64,
            "batch_size": 16,
            "steps": 120,
            "lr": 3e-3,
            "warmup": 10,
            "eval_every": 20,
            "eval_batches": 2,
            "ckpt_every": 40,
            "log_every": 5,
            # one thread: this model is too small to gain from a second one (5.5 s vs 5.1-5.3 s
            # for 40 steps at load 3 on 2 cores), and a second thread can stall a shared machine
            "threads": 1,
        },
        ado_overrides=_ado(10, 40, 10, 1, 11, 10),
    ),
    # The 10-domain CPU benchmark: 12 runs (6 policies x 2 seeds), 2 M tokens each, in about
    # 55 min on 2 idle cores (0.25 s per step, evaluations included).
    "cpu-full": Preset(
        name="cpu-full",
        train={
            "n_layer": 2,
            "n_head": 2,
            "n_embd": 64,
            "seq_len": 128,
            "batch_size": 16,
            "steps": 1000,
            "lr": 3e-3,
            "warmup": 50,
            "eval_every": 200,
            "eval_batches": 8,
            "ckpt_every": 100,
            "log_every": 10,
        },
        ado_overrides=_ado(50, 200, 50, 2, 51),
        # three seeds: a paired confidence interval needs more than two
        seeds=[0, 1, 2],
    ),
    # One H100/H200 for a short lease (benchmarks/gpu_compare.sh): 4 policies trained at once
    # (--jobs 4) on one GPU, 49 M tokens each, sized to finish within 8 minutes including
    # start-up. Not yet measured on a GPU: the script prints the wall time of each phase.
    "gpu-short": Preset(
        name="gpu-short",
        train={
            "n_layer": 6,
            "n_head": 6,
            "n_embd": 384,
            "seq_len": 256,
            "batch_size": 64,
            "steps": 3000,
            "lr": 1e-3,
            "warmup": 100,
            "eval_every": 500,
            "eval_batches": 8,
            "ckpt_every": 1000,
            "log_every": 50,
            "device": "cuda",
            "dtype": "bf16",
        },
        ado_overrides=_ado(150, 300, 150, 2, 51),
    ),
    # One GPU: a 6-layer, 384-wide model on ~330 M tokens per policy.
    "gpu": Preset(
        name="gpu",
        train={
            "n_layer": 6,
            "n_head": 6,
            "n_embd": 384,
            "seq_len": 512,
            "batch_size": 64,
            "steps": 10000,
            "lr": 1e-3,
            "warmup": 200,
            "eval_every": 250,
            "eval_batches": 16,
            "ckpt_every": 500,
            "log_every": 25,
            "device": "cuda",
            "dtype": "bf16",
        },
        ado_overrides=_ado(500, 1000, 500, 5, 101),
    ),
    # The paper's smallest model on a Slurm cluster (README "Paper scale on a Slurm cluster"):
    # GPT 124M (12 layers, 768 wide, 12 heads), 1024-token rows, a global batch of 256 rows
    # (262,144 tokens per step, as the paper's 124M runs; 128 rows x 2 micro-batches, split over
    # the ranks of a run: 16 per GPU on 8), peak LR 1e-3 after 500 warm-up steps, bf16. 10,000
    # steps (2.6 B tokens) run ADO's shipped schedule unscaled: the first refit at step 2,000 on
    # 100 fit points, then every 1,000 steps (9 refits). Its cost is estimated (not measured) by
    # Preset.estimated_cost: ~2.2e18 FLOPs and ~1.6 H100 GPU-hours per run with a 50k vocabulary.
    "gpu-124m": Preset(
        name="gpu-124m",
        train={
            "n_layer": 12,
            "n_head": 12,
            "n_embd": 768,
            "seq_len": 1024,
            "batch_size": 128,
            "grad_accum": 2,
            "steps": 10000,
            "lr": 1e-3,
            "warmup": 500,
            "eval_every": 500,
            "eval_batches": 8,
            "ckpt_every": 500,
            "log_every": 50,
            "device": "cuda",
            "dtype": "bf16",
        },
        ado_overrides=_ado(1000, 2000, 1000, 10, 101),
        seeds=[0, 1, 2],
    ),
}
