"""PyTorch Lightning on a :class:`~ado.data.MixtureLoader` under any policy
(``pip install 'ado[lightning]'``).

Two pieces, used together:

* :class:`MixtureDataModule` builds, in each process once Lightning knows its rank, the loader
  (this rank's slice of every global batch), the policy and their
  :class:`~ado.torch.DataMixer`, and serves the loader's batches as the train dataloader:
  ``{"input_ids": [B, T], "targets": [B, T], "domain": [B]}`` (targets are the inputs shifted by
  one), drawn one at a time when the loop asks (the dataloader has a length, so Lightning does not
  fetch ahead across the optimizer step, where the weights change).
* :class:`AdoCallback` records each micro-batch's per-sequence losses, which ``training_step``
  returns as ``{"loss": ..., "per_sequence_loss": [B]}`` (or per-token ``[B, T]``), on the device
  (no host sync per micro-batch); after each optimizer step (gradient accumulation included) it
  runs ``mixer.step()`` (one ``[2K]`` all-reduce, the policy update, the next weights, identical on
  every rank); logs the policy's metrics through ``pl_module.log_dict`` (``ado/weight/<domain>``,
  refits, time inside the policy) and, with ``log_path``, writes the library's run log
  (:mod:`ado.runlog`) that ``ado replay`` reads. Lightning checkpoints hold the whole data side
  (every rank's loader position, gathered into the one file rank 0 writes, under ``"ado"``), and
  ``trainer.fit(..., ckpt_path=...)`` resumes it, so the run continues bitwise like an
  uninterrupted one.

Example::

    data = MixtureDataModule(manifest, batch_size=8, pack=PackConfig(seq_len=64, eos_id=0))
    # or the loader's whole configuration (rank and world size are set by the Trainer):
    data = MixtureDataModule(manifest, loader=LoaderConfig(batch_size=8, pack=..., seed=1))
    trainer = L.Trainer(max_steps=100, accumulate_grad_batches=2, callbacks=[AdoCallback()])
    trainer.fit(model, datamodule=data)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any, Literal

import torch

from ado._deps import require
from ado.data import Batch, LoaderConfig, Manifest, PackConfig
from ado.errors import ConfigError, StateError
from ado.integrations._common import SizedMixtureStream, StepLog, logger_metrics
from ado.policy import Policy
from ado.torch.mixer import DataMixer, lm_tensors
from ado.torch.train import build_policy

require("lightning", "lightning", "ado.integrations.lightning")

import lightning as L  # noqa: E402

__all__ = ["CHECKPOINT_KEY", "AdoCallback", "MixtureDataModule", "lightning_batch"]

logger = logging.getLogger(__name__)

#: The key of the data side in a Lightning checkpoint.
CHECKPOINT_KEY = "ado"


def lightning_batch(batch: Batch) -> dict[str, torch.Tensor]:
    """A packed loader batch as ``{"input_ids", "targets", "domain"}`` (CPU tensors; Lightning
    moves them to the device)."""
    x, y, d = lm_tensors(batch, "cpu")
    return {"input_ids": x, "targets": y, "domain": d}


class _Stream(SizedMixtureStream):
    """The train dataloader: sized (no read-ahead) and resumable in Lightning's sense; its
    position is not in Lightning's dataloader state (rank 0's only) but in the checkpoint's
    ``"ado"`` entry, which holds every rank's and which :class:`AdoCallback` restores."""

    def state_dict(self) -> dict[str, Any]:
        return {"restored_by": "AdoCallback", "step": self.mixer.steps_done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to do: :meth:`AdoCallback.on_load_checkpoint` restores the position."""


class MixtureDataModule(L.LightningDataModule):
    """The mixture as a ``LightningDataModule`` (use it with :class:`AdoCallback`).

    The loader is given whole as ``loader=LoaderConfig(...)`` (with a ``pack``), or by its
    fields ``batch_size``, ``pack``, ``seed``, ``mode`` and ``loader_options`` (validated into a
    :class:`~ado.data.LoaderConfig` here, so an unknown or bad option fails at once, named); its
    rank and world size are the Trainer's.

    Args:
        manifest: the training manifest (a :class:`~ado.data.Manifest`, a mapping or a file).
        batch_size: rows per micro-batch per rank.
        pack: packing of the token rows.
        policy: a preset name, YAML path or mapping (see :func:`ado.load_policy`), or a built
            :class:`~ado.Policy` (single process only: each rank needs its own); ``None`` is the
            static mixture of ``prior``.
        prior: prior weights; default the natural mixture (:func:`ado.torch.natural_prior`).
        overrides: policy-config field overrides.
        seed: the data seed (which rows, in which order).
        mode: loader sampling mode.
        verify_every: every this many steps, check that all ranks hold bitwise equal weights.
        loader_options: more :class:`~ado.data.LoaderConfig` fields (read-ahead...).
        loader: the loader's whole configuration (instead of the four above).

    Attributes:
        loader_config: the :class:`~ado.data.LoaderConfig` (rank 0 of 1 until :meth:`setup`).
        mixer: the :class:`~ado.torch.DataMixer`, built in :meth:`setup` (``None`` before).
    """

    def __init__(
        self,
        manifest: Manifest | Mapping[str, Any] | str | os.PathLike[str],
        batch_size: int | None = None,
        *,
        pack: PackConfig | None = None,
        policy: str | os.PathLike[str] | Mapping[str, Any] | Policy | None = "ado",
        prior: list[float] | None = None,
        overrides: Mapping[str, Any] | None = None,
        seed: int | None = None,
        mode: Literal["iid", "deficit"] | None = None,
        verify_every: int = 0,
        loader_options: Mapping[str, Any] | None = None,
        loader: LoaderConfig | None = None,
    ) -> None:
        super().__init__()
        if isinstance(manifest, Manifest):
            self.manifest = manifest
        elif isinstance(manifest, Mapping):
            self.manifest = Manifest.from_dict(manifest)
        else:
            self.manifest = Manifest.load(manifest)
        self.loader_config = _loader_config(
            loader, {"batch_size": batch_size, "pack": pack, "seed": seed, "mode": mode},
            loader_options or {},
        )  # fmt: skip
        self.policy = policy
        self.prior = prior
        self.overrides = dict(overrides or {})
        self.verify_every = verify_every
        self.mixer: DataMixer | None = None
        self.on_batch: Any = None

    @property
    def pack(self) -> PackConfig:
        """The packing of the token rows."""
        pack = self.loader_config.pack
        assert pack is not None  # (checked by the constructor)
        return pack

    def _build_policy(self) -> Policy:
        if isinstance(self.policy, Policy):
            return self.policy
        return build_policy(
            self.manifest,
            self.policy,
            prior=self.prior,
            overrides=self.overrides,
            field=self.pack.field,
            loader=self.loader_config,
        )

    def setup(self, stage: str) -> None:
        """Build the loader (this rank's), the policy and the mixer (once, for ``fit``)."""
        if stage != "fit" or self.mixer is not None:
            return
        trainer = self.trainer
        if trainer is None:
            raise ConfigError("MixtureDataModule.setup runs inside Trainer.fit(datamodule=...)")
        config = self.loader_config.for_rank(trainer.global_rank, trainer.world_size)
        loader = config.build(self.manifest)
        self.mixer = DataMixer(
            loader,
            self._build_policy(),
            device=trainer.strategy.root_device,
            grad_accum=trainer.accumulate_grad_batches,
            tokens_per_sample=self.pack.seq_len,
            verify_every=self.verify_every,
        )

    def train_dataloader(self) -> SizedMixtureStream:
        """The loader's micro-batches (:func:`lightning_batch`), ``max_steps x
        accumulate_grad_batches`` of them per epoch.

        Raises:
            ConfigError: the Trainer has no ``max_steps`` or no :class:`AdoCallback`.
        """
        trainer = self.trainer
        if self.mixer is None or trainer is None:
            raise ConfigError("MixtureDataModule.train_dataloader runs inside Trainer.fit")
        if trainer.max_steps is None or trainer.max_steps <= 0:
            raise ConfigError(
                "MixtureDataModule needs Trainer(max_steps=N > 0): the mixture stream is endless"
            )
        if not any(isinstance(cb, AdoCallback) for cb in getattr(trainer, "callbacks", [])):
            raise ConfigError(
                "MixtureDataModule needs an AdoCallback in Trainer(callbacks=[...]): without it "
                "no loss reaches the policy and the weights never change"
            )
        return _Stream(
            self.mixer,
            lightning_batch,
            self.on_batch,
            trainer.max_steps * trainer.accumulate_grad_batches,
        )


def _loader_config(
    config: LoaderConfig | None, fields: Mapping[str, Any], options: Mapping[str, Any]
) -> LoaderConfig:
    """``config``, or the one of ``fields`` (those not ``None``) and ``options``; with a pack.

    Raises:
        ConfigError: both, an option given twice, or no pack.
        InvalidInputError: an unknown or invalid option (named).
    """
    given = {k: v for k, v in fields.items() if v is not None}
    if config is None:
        twice = sorted(given.keys() & options.keys())
        if twice:
            raise ConfigError(f"{twice} given both as arguments and in loader_options")
        config = LoaderConfig(**given, **options)
    elif given or options:
        raise ConfigError(
            f"give loader=LoaderConfig(...) or its fields, not both (got {sorted(given)}"
            f"{' and loader_options' if options else ''})"
        )
    if config.pack is None:
        raise ConfigError("MixtureDataModule needs packed rows: a LoaderConfig with a pack")
    return config


class AdoCallback(L.Callback):
    """Feeds the policy at optimizer-step boundaries, logs it and checkpoints the data side
    (see the module docstring); needs a :class:`MixtureDataModule`.

    Args:
        loss_key: the key of the per-sequence (``[B]``) or per-token (``[B, T]``) losses in
            ``training_step``'s returned dict.
        mask_key: with per-token losses, the key of their ``[B, T]`` mask (tokens that count).
        log_metrics: log the policy's metrics through ``pl_module.log_dict`` on the steps that
            reach the loggers (every ``Trainer(log_every_n_steps=...)``).
        log_path: the run log's path (``{rank}`` in it: one per rank; else rank 0 writes).
        log_every: steps between the run log's ``train`` records.
        log_batches: add each step's sample keys and domains to the run log (tests).
        run_config: extra fields for the run log's ``start`` record.
    """

    def __init__(
        self,
        *,
        loss_key: str = "per_sequence_loss",
        mask_key: str | None = None,
        log_metrics: bool = True,
        log_path: str | os.PathLike[str] | None = None,
        log_every: int = 1,
        log_batches: bool = False,
        run_config: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.loss_key = loss_key
        self.mask_key = mask_key
        self.log_metrics = log_metrics
        self.log_path = None if log_path is None else os.fspath(log_path)
        self.log_every = log_every
        self.log_batches = log_batches
        self.run_config = dict(run_config or {})
        self.data: MixtureDataModule | None = None
        self.run_log: StepLog | None = None
        self._resumed_step: int | None = None
        self._seen_step = 0

    @property
    def mixer(self) -> DataMixer:
        """The data module's mixer.

        Raises:
            StateError: outside ``Trainer.fit``.
        """
        if self.data is None or self.data.mixer is None:
            raise StateError("AdoCallback has no mixer outside Trainer.fit(datamodule=...)")
        return self.data.mixer

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        data = getattr(trainer, "datamodule", None)
        if not isinstance(data, MixtureDataModule):
            raise ConfigError(
                "AdoCallback needs trainer.fit(model, datamodule=MixtureDataModule(...)), got "
                f"{type(data).__name__}"
            )
        self.data = data
        data.on_batch = self._on_batch

    def _on_batch(self, batch: Batch) -> None:
        if self.run_log is not None:
            self.run_log.batch(batch)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        mixer = self.mixer
        if trainer.global_step != mixer.steps_done:
            raise StateError(
                f"the Trainer is at step {trainer.global_step} but the data side at step "
                f"{mixer.steps_done}: the checkpoint resumed from has no ado data state"
            )
        self._seen_step = trainer.global_step
        pack = mixer.loader.pack
        assert pack is not None
        self.run_log = StepLog(
            mixer,
            self.log_path,
            rank=trainer.global_rank,
            resume_step=self._resumed_step,
            log_every=self.log_every,
            log_batches=self.log_batches,
            tokens_per_step=mixer.loader.batch_size
            * mixer.grad_accum
            * trainer.world_size
            * pack.seq_len,
        )
        self.run_log.start(
            source="lightning",
            world_size=trainer.world_size,
            params=sum(p.numel() for p in pl_module.parameters()),
            config=self.run_config,
        )

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any
    ) -> None:
        self._lr = float(optimizer.param_groups[0]["lr"])  # StepStats.lr of this step
        if self.run_log is not None:
            self.run_log.lr = self._lr

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if not isinstance(outputs, Mapping) or self.loss_key not in outputs:
            got = sorted(outputs) if isinstance(outputs, Mapping) else type(outputs).__name__
            raise ConfigError(
                f"AdoCallback needs training_step to return a dict with {self.loss_key!r} (the "
                f"loss of each sequence, [B], or of each token, [B, T]); got {got}"
            )
        mask = None if self.mask_key is None else outputs[self.mask_key]
        mixer = self.mixer
        mixer.record(outputs[self.loss_key], batch["domain"], mask)
        if trainer.global_step == self._seen_step:
            return  # accumulating: the optimizer has not stepped
        self._seen_step = trainer.global_step
        drawn = mixer.weights.copy()
        stats = mixer.step(getattr(self, "_lr", None))
        if self.run_log is not None:
            self.run_log.step(stats, drawn, trainer.max_steps)
        every = int(getattr(trainer, "log_every_n_steps", 0) or 0)
        if self.log_metrics and every and trainer.global_step % every == 0:
            # only on the steps Lightning sends to its loggers: a logged value costs ~1 ms
            pl_module.log_dict(logger_metrics(mixer), on_step=True, on_epoch=False)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.run_log is not None and not trainer.sanity_checking:
            metrics = {
                k: float(v)
                for k, v in trainer.callback_metrics.items()
                if isinstance(v, torch.Tensor) and v.numel() == 1 and "val" in k
            }
            self.run_log.eval(trainer.global_step, metrics)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.run_log is not None:
            self.run_log.close()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if self.run_log is not None:
            self.run_log.close()

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # called on every rank; the gather is a collective, rank 0's dict is what is written
        checkpoint[CHECKPOINT_KEY] = self.mixer.gathered_state_dict()

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        state = checkpoint.get(CHECKPOINT_KEY)
        if state is None:
            raise StateError(
                f"the checkpoint has no {CHECKPOINT_KEY!r} entry: it was not saved with an "
                "AdoCallback, so the data side cannot be resumed"
            )
        self.mixer.load_state_dict(state)
        self._resumed_step = self.mixer.steps_done
        logger.info("data side restored (step %d)", self.mixer.steps_done)
