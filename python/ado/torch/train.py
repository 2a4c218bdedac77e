"""A readable GPT training loop over a :class:`~ado.data.MixtureLoader` driven by any policy.

``train(TrainConfig(...))`` is what ``benchmarks/train_gpt.py``, ``benchmarks/overhead.py`` and
``ado compare`` run. One optimizer step is ``grad_accum`` micro-batches; the policy sees the losses
of all of them (reduced over ranks) and its new weights apply from the next step on
(:class:`~ado.torch.DataMixer`). Under ``torchrun`` the process group is initialised here (NCCL on
CUDA, gloo on CPU) and the model is wrapped in DDP.

Resume: with ``ckpt_dir`` and ``ckpt_every``, the model, optimizer and whole data side are saved
atomically every ``ckpt_every`` steps (rank 0 writes the model/optimizer/policy, every rank its own
loader position); a restarted run continues from the newest checkpoint and reproduces the
uninterrupted run bitwise on CPU with ``deterministic=True``. The JSONL log is cut back to the
checkpoint's step on resume, so it too equals the uninterrupted run's.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
import torch.distributed as dist
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ado.data import LoaderConfig, Manifest, MixtureLoader, PackConfig
from ado.data.shards import shard_summaries
from ado.errors import ConfigError, StateError
from ado.policy import Policy, load_policy
from ado.runlog import RunLogWriter, start_record, step_record
from ado.schedule import LrSchedule
from ado.stats import StepStats
from ado.torch.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from ado.torch.gpt import GPT, GPTConfig
from ado.torch.mixer import DataMixer, lm_tensors, weights_hash
from ado.torch.tracker import DomainLossTracker

__all__ = [
    "HeldOut",
    "TrainConfig",
    "TrainResult",
    "build_policy",
    "destroy_process_group",
    "evaluate_checkpoint",
    "natural_prior",
    "train",
]

logger = logging.getLogger(__name__)


class TrainConfig(BaseModel):
    """Everything a training run depends on (validated; unknown fields are errors).

    Attributes:
        manifest: manifest file (YAML/JSON) of the training shards (token ids in ``field``).
        policy: a preset name (``ado``, ``natural``, ...), a YAML path, or ``None`` for the
            static mixture of ``prior`` (or the manifest's weights), the baseline of
            ``benchmarks/overhead.py``; every run goes through the same loop.
        overrides: policy-config field overrides (see :func:`ado.load_policy`).
        prior: prior weights ``mu``; default :func:`natural_prior` (token counts).
        seq_len: tokens per training row.
        vocab_size: token ids are ``< vocab_size``.
        eos_id: token appended after each document.
        field: sample member holding the tokens (``u16``, ``u32``, ``npy``...).
        batch_size: rows per micro-batch per rank.
        grad_accum: micro-batches per optimizer step.
        steps: optimizer steps.
        lr: peak learning rate (AdamW), after ``warmup`` linear steps, then ``schedule``.
        schedule: ``cosine`` (to ``lr/10``), ``wsd`` (constant, then linear to ``lr/10`` over
            the last ``decay_fraction`` of the steps) or ``constant`` (:class:`ado.LrSchedule`;
            each step's rate goes to the policy as ``StepStats.lr``).
        n_layer: transformer blocks.
        n_head: attention heads.
        n_embd: model width.
        seed: model init and data seed.
        mode: loader sampling mode (``iid`` or ``deficit``).
        device: ``cpu``, ``cuda``, ``cuda:1``...; under torchrun ``cuda`` means the local rank's.
        dtype: ``fp32`` or ``bf16`` (autocast).
        threads: ``torch.set_num_threads`` (None: leave it).
        deterministic: ``torch.use_deterministic_algorithms(True)``, process-wide and left on (CPU
            resume is then bitwise).
        log_path: JSONL log (rank 0; every rank if the path contains ``{rank}``): one record per
            ``log_every`` steps with the loss, tokens/s and the policy's metrics, plus eval records.
        log_batches: add this rank's batch keys and domains to each record (tests).
        ckpt_dir: checkpoint folder (None: no checkpoints, no resume).
        ckpt_every: save every this many steps (0: never).
        keep: checkpoints kept.
        eval_manifest: held-out manifest; per-domain loss every ``eval_every`` steps and at the end.
        ood_manifest: out-of-distribution held-out sets (``ood.yaml`` of a corpus), evaluated with
            ``eval_manifest`` and logged as ``loss/ood/<set>`` (outside ``loss/uniform_avg``).
        eval_every: steps between evaluations (0: only at the end, if ``eval_manifest``).
        eval_batches: batches per domain per evaluation.
        eval_seed: which held-out rows are evaluated; independent of ``seed``, so runs under
            different seeds are scored on the same rows and their spread is training noise only.
        target_manifest: the held-out target set of a policy that asks for one (ADO's
            ``target_set``: a user's target data, or a held-out split of the training domains;
            never ``ood_manifest``, which only measures). Evaluated every ``target_set.every``
            steps on ``target_set.tokens`` tokens (rows drawn with ``eval_seed + 1``); its mean
            loss over its domains goes to :meth:`ado.Policy.observe_target`. The cost is in
            :class:`TrainResult` and the log's ``target`` records.
        verify_every: all-gather a hash of the weights every this many steps (debug).
        progress: show a tqdm progress bar (rank 0).
        loader: the training loader's :class:`~ado.data.LoaderConfig` (give its other options,
            e.g. ``{"readahead_bytes": 0, "cache_dir": ...}``); its ``batch_size``, ``seed``,
            ``mode`` and ``pack`` are the run's fields above (a different value here is an
            error) and its rank and world size are the process group's.
    """

    # (no input in errors: ``loader.storage_options`` may hold credentials)
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    manifest: str
    policy: str | None = "ado"
    overrides: dict[str, Any] = Field(default_factory=dict)
    prior: list[float] | None = None
    seq_len: int = Field(128, gt=0)
    vocab_size: int = Field(256, gt=0)
    eos_id: int = Field(0, ge=0)
    field: str = "u16"
    batch_size: int = Field(16, gt=0)
    grad_accum: int = Field(1, gt=0)
    steps: int = Field(200, gt=0)
    lr: float = Field(3e-3, gt=0)
    warmup: int = Field(20, ge=0)
    schedule: Literal["cosine", "wsd", "constant"] = "cosine"
    decay_fraction: float = Field(0.2, gt=0, le=1)
    weight_decay: float = Field(0.1, ge=0)
    grad_clip: float = Field(1.0, ge=0)
    n_layer: int = Field(2, gt=0)
    n_head: int = Field(2, gt=0)
    n_embd: int = Field(64, gt=0)
    seed: int = Field(0, ge=0)
    mode: Literal["iid", "deficit"] = "iid"
    device: str = "cpu"
    dtype: Literal["fp32", "bf16"] = "fp32"
    threads: int | None = Field(None, gt=0)
    deterministic: bool = False
    log_path: str | None = None
    log_every: int = Field(10, gt=0)
    log_batches: bool = False
    ckpt_dir: str | None = None
    ckpt_every: int = Field(0, ge=0)
    keep: int = Field(2, gt=0)
    eval_manifest: str | None = None
    ood_manifest: str | None = None
    eval_every: int = Field(0, ge=0)
    eval_batches: int = Field(4, gt=0)
    eval_seed: int = Field(0, ge=0)
    target_manifest: str | None = None
    verify_every: int = Field(0, ge=0)
    progress: bool = True
    loader: LoaderConfig = Field(None, validate_default=True)

    @field_validator("loader", mode="before")
    @classmethod
    def _run_loader(cls, value: Any, info: ValidationInfo) -> Any:
        """The options given in ``loader`` with what the run's own fields set (declared above
        it, so validated before it)."""
        given = value
        if value is None:
            given = {}
        elif isinstance(value, LoaderConfig):  # the options it was given
            given = {k: getattr(value, k) for k in value.model_fields_set}
        elif isinstance(value, Mapping):
            given = dict(value)
        if not isinstance(given, dict):
            raise ValueError(f"must be a LoaderConfig or a mapping, got {type(value).__name__}")
        run = info.data  # without the run's fields that are invalid (and reported)
        owned: dict[str, Any] = {k: run[k] for k in ("batch_size", "seed", "mode") if k in run}
        if set(_PACK_FIELDS) <= run.keys():
            owned["pack"] = _pack_of(run)
        for key, want in owned.items():
            have = given.get(key, want)
            if key == "pack" and isinstance(have, Mapping):
                have = PackConfig(**have)
            if have != want:
                owner = ", ".join(_PACK_FIELDS) if key == "pack" else key
                raise ValueError(
                    f"loader.{key} is {have!r} but the run's is {want!r}: set the run's {owner}"
                )
        if given.get("rank", 0) != 0 or given.get("world_size", 1) != 1:
            raise ValueError("loader.rank and loader.world_size are set by the process group")
        # (batch_size 1 stands in only while the run's is invalid: then the whole is refused)
        return LoaderConfig(**{"batch_size": 1, **given, **owned})

    def gpt_config(self) -> GPTConfig:
        """The model shape."""
        return GPTConfig(
            vocab_size=self.vocab_size,
            seq_len=self.seq_len,
            n_layer=self.n_layer,
            n_head=self.n_head,
            n_embd=self.n_embd,
        )

    def lr_schedule(self) -> LrSchedule:
        """The learning-rate schedule of the run."""
        decay = max(1, round(self.decay_fraction * self.steps)) if self.schedule == "wsd" else 0
        return LrSchedule(
            kind=self.schedule,
            peak=self.lr,
            total=self.steps,
            warmup=min(self.warmup, self.steps - 1),
            final=0.1,
            decay_steps=min(decay, self.steps - min(self.warmup, self.steps - 1)),
        )

    def lr_at(self, step: int) -> float:
        """The learning rate of optimizer step ``step`` (0-based), under :meth:`lr_schedule`."""
        return self.lr_schedule().at(step)

    def pack(self) -> PackConfig:
        """The loader's packing configuration."""
        return _pack_of(self.__dict__)

    def make_policy(self, manifest: Manifest) -> Policy:
        """The run's policy over ``manifest`` (:func:`build_policy` with this config's policy,
        prior, overrides, token field and loader options)."""
        return build_policy(
            manifest,
            self.policy,
            prior=self.prior,
            overrides=self.overrides,
            field=self.field,
            loader=self.loader,
        )


