"""What the stack adapters share: the micro-batch stream of a :class:`~ado.torch.DataMixer`, the
run log (the one schema of :mod:`ado.runlog`) and the metrics handed to a stack's loggers."""

from __future__ import annotations

import logging
import os
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from ado.data import Batch
from ado.errors import StateError
from ado.runlog import RunLogWriter, start_record, step_record
from ado.stats import StepStats
from ado.torch.mixer import DataMixer, weights_hash

__all__ = [
    "MAX_STATE_PICKLE_BYTES",
    "MixtureStream",
    "SizedMixtureStream",
    "StepLog",
    "logger_metrics",
    "read_data_state",
]

logger = logging.getLogger(__name__)


#: The most bytes of pickled objects (all but tensor data) a data-state file may hold: the JSON
#: strings of :meth:`~ado.torch.DataMixer.state_dict` are far smaller even for 10^5 domains.
MAX_STATE_PICKLE_BYTES = 256 * 2**20


def read_data_state(path: str | os.PathLike[str]) -> Any:
    """A data-state file written by an adapter (``torch.save`` of
    :meth:`~ado.torch.DataMixer.gathered_state_dict`), read with bounded memory: its pickled
    part is at most :data:`MAX_STATE_PICKLE_BYTES` (checked in the zip directory before anything
    is read) and tensors are memory-mapped, not read (a state holds none; a planted one is
    refused by the state's validation without being touched).

    Raises:
        StateError: not a ``torch.save`` zip archive, or a pickled part over the limit.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            # every member but the tensors' storages (<archive>/data/<n>) is read into memory
            pickled = sum(
                i.file_size for i in archive.infolist() if i.filename.split("/")[-2:-1] != ["data"]
            )
    except (zipfile.BadZipFile, OSError) as err:
        raise StateError(f"{path}: not a data state written by torch.save ({err})") from None
    if pickled > MAX_STATE_PICKLE_BYTES:
        raise StateError(
            f"{path}: {pickled} bytes of pickled objects; a data state holds at most "
            f"{MAX_STATE_PICKLE_BYTES}"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (RuntimeError, ValueError, EOFError) as err:  # weights_only refusals, corrupt data
        raise StateError(f"{path}: cannot be read as a data state: {err}") from None


class MixtureStream:
    """The mixer's micro-batches as an iterable for a trainer's training loop.

    Each ``next()`` draws one micro-batch with :meth:`DataMixer.next_batch` (which refuses a
    ``grad_accum + 1``-th draw before :meth:`DataMixer.step`, so a loop that fetched ahead of the
    optimizer step fails loudly instead of drawing with stale weights) and converts it.

    Args:
        mixer: the data side.
        convert: a loader batch to what the training step takes.
        on_batch: called with each loader batch before it is converted (the run log's keys).
        length: micro-batches per ``iter()`` (``len()`` of the stream); ``None``: endless and
            without a length.
    """

    def __init__(
        self,
        mixer: DataMixer,
        convert: Callable[[Batch], Any],
        on_batch: Callable[[Batch], None] | None = None,
        length: int | None = None,
    ) -> None:
        self.mixer = mixer
        self.convert = convert
        self.on_batch = on_batch
        self.length = length

    def __iter__(self) -> Iterator[Any]:
        drawn = 0
        while self.length is None or drawn < self.length:
            batch = self.mixer.next_batch()
            if self.on_batch is not None:
                self.on_batch(batch)
            drawn += 1
            yield self.convert(batch)


class SizedMixtureStream(MixtureStream):
    """A :class:`MixtureStream` with a ``len()`` (a loop that knows the length of an epoch does
    not fetch ahead to find its end)."""

    def __init__(
        self,
        mixer: DataMixer,
        convert: Callable[[Batch], Any],
        on_batch: Callable[[Batch], None] | None,
        length: int,
    ) -> None:
        super().__init__(mixer, convert, on_batch, length)
        self.size = length

    def __len__(self) -> int:
        return self.size


def logger_metrics(mixer: DataMixer, prefix: str = "ado/") -> dict[str, float]:
    """The policy's scalar metrics (``weight/<domain>`` for the next step's weights, refits...)
    and the time the last ``policy.update`` took, keyed ``<prefix><name>``."""
    out = {
        f"{prefix}{k}": float(v)
        for k, v in mixer.policy.metrics().items()
        if isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)
    }
    out[f"{prefix}policy_ms"] = 1e3 * mixer.last_policy_seconds
    return out


class StepLog:
    """The run log of a run trained through an adapter: a ``start`` record, one ``step`` record per
    optimizer step (the statistics the policy was given and the weights the step's batches were
    drawn from) and every ``log_every`` steps a ``train`` record (loss, learning rate, tokens/s,
    the weights' hash and the policy's metrics), as :func:`ado.torch.train` writes them, so
    ``ado replay`` and ``ado compare``'s readers read it.

    Args:
        mixer: the data side.
        path: the JSONL file (``None``: no log); ``{rank}`` in it gives every rank its own file,
            otherwise rank 0 writes.
        rank: this process's rank.
        resume_step: the completed steps of the checkpoint resumed from (the log is cut back to
            them), or ``None`` for a new run.
        log_every: steps between ``train`` records.
        log_batches: add this rank's sample keys and domains of the step to each ``train``
            record (tests compare them between runs).
        tokens_per_step: training tokens of one optimizer step over all ranks.
    """

    def __init__(
        self,
        mixer: DataMixer,
        path: str | None,
        *,
        rank: int,
        resume_step: int | None,
        log_every: int,
        log_batches: bool,
        tokens_per_step: int,
    ) -> None:
        self.mixer = mixer
        self.writer = RunLogWriter(path, rank, resume_step)
        self.resumed = resume_step is not None
        self.start_step = resume_step or 0
        self.log_every = max(int(log_every), 1)
        self.log_batches = log_batches
        self.tokens_per_step = tokens_per_step
        self.keys: list[str] = []
        self.domains: list[int] = []
        self.t0 = self.mark = time.perf_counter()
        self.lr: float | None = None

    def start(self, *, config: Mapping[str, Any], **fields: Any) -> None:
        """Write the ``start`` record (a resumed run keeps the original one); its ``config``
        holds the loader's (``"loader"``: its JSON form, without storage options)."""
        if not self.resumed:
            loader = self.mixer.loader.config.model_dump(mode="json")
            config = {"loader": loader, **config}
            self.writer.write(
                start_record(
                    self.mixer.domains, self.mixer.policy.prior, step=0, config=config, **fields
                )
            )
        self.t0 = self.mark = time.perf_counter()

    def batch(self, batch: Batch) -> None:
        """Note a micro-batch of the step in progress (for ``log_batches``)."""
        if self.log_batches and self.writer.active:
            self.keys.extend(batch.keys)
            self.domains.extend(int(d) for d in batch.domain)

    def step(self, stats: StepStats, drawn: npt.NDArray[np.float64], last_step: int) -> None:
        """Log optimizer step ``stats.step`` (``drawn``: its weights; ``last_step``: the
        run's number of steps, which always gets a ``train`` record)."""
        if not self.writer.active:
            return
        now = time.perf_counter()
        self.writer.write(
            step_record(
                stats, drawn, step_s=now - self.mark, policy_s=self.mixer.last_policy_seconds
            )
        )
        self.mark = now
        done = stats.step + 1
        if done % self.log_every == 0 or done == last_step:
            ran = done - self.start_step
            rec: dict[str, Any] = {
                "event": "train",
                "step": done,
                "loss": float(stats.loss_sums.sum() / max(stats.counts.sum(), 1.0)),
                "lr": self.lr,
                "tokens": done * self.tokens_per_step,
                "tokens_per_s": ran * self.tokens_per_step / max(now - self.t0, 1e-9),
                "weights_hash": weights_hash(self.mixer.weights),
                "policy_ms_per_step": 1e3 * self.mixer.policy_seconds / max(ran, 1),
                **self.mixer.policy.metrics(),
            }
            if self.log_batches:
                rec["keys"], rec["domain"] = self.keys, self.domains
            self.writer.write(rec)
        self.keys, self.domains = [], []

    def eval(self, done: int, metrics: dict[str, Any]) -> None:
        """Log an evaluation after ``done`` steps (its numeric metrics)."""
        scalars = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
        self.writer.write({"event": "eval", "step": done, **scalars})

    def close(self) -> None:
        """Close the file."""
        self.writer.close()
