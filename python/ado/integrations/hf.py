"""Hugging Face ``transformers.Trainer`` on a :class:`~ado.data.MixtureLoader` under any policy
(``pip install 'ado[hf]'``).

:class:`AdoTrainer` is a ``Trainer`` whose training data is the loader's stream, mixed by the
policy; :class:`AdoTrainerMixin` gives the same to a ``Trainer`` subclass of your own
(``class MyTrainer(AdoTrainerMixin, MyBaseTrainer)``). What it does:

* The train dataloader is the loader itself: each micro-batch is one loader batch of this rank
  (the loader gives every rank its own slice of one global batch), not re-batched, shuffled or
  sharded again, and drawn only when the Trainer asks for it (no read-ahead across the optimizer
  step, where the weights change). A batch is ``{"input_ids": tokens, "labels": tokens,
  "ado_domain": domain}`` with the loader's packed rows of ``seq_len + 1`` tokens (a causal LM
  shifts the labels itself; :func:`hf_batch`), so the model's context must hold ``seq_len + 1``
  positions.
* The loss is the causal-LM cross-entropy, per token, computed once: its per-sequence means go to
  the :class:`~ado.torch.DataMixer`'s tracker on the device (no host sync per micro-batch) and its
  sum, normalised by the Trainer exactly as its own loss (``num_items_in_batch``, over devices),
  is what is trained.
* ``mixer.step()`` runs once per optimizer step, after gradient accumulation (``on_step_end``):
  one ``[2K]`` all-reduce, the policy update, the next step's weights on the loader.
* The Trainer's log records (so TensorBoard, W&B... through its callbacks) get the policy's
  metrics as ``ado/<name>``: the next step's weights ``ado/weight/<domain>``, refits, the time
  inside the policy.
* Each Trainer checkpoint (``checkpoint-N/``) holds the whole data side of every rank in
  ``ado_data.pt``; ``trainer.train(resume_from_checkpoint=...)`` (a path or ``True``: the newest
  checkpoint that has it, since a save killed between the Trainer's files and ``ado_data.pt``
  leaves one without) restores it, so the run continues bitwise like an uninterrupted one. The
  file is validated whole (strict state models, memory bounded) and a refused load changes
  nothing. The data position comes from there, so
  ``args.ignore_data_skip`` is set: the Trainer must not replay batches to skip them.
* ``run_log=`` writes the library's run log (:mod:`ado.runlog`) that ``ado replay`` reads.

Under ``torchrun`` build the loader with ``rank=args.process_index`` and
``world_size=args.world_size``. ``args.max_steps`` must be set (the stream has no end). The
``dataloader_*`` arguments do not apply (the loader reads ahead in its own threads), and
checkpoints go to ``args.output_dir`` (not to a hyperparameter-search trial's folder).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ado._deps import require
from ado.data import Batch, LoaderConfig, MixtureLoader
from ado.data.loader import ManifestLike
from ado.errors import ConfigError, StateError
from ado.integrations._common import MixtureStream, StepLog, logger_metrics, read_data_state
from ado.policy import Policy
from ado.torch.checkpoint import atomic_save
from ado.torch.mixer import DataMixer

require("transformers", "hf", "ado.integrations.hf")

from transformers import Trainer, TrainerCallback  # noqa: E402
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint  # noqa: E402

__all__ = ["DATA_FILE", "DOMAIN_KEY", "AdoTrainer", "AdoTrainerMixin", "hf_batch"]

logger = logging.getLogger(__name__)

#: The batch key of the rows' domain ids (removed before the model's forward).
DOMAIN_KEY = "ado_domain"
#: The file in each Trainer checkpoint folder that holds the data side (every rank's).
DATA_FILE = "ado_data.pt"


def hf_batch(batch: Batch) -> dict[str, torch.Tensor]:
    """A packed loader batch as a causal-LM Trainer batch: ``input_ids`` = the rows
    ``[B, seq_len + 1]``, ``labels`` = the same with ``-100`` in the first column (the model
    shifts the labels, so the first token is never a target either way; with it masked, the
    Trainer's count of target tokens, ``num_items_in_batch``, is right whether it counts shifted
    labels or not) and ``ado_domain`` ``[B]``.

    Raises:
        ConfigError: the batch is not packed (the loader has no ``pack``).
    """
    if batch.tokens is None:
        raise ConfigError("AdoTrainer needs a packed loader (MixtureLoader(..., pack=...))")
    tokens = torch.from_numpy(np.asarray(batch.tokens, dtype=np.int64))
    labels = tokens.clone()
    labels[:, 0] = -100  # never a target; so both of the Trainer's token counts are right
    domain = torch.from_numpy(np.asarray(batch.domain, dtype=np.int64))
    return {"input_ids": tokens, "labels": labels, DOMAIN_KEY: domain}


def _missing_untied(model: torch.nn.Module, missing: list[str]) -> list[str]:
    """``missing`` less the parameters tied to (one tensor with) a parameter that was loaded."""
    groups: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(param), []).append(name)
    gone = set(missing)
    restored = {n for g in groups.values() if any(m not in gone for m in g) for n in g}
    return [k for k in missing if k not in restored]


def _last_complete_checkpoint(output_dir: str) -> str:
    """The newest ``checkpoint-N`` of ``output_dir`` that holds :data:`DATA_FILE` (the Trainer
    writes its files first and ``on_save`` the data side last, so a save killed in between
    leaves a checkpoint without it: skipped, with a warning).

    Raises:
        StateError: no checkpoint, or none with the data side (the message names the newest).
    """
    newest = get_last_checkpoint(output_dir)  # type: ignore[no-untyped-call]
    if newest is None:
        raise StateError(f"no checkpoint to resume from in {output_dir}")
    pattern = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
    found = [
        (int(m.group(1)), entry.path)
        for entry in os.scandir(output_dir)
        if entry.is_dir() and (m := pattern.match(entry.name))
    ]
    for _, folder in sorted(found, reverse=True):
        if (Path(folder) / DATA_FILE).is_file():
            if Path(folder) != Path(newest):
                logger.warning(
                    "%s has no %s (its save was interrupted); resuming from %s, the newest "
                    "complete checkpoint",
                    newest,
                    DATA_FILE,
                    folder,
                )
            return folder
    return str(newest)  # refused with the message that names it


class _AdoCallback(TrainerCallback):
    """The optimizer-step hooks of :class:`AdoTrainerMixin` (added by it; not used alone)."""

    def __init__(self, trainer: AdoTrainerMixin) -> None:
        self.trainer = trainer

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        mixer = self.trainer.mixer
        if state.global_step != mixer.steps_done:
            raise StateError(
                f"the Trainer is at step {state.global_step} but the data side at step "
                f"{mixer.steps_done}: resume through AdoTrainer.train(resume_from_checkpoint=...)"
            )

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        optimizer = kwargs.get("optimizer")
        if optimizer is not None:
            self._lr = float(optimizer.param_groups[0]["lr"])  # StepStats.lr of this step
            if self.trainer.ado_log is not None:
                self.trainer.ado_log.lr = self._lr

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        mixer = self.trainer.mixer
        drawn = mixer.weights.copy()
        stats = mixer.step(getattr(self, "_lr", None))
        if self.trainer.ado_log is not None:
            self.trainer.ado_log.step(stats, drawn, args.max_steps)

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        metrics = kwargs.get("metrics") or {}
        if self.trainer.ado_log is not None:
            self.trainer.ado_log.eval(state.global_step, metrics)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        data = self.trainer.mixer.gathered_state_dict()  # a collective: on every rank
        if args.should_save:
            folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            atomic_save(data, folder / DATA_FILE, overwrite=True)


class AdoTrainerMixin:
    """Train a ``transformers.Trainer`` (subclass) on a :class:`~ado.data.MixtureLoader` mixed by a
    policy (see the module docstring). Put it first: ``class T(AdoTrainerMixin, Trainer)``.

    Args:
        *args: the Trainer's positional arguments.
        loader: this rank's packed loader (``rank=args.process_index``,
            ``world_size=args.world_size``), or its :class:`~ado.data.LoaderConfig` (with a
            ``pack``; its rank and world size are then the Trainer's) and ``manifest``.
        manifest: the training manifest, with a ``LoaderConfig`` (not with a loader).
        policy: the policy (the loader's domains, in order).
        run_log: the run log's path (``{rank}`` in it: one per rank; else rank 0 writes), or
            ``None``.
        log_every: steps between the run log's ``train`` records.
        log_batches: add each step's sample keys and domains to the run log (tests).
        verify_every: every this many steps, check that all ranks hold bitwise equal weights
            (:class:`~ado.torch.DataMixer`; a debug check, one small collective).
        run_config: extra fields for the run log's ``start`` record (the run's configuration).
        **kwargs: the Trainer's keyword arguments (no ``train_dataset`` and no
            ``compute_loss_func``: the loader is the data and the loss is the mixer's).

    Attributes:
        mixer: the :class:`~ado.torch.DataMixer` (loader, policy and loss tracker).

    Raises:
        ConfigError: a ``train_dataset`` or ``compute_loss_func``, label smoothing, no
            ``max_steps``, an unpacked loader, or a loader built for another rank or world size
            than the Trainer's.
    """

    mixer: DataMixer
    ado_log: StepLog | None
    args: Any
    state: Any
    current_gradient_accumulation_steps: int

    def __init__(
        self,
        *args: Any,
        loader: MixtureLoader | LoaderConfig,
        policy: Policy,
        manifest: ManifestLike | None = None,
        run_log: str | os.PathLike[str] | None = None,
        log_every: int = 1,
        log_batches: bool = False,
        verify_every: int = 0,
        run_config: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        for name in ("train_dataset", "compute_loss_func"):
            if kwargs.get(name) is not None:
                raise ConfigError(
                    f"AdoTrainer takes no {name}: the training data is the loader's mixture and "
                    "the loss is recorded per sequence for the policy"
                )
        kwargs["compute_loss_func"] = self._ado_loss
        super().__init__(*args, **kwargs)
        targs = self.args
        if targs.max_steps is None or targs.max_steps <= 0:
            raise ConfigError(
                "AdoTrainer needs TrainingArguments(max_steps=N > 0): the mixture stream is endless"
            )
        if targs.label_smoothing_factor:
            raise ConfigError("AdoTrainer does not support label_smoothing_factor (set it to 0)")
        if isinstance(loader, LoaderConfig) != (manifest is not None):
            raise ConfigError("AdoTrainer takes a MixtureLoader, or a LoaderConfig and a manifest")
        if isinstance(loader, LoaderConfig):
            if loader.pack is None:
                raise ConfigError("AdoTrainer needs packed rows: a LoaderConfig with a pack")
            assert manifest is not None
            loader = loader.for_rank(targs.process_index, targs.world_size).build(manifest)
        if loader.pack is None:
            raise ConfigError("AdoTrainer needs a packed loader (MixtureLoader(..., pack=...))")
        if (loader.rank, loader.world_size) != (targs.process_index, targs.world_size):
            raise ConfigError(
                f"the loader is rank {loader.rank} of {loader.world_size} but the Trainer's "
                f"process is {targs.process_index} of {targs.world_size}: build it with "
                "rank=args.process_index, world_size=args.world_size"
            )
        # the mixer restores the data position on resume; the Trainer must not skip batches
        targs.ignore_data_skip = True
        self.mixer = DataMixer(
            loader,
            policy,
            device=targs.device,
            grad_accum=targs.gradient_accumulation_steps,
            tokens_per_sample=loader.pack.seq_len,
            verify_every=verify_every,
        )
        self.ado_log = None
        self._ado_run_log = None if run_log is None else os.fspath(run_log)
        self._ado_log_every = log_every
        self._ado_log_batches = log_batches
        self._ado_run_config = dict(run_config or {})
        self._ado_domain: torch.Tensor | None = None
        self.add_callback(_AdoCallback(self))  # type: ignore[attr-defined]

    # -- data ---------------------------------------------------------------------------------
    def get_train_dataloader(self) -> Any:
        """The loader's micro-batches (one per Trainer fetch; see :func:`hf_batch`)."""
        return MixtureStream(self.mixer, hf_batch, self._ado_on_batch)

    def _ado_on_batch(self, batch: Batch) -> None:
        if self.ado_log is not None:
            self.ado_log.batch(batch)

    # -- loss ---------------------------------------------------------------------------------
    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> Any:
        """The Trainer's ``compute_loss`` with the rows' domains taken out of ``inputs`` and the
        per-token loss of :meth:`_ado_loss` (recorded for the policy while training)."""
        self._ado_domain = inputs.pop(DOMAIN_KEY, None)
        try:
            return super().compute_loss(  # type: ignore[misc]
                model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )
        finally:
            self._ado_domain = None

    def _ado_loss(
        self, outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None
    ) -> torch.Tensor:
        """Causal-LM cross-entropy (labels shifted, ``-100`` ignored) normalised like the
        Trainer's own loss; the per-sequence means are recorded with the rows' domains."""
        logits = outputs["logits"] if isinstance(outputs, Mapping) else outputs[0]
        targets = labels[..., 1:]
        per_token = F.cross_entropy(
            logits[..., :-1, :].float().reshape(-1, logits.shape[-1]),
            targets.reshape(-1).to(logits.device),
            ignore_index=-100,
            reduction="none",
        ).view(targets.shape)
        mask = targets != -100
        if self._ado_domain is not None and torch.is_grad_enabled():
            self.mixer.record(per_token, self._ado_domain, mask)
        total = per_token.sum()
        if num_items_in_batch is None:
            # a per-batch mean, scaled for gradient accumulation like the Trainer's own
            count = mask.sum().clamp(min=1)
            return total / count / self.current_gradient_accumulation_steps
        scaled: torch.Tensor = total / num_items_in_batch
        return scaled

    # -- logs ---------------------------------------------------------------------------------
    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """The Trainer's ``log``, with the policy's metrics (``ado/...``) in training records."""
        if "loss" in logs and getattr(self, "is_in_train", False):
            logs.update(logger_metrics(self.mixer))
        super().log(logs, *args, **kwargs)  # type: ignore[misc]

    # -- resume -------------------------------------------------------------------------------
    def _issue_warnings_after_load(self, load_result: Any) -> None:
        """The Trainer's check of a resumed model, less tied weights: GPT-2's ``lm_head.weight``
        is its input embedding, which the checkpoint stores once, so the Trainer reported it as
        "missing keys" although it is restored with the embedding."""
        keys = list(load_result.missing_keys)
        missing = _missing_untied(self.model, keys)  # type: ignore[attr-defined]
        if len(missing) < len(keys):
            logger.debug("restored through a tied weight: %s", sorted(set(keys) - set(missing)))
            load_result = type(load_result)(missing, load_result.unexpected_keys)
        super()._issue_warnings_after_load(load_result)  # type: ignore[misc]

    def train(
        self, resume_from_checkpoint: str | os.PathLike[str] | bool | None = None, **kwargs: Any
    ) -> Any:
        """``Trainer.train``, first restoring the data side from the checkpoint resumed from
        (a folder, or ``True``: the newest in ``args.output_dir`` that holds ``ado_data.pt``).

        Raises:
            StateError: the checkpoint has no ``ado_data.pt``, or it does not fit this run (other
                domains, loader, world size).
        """
        path: str | None = None
        if resume_from_checkpoint is True:
            path = _last_complete_checkpoint(self.args.output_dir)
        elif resume_from_checkpoint not in (None, False):
            path = os.fspath(resume_from_checkpoint)  # type: ignore[arg-type]
        if path is not None:
            data = Path(path) / DATA_FILE
            if not data.is_file():
                raise StateError(
                    f"{data} does not exist: {path} was not saved by an AdoTrainer, or the save "
                    "was interrupted"
                )
            self.mixer.load_state_dict(read_data_state(data))
            logger.info("data side restored from %s (step %d)", data, self.mixer.steps_done)
        targs = self.args
        world = targs.world_size
        pack = self.mixer.loader.pack
        assert pack is not None
        self.ado_log = StepLog(
            self.mixer,
            self._ado_run_log,
            rank=targs.process_index,
            resume_step=None if path is None else self.mixer.steps_done,
            log_every=self._ado_log_every,
            log_batches=self._ado_log_batches,
            tokens_per_step=self.mixer.loader.batch_size
            * self.mixer.grad_accum
            * world
            * pack.seq_len,
        )
        model = getattr(self, "model", None)
        params = None if model is None else sum(p.numel() for p in model.parameters())
        self.ado_log.start(
            source="hf", world_size=world, params=params, config=self._ado_run_config
        )
        try:
            return super().train(resume_from_checkpoint=path, **kwargs)  # type: ignore[misc]
        finally:
            self.ado_log.close()


class AdoTrainer(AdoTrainerMixin, Trainer):  # type: ignore[misc]
    """A ``transformers.Trainer`` trained on a mixture (see :class:`AdoTrainerMixin`)::

    trainer = AdoTrainer(model=model, args=TrainingArguments(..., max_steps=N),
                         loader=loader, policy=policy)
    trainer.train()
    """