#: The fields of :class:`TrainConfig` that make the loader's :class:`~ado.data.PackConfig`.
_PACK_FIELDS = ("seq_len", "eos_id", "field", "vocab_size")


def _pack_of(run: Mapping[str, Any]) -> PackConfig:
    return PackConfig(**{k: run[k] for k in _PACK_FIELDS})


@dataclass
class TrainResult:
    """What :func:`train` returns (on every rank).

    Attributes:
        steps: optimizer steps completed (including those before a resume).
        tokens: training tokens over all ranks.
        wall_seconds: wall time of this process's loop (after a resume: since the resume).
        policy_seconds: time inside ``policy.update`` (this process, since start/resume).
        tokens_per_second: tokens trained per wall second (since start/resume).
        weights: final weights per domain.
        train_losses: global mean training loss per step run in this process.
        evals: per-domain held-out losses: ``[{"step": t, "loss/<domain>": ..., ...}]``.
        resumed_from: the step of the checkpoint resumed from, or None.
        model: the trained model (unwrapped from DDP).
        target_evals: evaluations of the held-out target set (``target_manifest``) over the run.
        target_tokens: tokens those evaluations read, over all ranks.
    """

    steps: int
    tokens: int
    wall_seconds: float
    policy_seconds: float
    tokens_per_second: float
    weights: dict[str, float]
    train_losses: list[float] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int | None = None
    model: GPT | None = None
    target_evals: int = 0
    target_tokens: int = 0

    @property
    def target_token_fraction(self) -> float:
        """Target-set tokens evaluated per training token."""
        return self.target_tokens / self.tokens if self.tokens else 0.0

    @property
    def target_flop_fraction(self) -> float:
        """The target evaluations' share of the training FLOPs: a forward pass costs about a
        third of a training step's forward and backward, per token."""
        return self.target_token_fraction / 3.0


def natural_prior(
    manifest: Manifest, field: str = "u16", *, loader: LoaderConfig | None = None
) -> list[float]:
    """The natural mixture: the manifest's weights if it has them, else each domain's share of
    tokens (raw ``u16``/``u32`` fields, from the shard index), else of samples. Remote shards
    are indexed as ``loader`` (the run's loader options: its node cache, remote settings and
    credentials; default: the default options) reads them."""
    prior = manifest.prior_weights()
    if prior is not None:
        return prior
    ext = field.rsplit(".", 1)[-1]
    totals = []
    opts = loader if loader is not None else LoaderConfig(batch_size=1)
    summaries = shard_summaries(
        manifest,
        storage_options=opts.storage_options,
        cache_dir=opts.remote_cache_dir,
        remote=opts.remote,
    )
    # local shards and remote ones alike (these through the node cache: sidecars or one download)
    for infos in summaries.values():
        tokens = [i.get("tokens", {}).get(ext) for i in infos]
        if all(t is not None for t in tokens):
            totals.append(float(sum(tokens)))
        else:
            totals.append(float(sum(i["samples"] for i in infos)))
    return totals


def destroy_process_group() -> None:
    """Destroy the default ``torch.distributed`` process group if there is one (idempotent).
    Call it before a process that joined a group exits: a gloo or NCCL group left to the
    interpreter's finalisation can abort the process after its work is done."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _distributed_setup(device: str) -> tuple[int, int, torch.device]:
    """(rank, world_size, device); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = torch.device(device)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        # A group still alive when the interpreter finalises can abort the process (gloo's worker
        # threads free tensors that need the GIL: SIGABRT, "terminate called without an active
        # exception"). Whoever created it destroys it at exit, while the interpreter is whole.
        atexit.register(destroy_process_group)
    if dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    else:
        rank, world = 0, 1
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return rank, world, dev


def _autocast(cfg: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    if cfg.dtype == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class HeldOut:
    """Per-domain held-out rows, the same at every evaluation.

    One loader per domain draws only that domain; each evaluation rewinds it to its first batch.
    Under ``torch.distributed`` each rank evaluates its own slice and the sums are all-reduced, so
    every rank gets the same numbers.

    Args:
        manifest: the held-out manifest (same domains, in the same order, as training).
        batch_size: rows per batch per rank.
        pack: packing (as in training).
        batches: batches per domain per evaluation.
        seed: which rows.
        rank: this rank.
        world_size: ranks.
        loader: the training loader's options to read with (node cache, ``remote``,
            ``storage_options``); its rows, packing, rank and read-ahead are the arguments above.
    """

    def __init__(
        self,
        manifest: Manifest | str | os.PathLike[str],
        *,
        batch_size: int,
        pack: PackConfig,
        batches: int = 4,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        loader: LoaderConfig | None = None,
    ) -> None:
        # the training loader's options (node cache, remote settings, credentials), with the
        # rows this evaluation reads: one domain each, no read-ahead
        base = loader if loader is not None else LoaderConfig(batch_size=batch_size)
        config = base.replace(
            batch_size=batch_size,
            seed=seed,
            rank=rank,
            world_size=world_size,
            mode="iid",
            pack=pack,
            readahead_bytes=0,
        )
        storage = config.storage_options
        self.manifest = (
            manifest if isinstance(manifest, Manifest) else Manifest.load(manifest, storage)
        )
        self.domains = self.manifest.names
        self.batches = batches
        k = len(self.domains)
        self.loaders = [
            MixtureLoader(self.manifest, weights=[float(i == d) for i in range(k)], config=config)
            for d in range(k)
        ]
        self._starts = [loader.state_dict() for loader in self.loaders]

    def close(self) -> None:
        """Close every loader (their threads are joined)."""
        for loader in self.loaders:
            loader.close()

    @torch.no_grad()
    def evaluate(
        self,
        model: torch.nn.Module,
        device: torch.device | str,
        autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
    ) -> dict[str, float]:
        """Mean held-out loss per domain (``loss/<domain>``) and their uniform average
        (``loss/uniform_avg``, the paper's unweighted validation loss).

        Args:
            model: a :class:`~ado.torch.GPT` (or a DDP wrapper of one).
            device: the model's device.
            autocast: context-manager factory for the forward pass.
        """
        inner: Any = model.module if isinstance(model, DistributedDataParallel) else model
        was_training = inner.training
        inner.eval()
        device = torch.device(device)
        tracker = DomainLossTracker(len(self.loaders), device=device)
        for loader, start in zip(self.loaders, self._starts, strict=True):
            loader.load_state_dict(start)
            for _ in range(self.batches):
                x, y, d = lm_tensors(next(loader), device)
                with autocast():
                    tracker.add(inner(x, y), d)
        host = tracker.reduce()
        k = len(self.loaders)
        means = np.full(k, np.nan)
        np.divide(host[:k], host[k:], out=means, where=host[k:] > 0)
        inner.train(was_training)
        out = {f"loss/{d}": float(v) for d, v in zip(self.domains, means, strict=True)}
        out["loss/uniform_avg"] = float(np.nanmean(means))
        return out


def _held_out(
    cfg: TrainConfig, rank: int, world: int, manifest: str | None = None
) -> HeldOut | None:
    """The evaluator of ``manifest`` (default: ``cfg.eval_manifest``), or None without one."""
    manifest = manifest if manifest is not None else cfg.eval_manifest
    if manifest is None:
        return None
    return HeldOut(
        manifest,
        batch_size=cfg.batch_size,
        pack=cfg.pack(),
        batches=cfg.eval_batches,
        seed=cfg.eval_seed,
        rank=rank,
        world_size=world,
        loader=cfg.loader,
    )


def evaluate_checkpoint(
    path: str | os.PathLike[str], manifest: str | os.PathLike[str], *, prefix: str = ""
) -> dict[str, float]:
    """Held-out losses of a saved model on ``manifest``, evaluated exactly as the training loop
    evaluates (the checkpoint's own configuration: rows, packing, ``eval_batches``, ``eval_seed``,
    dtype), so a held-out set added after a run scores its final model without retraining.

    Args:
        path: a rank-0 checkpoint written by :func:`train` (``ckpt_dir/rank_0/step_*.pt``).
        manifest: the held-out manifest (e.g. a corpus's ``ood.yaml``).
        prefix: inserted into the keys: ``loss/<prefix><set>`` (``"ood/"`` gives the names the
            training loop logs out-of-distribution sets under).

    Returns:
        ``{"loss/<prefix><set>": mean loss}`` per set of ``manifest``.

    Raises:
        StateError: ``path`` is not a checkpoint of this training loop.
    """
    state = load_checkpoint(path)
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise StateError(f"{path}: not a rank-0 checkpoint of ado.torch.train (no model/config)")
    cfg = TrainConfig(**state["config"])
    device = torch.device(cfg.device)
    model = GPT(cfg.gpt_config()).to(device)
    model.load_state_dict(state["model"])
    held_out = HeldOut(
        manifest,
        batch_size=cfg.batch_size,
        pack=cfg.pack(),
        batches=cfg.eval_batches,
        seed=cfg.eval_seed,
        loader=cfg.loader.replace(rank=0, world_size=1),
    )
    losses = held_out.evaluate(model, device, lambda: _autocast(cfg, device))
    return {f"loss/{prefix}{d}": losses[f"loss/{d}"] for d in held_out.domains}


def build_policy(
    manifest: Manifest,
    policy: str | os.PathLike[str] | Mapping[str, Any] | None,
    *,
    prior: Sequence[float] | None = None,
    overrides: Mapping[str, Any] | None = None,
    field: str = "u16",
    loader: LoaderConfig | None = None,
) -> Policy:
    """The policy of a run over ``manifest``'s domains.

    Args:
        manifest: the training manifest.
        policy: a preset name, YAML path or mapping (:func:`ado.load_policy`); ``None`` is the
            static mixture of ``prior`` or the manifest's weights (uniform if it has none), the
            baseline every run can be compared with through the same loop.
        prior: the prior weights; default (with a policy) :func:`natural_prior`.
        overrides: policy-config field overrides.
        field: the token field (for :func:`natural_prior`).
        loader: the run's loader options, which :func:`natural_prior` reads remote shards'
            indexes with (node cache, remote settings, credentials).

    Raises:
        ConfigError: unknown preset, bad policy file or override.
    """
    if policy is None:
        mu = prior if prior is not None else manifest.prior_weights()
        static = {"kind": "static", "weights": "natural"}
        return load_policy(static, domains=manifest.names, prior=mu)
    mu = prior if prior is not None else natural_prior(manifest, field, loader=loader)
    source = policy if isinstance(policy, Mapping) else os.fspath(policy)
    return load_policy(source, domains=manifest.names, prior=mu, overrides=overrides)


def _micro_batches(
    model: torch.nn.Module, n: int
) -> Iterator[contextlib.AbstractContextManager[Any]]:
    """Per micro-batch a context: DDP's ``no_sync`` for all but the last (one gradient all-reduce
    per optimizer step)."""
    for i in range(n):
        if isinstance(model, DistributedDataParallel) and i < n - 1:
            yield model.no_sync()
        else:
            yield contextlib.nullcontext()


@dataclass
class _Run:
    """Everything one training run holds (what :func:`setup` builds and the step functions use).

    ``start`` is the step to continue from (0, or the checkpoint's after :func:`resume`).
    """

    cfg: TrainConfig
    rank: int
    world: int
    device: torch.device
    manifest: Manifest
    mixer: DataMixer
    model: GPT
    ddp: torch.nn.Module
    optimizer: torch.optim.Optimizer
    held_out: HeldOut | None
    ood: HeldOut | None = None
    target: HeldOut | None = None
    target_every: int = 0  # steps between evaluations of ``target``
    target_tokens: int = 0  # tokens of one evaluation of ``target``, all ranks
    start: int = 0
    resumed_from: int | None = None

    @property
    def tokens_per_step(self) -> int:
        """Training tokens of one optimizer step over all ranks."""
        return self.cfg.batch_size * self.cfg.grad_accum * self.world * self.cfg.seq_len

    def close(self) -> None:
        """Close the training and held-out loaders and the policy (every background thread is
        joined)."""
        self.mixer.loader.close()
        self.mixer.policy.close()
        for held in (self.held_out, self.ood, self.target):
            if held is not None:
                held.close()


def _target_set(
    cfg: TrainConfig, policy: Policy, rank: int, world: int
) -> tuple[HeldOut | None, int, int]:
    """The held-out target set a policy asks for (``"target_set"`` in its harness needs): its
    evaluator, the steps between evaluations and the tokens of one evaluation."""
    spec = policy.config
    ts = getattr(spec, "target_set", None) if "target_set" in spec.harness_needs() else None
    if ts is None:
        if cfg.target_manifest is not None:
            raise ConfigError(
                f"target_manifest is set, but policy {spec.kind!r} takes no held-out target "
                "(ADO's target_set does)"
            )
        return None, 0, 0
    if cfg.target_manifest is None:
        raise ConfigError(
            "the policy's target_set needs target_manifest: the held-out target set the loop "
            "evaluates (a user's target data or a held-out split of the training domains)"
        )
    if cfg.ood_manifest is not None and Path(cfg.target_manifest).resolve() == Path(
        cfg.ood_manifest
    ).resolve():
        raise ConfigError(
            f"target_manifest {cfg.target_manifest} is the out-of-distribution set: those only "
            "measure, never a target"
        )
    manifest = Manifest.load(cfg.target_manifest)
    per_batch = cfg.batch_size * world * cfg.seq_len * len(manifest.names)
    batches = ts.tokens // per_batch
    if batches < 1:
        raise ConfigError(
            f"target_set.tokens = {ts.tokens} is below one batch per target domain: "
            f"{len(manifest.names)} domain(s) x {cfg.batch_size * world} rows x {cfg.seq_len} "
            f"tokens = {per_batch}"
        )
    held = HeldOut(
        manifest,
        batch_size=cfg.batch_size,
        pack=cfg.pack(),
        batches=batches,
        seed=cfg.eval_seed + 1,  # not the measured rows, if the same manifest
        rank=rank,
        world_size=world,
        loader=cfg.loader,
    )
    return held, ts.every, batches * per_batch


def setup(cfg: TrainConfig) -> _Run:
    """Process group, seed, data (loader, policy, mixer), model and optimizer of a fresh run."""
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
    rank, world, device = _distributed_setup(cfg.device)
    torch.manual_seed(cfg.seed)
    manifest = Manifest.load(cfg.manifest)
    policy = cfg.make_policy(manifest)
    loader = cfg.loader.for_rank(rank, world).build(manifest)
    mixer = DataMixer(
        loader,
        policy,
        device=device,
        grad_accum=cfg.grad_accum,
        tokens_per_sample=cfg.seq_len,
        verify_every=cfg.verify_every,
    )
    target = _target_set(cfg, policy, rank, world)
    model = GPT(cfg.gpt_config()).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95)
    )
    ddp: torch.nn.Module = (
        DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if world > 1
        else model
    )
    return _Run(
        cfg,
        rank,
        world,
        device,
        manifest,
        mixer,
        model,
        ddp,
        optimizer,
        _held_out(cfg, rank, world),
        _held_out(cfg, rank, world, cfg.ood_manifest) if cfg.ood_manifest else None,
        *target,
    )


def _saved_world(data: Mapping[str, Any]) -> int | None:
    """The number of ranks that wrote a checkpoint's data state (from rank 0's loader state)."""
    entry = data.get("rank_0")
    try:
        decoded: Any = json.loads(entry) if isinstance(entry, str) else entry
        return int(decoded["loader"]["world_size"])
    except (KeyError, TypeError, ValueError):
        return None  # let the mixer report what is wrong


def resume(run: _Run) -> None:
    """Continue from the newest checkpoint in ``cfg.ckpt_dir``, if there is one: model,
    optimizer, and the whole data side (policy, loader position, loss tracker)."""
    cfg = run.cfg
    if cfg.ckpt_dir is None:
        return
    ckpt = latest_checkpoint(Path(cfg.ckpt_dir) / "rank_0")
    if ckpt is None:
        return
    state = load_checkpoint(ckpt, map_location=run.device)
    data = dict(state["data"])
    saved_world = _saved_world(data)
    # The same world: this rank's file. Another world (elastic resume): every old rank's file.
    ranks = [run.rank] if saved_world in (None, run.world) else range(saved_world)
    for r in ranks:
        if r != 0:
            own = load_checkpoint(
                Path(cfg.ckpt_dir) / f"rank_{r}" / ckpt.name, map_location=run.device
            )
            data.update(own["data"])
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.mixer.load_state_dict(data)
    run.start = run.resumed_from = int(ckpt.stem.split("_")[1])
    logger.info("resumed from %s (step %d)", ckpt, run.start)


def train_step(run: _Run, step: int) -> tuple[StepStats, npt.NDArray[np.float64], list[Any]]:
    """One optimizer step (``grad_accum`` micro-batches): returns the step's reduced statistics,
    the weights its batches were drawn from, and its batches."""
    cfg, mixer = run.cfg, run.mixer
    lr = cfg.lr_at(step)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    drawn = mixer.weights
    batches = []
    for ctx in _micro_batches(run.ddp, cfg.grad_accum):
        batch = mixer.next_batch()
        x, y, d = lm_tensors(batch, run.device)
        with ctx:
            with _autocast(cfg, run.device):
                per_seq = run.ddp(x, y)
            (per_seq.mean() / cfg.grad_accum).backward()
        mixer.record(per_seq, d)
        batches.append(batch)
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    return mixer.step(lr), drawn, batches


def evaluate(run: _Run) -> dict[str, float]:
    """Held-out loss per domain (``loss/<domain>``), their uniform average, and the loss of each
    out-of-distribution set (``loss/ood/<set>``, with ``ood_manifest``)."""
    assert run.held_out is not None
    autocast = lambda: _autocast(run.cfg, run.device)  # noqa: E731
    out = run.held_out.evaluate(run.ddp, run.device, autocast)
    if run.ood is not None:
        ood = run.ood.evaluate(run.ddp, run.device, autocast)
        out.update({f"loss/ood/{name}": ood[f"loss/{name}"] for name in run.ood.domains})
    return out


def checkpoint(run: _Run, step: int) -> None:
    """Rank r writes ``ckpt_dir/rank_r/step_*.pt`` with its data state; rank 0 adds the model,
    optimizer and policy. Ranks write their own file before rank 0 (barrier), so the newest
    ``rank_0`` checkpoint always has every rank's file."""
    cfg = run.cfg
    assert cfg.ckpt_dir is not None
    data = run.mixer.state_dict()
    shared = {k: v for k, v in data.items() if not k.startswith("rank_") and k != "loader"}
    own = {k: v for k, v in data.items() if k.startswith("rank_") or k == "loader"}
    root = Path(cfg.ckpt_dir)
    if run.rank != 0:
        # one more than rank 0 keeps: if rank 0 dies before writing step, its newest
        # checkpoint (the one resumed from) still has this rank's file
        save_checkpoint(root / f"rank_{run.rank}", step, {"data": own}, keep=cfg.keep + 1)
    if dist.is_initialized():
        dist.barrier()
    if run.rank == 0:
        save_checkpoint(
            root / "rank_0",
            step,
            {
                "model": run.model.state_dict(),
                "optimizer": run.optimizer.state_dict(),
                "data": {**shared, **own},
                "config": cfg.model_dump(),
            },
            keep=cfg.keep,
        )


def train(
    cfg: TrainConfig,
    *,
    on_step: Callable[[int, StepStats, DataMixer], None] | None = None,
    on_eval: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train a GPT on the mixture for ``cfg.steps`` optimizer steps: :func:`setup`,
    :func:`resume`, then per step :func:`train_step`, the run log, :func:`evaluate` and
    :func:`checkpoint` when due.

    Args:
        cfg: the run.
        on_step: called after every optimizer step with (completed steps, the step's reduced
            statistics, the mixer).
        on_eval: called after every evaluation with (completed steps, ``{"loss/<domain>": ...}``).

    Returns:
        A :class:`TrainResult`.

    Raises:
        ConfigError: unknown policy preset, bad manifest.
        StateError: a checkpoint that does not match this run.
    """
    run = setup(cfg)
    try:
        resume(run)
        return _train(run, on_step, on_eval)
    finally:
        run.close()


def _train(
    run: _Run,
    on_step: Callable[[int, StepStats, DataMixer], None] | None,
    on_eval: Callable[[int, dict[str, float]], None] | None,
) -> TrainResult:
    """The loop of :func:`train` over a set-up (and maybe resumed) run; the run log is closed
    however it ends."""
    log = RunLogWriter(run.cfg.log_path, run.rank, run.resumed_from)
    try:
        return _loop(run, log, on_step, on_eval)
    finally:
        log.close()


def _loop(
    run: _Run,
    log: RunLogWriter,
    on_step: Callable[[int, StepStats, DataMixer], None] | None,
    on_eval: Callable[[int, dict[str, float]], None] | None,
) -> TrainResult:
    cfg = run.cfg
    mixer = run.mixer
    if run.resumed_from is None:
        log.write(
            start_record(
                run.manifest.names,
                mixer.policy.prior,
                step=0,
                source="train",
                config=cfg.model_dump(),
                world_size=run.world,
                params=run.model.num_params(),
            )
        )
    result = TrainResult(
        steps=run.start,
        tokens=run.start * run.tokens_per_step,
        wall_seconds=0.0,
        policy_seconds=0.0,
        tokens_per_second=0.0,
        weights={},
        resumed_from=run.resumed_from,
    )
    bar = tqdm(
        total=cfg.steps,
        initial=run.start,
        disable=not cfg.progress or run.rank != 0,
        unit="step",
        dynamic_ncols=True,
    )

    def run_target(step: int) -> None:
        autocast = lambda: _autocast(cfg, run.device)  # noqa: E731
        assert run.target is not None
        loss = run.target.evaluate(run.ddp, run.device, autocast)["loss/uniform_avg"]
        mixer.policy.observe_target(step, loss)
        evals = (step + 1) // run.target_every
        log.write(
            {
                "event": "target",
                "step": step + 1,
                "loss": loss,
                "tokens": run.target_tokens,
                "token_fraction": evals * run.target_tokens / ((step + 1) * run.tokens_per_step),
            }
        )

    def run_eval(done: int) -> None:
        rec = evaluate(run)
        result.evals.append({"step": float(done), **rec})
        log.write({"event": "eval", "step": done, **rec})
        if on_eval is not None:
            on_eval(done, rec)

    t0 = mark = time.perf_counter()  # mark: the end of the last logged step
    for step in range(run.start, cfg.steps):
        stats, drawn, batches = train_step(run, step)
        done = step + 1
        loss = float(stats.loss_sums.sum() / stats.counts.sum())
        result.train_losses.append(loss)
        now = time.perf_counter()
        log.write(step_record(stats, drawn, step_s=now - mark, policy_s=mixer.last_policy_seconds))
        mark = now
        if on_step is not None:
            on_step(done, stats, mixer)
        if run.target is not None and done % run.target_every == 0:
            run_target(step)  # before the checkpoint: the policy's state includes it
        if done % cfg.log_every == 0 or done == cfg.steps:
            elapsed = now - t0
            rec: dict[str, Any] = {
                "event": "train",
                "step": done,
                "loss": loss,
                "lr": cfg.lr_at(step),
                "tokens": done * run.tokens_per_step,
                "tokens_per_s": (done - run.start) * run.tokens_per_step / max(elapsed, 1e-9),
                "weights_hash": weights_hash(mixer.weights),
                "policy_ms_per_step": 1e3 * mixer.policy_seconds / (done - run.start),
                **mixer.policy.metrics(),
            }
            if cfg.log_batches:
                rec["keys"] = [k for b in batches for k in b.keys]
                rec["domain"] = [int(v) for b in batches for v in b.domain]
            log.write(rec)
            bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{rec['tokens_per_s']:.0f}")
        bar.update(1)
        if run.held_out is not None and cfg.eval_every and done % cfg.eval_every == 0:
            run_eval(done)  # before the checkpoint, so a resumed log never lacks it
        if cfg.ckpt_dir is not None and cfg.ckpt_every and done % cfg.ckpt_every == 0:
            checkpoint(run, done)
    if run.held_out is not None and not (cfg.eval_every and cfg.steps % cfg.eval_every == 0):
        run_eval(cfg.steps)
    bar.close()
    result.wall_seconds = time.perf_counter() - t0
    result.steps = cfg.steps
    result.tokens = cfg.steps * run.tokens_per_step
    result.tokens_per_second = (
        (cfg.steps - run.start) * run.tokens_per_step / max(result.wall_seconds, 1e-9)
    )
    result.policy_seconds = mixer.policy_seconds
    if run.target is not None:
        result.target_evals = cfg.steps // run.target_every
        result.target_tokens = result.target_evals * run.target_tokens
    weights = mixer.weights / mixer.weights.sum()
    result.weights = {d: float(w) for d, w in zip(run.manifest.names, weights, strict=True)}
    result.model = run.model
    return result
