"""The run log: one JSONL schema for everything that logs a run, and one tolerant reader.

``ado simulate``, the training loop (:func:`ado.torch.train`, so ``ado compare`` and the example
scripts too) write the same records, one JSON object per line, each with an ``event``:

* ``start``: ``{"event": "start", "schema": 1, "domains": [...], "prior": [...] | null, ...}``
  plus what the writer knows (its configuration, the policy, the seed);
* ``step``: the statistics of one step, exactly what the policy was given
  (:meth:`ado.StepStats.to_dict`: ``step``, ``counts``, ``loss_sums``, optional ``token_counts``,
  ``ref_loss_sums`` and ``lr``), plus ``weights``, the distribution the step's batch was drawn from;
* ``train``: periodic metrics (``loss``, ``lr``, ``weight/<domain>``, the policy's metrics);
* ``eval``: held-out losses (``loss/<domain>``).

:func:`read_run_log` reads any of them (and the ``{"type": "header" | "step"}`` records of logs
written before this schema): it skips blank lines and lines that are not JSON objects (a torn last
line of a killed run), so ``ado replay`` can replay a simulation, a training run or one run of a
comparison through any policy.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy.typing as npt

from ado._io import atomic_write_text, regular_file
from ado.errors import InvalidInputError
from ado.stats import StepStats

__all__ = [
    "SCHEMA",
    "RunLog",
    "RunLogWriter",
    "read_records",
    "read_run_log",
    "start_record",
    "step_record",
]

logger = logging.getLogger(__name__)

#: Version of the record schema (the ``schema`` field of a ``start`` record).
SCHEMA = 1

_LEGACY_EVENTS = {"header": "start", "step": "step"}


def start_record(domains: list[str], prior: npt.ArrayLike | None, **fields: Any) -> dict[str, Any]:
    """The ``start`` record of a run over ``domains``."""
    import numpy as np

    mu = None if prior is None else np.asarray(prior, dtype=np.float64).tolist()
    return {"event": "start", "schema": SCHEMA, "domains": list(domains), "prior": mu, **fields}


def step_record(
    stats: StepStats, weights: npt.ArrayLike | None = None, **fields: Any
) -> dict[str, Any]:
    """The ``step`` record of ``stats``; ``weights``: what the step's batch was drawn from."""
    import numpy as np

    rec: dict[str, Any] = {"event": "step", **stats.to_dict()}
    if weights is not None:
        rec["weights"] = np.asarray(weights, dtype=np.float64).tolist()
    rec.update(fields)
    return rec


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Every JSON-object line of ``path`` (none if it does not exist), legacy ``type`` fields
    renamed to ``event``; blank and unparseable lines are skipped (a warning names how many,
    unless it is only the last line: a run killed mid-write)."""
    path = Path(path)
    if not path.exists():
        return []
    out: list[dict[str, Any]] = []
    bad: list[int] = []
    lines = path.read_text().splitlines()
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            bad.append(lineno)
            continue
        if not isinstance(rec, dict):
            bad.append(lineno)
            continue
        if "event" not in rec and rec.get("type") in _LEGACY_EVENTS:
            rec["event"] = _LEGACY_EVENTS[rec.pop("type")]
        out.append(rec)
    if bad and bad != [len(lines)]:
        logger.warning("%s: skipped %d line(s) that are not JSON records: %s", path, len(bad), bad)
    return out


@dataclass
class RunLog:
    """A run log in memory.

    Attributes:
        path: where it was read from.
        records: every record, in file order.
    """

    path: Path
    records: list[dict[str, Any]]

    @property
    def header(self) -> dict[str, Any]:
        """The ``start`` record (the first one: a resumed run keeps its original start)."""
        return next(r for r in self.records if r.get("event") == "start")

    @property
    def domains(self) -> list[str]:
        """The run's domain names."""
        return list(self.header["domains"])

    @property
    def prior(self) -> list[float] | None:
        """The run's prior weights, if it logged them."""
        prior = self.header.get("prior")
        return None if prior is None else list(prior)

    def events(self, event: str) -> list[dict[str, Any]]:
        """The records of one kind (``step``, ``train``, ``eval``)."""
        return [r for r in self.records if r.get("event") == event]

    def steps(self) -> Iterator[StepStats]:
        """Each ``step`` record as the :class:`~ado.StepStats` the policy was given.

        Raises:
            InvalidInputError: a step record lacks a field or holds invalid statistics (the
                message names the line's step).
        """
        for rec in self.events("step"):
            yield StepStats.from_dict(rec)


def read_run_log(path: str | Path) -> RunLog:
    """Read a run log (see the module docstring).

    Raises:
        InvalidInputError: the file cannot be read, or has no ``start`` record with ``domains``.
    """
    path = regular_file(path, "run log")
    try:
        records = read_records(path)
    except (OSError, UnicodeDecodeError) as err:
        raise InvalidInputError(f"{path}: cannot read run log: {err}") from None
    log = RunLog(path, records)
    if not any(r.get("event") == "start" and "domains" in r for r in records):
        raise InvalidInputError(
            f"{path}: not a run log: no start record with 'domains' (written by ado simulate, "
            "ado.torch.train or ado compare)"
        )
    return log


class RunLogWriter:
    """Append records to a run log: rank 0 only, or every rank when the path contains ``{rank}``.

    Args:
        path: the JSONL file (``None``: write nothing); ``{rank}`` in it is replaced by ``rank``.
        rank: this process's rank.
        resume_step: ``None`` starts a new log (an existing file is emptied); a step count keeps
            the records of an existing log up to that many completed steps (a killed run may have
            logged further, or left a torn last line) and appends after them, so the log of a
            resumed run equals the uninterrupted run's. The rewrite is atomic: a full disk here
            does not cost the records already logged.

    Raises:
        OSError: the file cannot be written (from :meth:`write`: the message names the file and
            says that the records already written are intact).
    """

    def __init__(self, path: str | None, rank: int = 0, resume_step: int | None = None) -> None:
        self.file: Any = None
        if path is None or (rank != 0 and "{rank}" not in path):
            return
        p = Path(path.replace("{rank}", str(rank)))
        p.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and p.exists():
            # a step record carries its 0-based step index, the others the number of steps done
            kept = [
                json.dumps(rec)
                for rec in read_records(p)
                if rec.get("step", -1) < resume_step + (rec.get("event") != "step")
            ]
            atomic_write_text(p, "".join(line + "\n" for line in kept))
        elif resume_step is None:
            p.write_text("")
        self.file = p.open("a")

    @property
    def active(self) -> bool:
        """Whether this process writes records."""
        return self.file is not None

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (a no-op on a rank that does not log)."""
        if self.file is not None:
            try:
                self.file.write(json.dumps(record) + "\n")
                self.file.flush()
            except OSError as err:
                # The records already written stay; a torn last line is dropped on resume. The
                # file is closed now (its buffer cannot be flushed), so close() cannot raise again.
                broken, self.file = self.file, None
                with contextlib.suppress(OSError):
                    broken.close()
                raise OSError(
                    err.errno,
                    f"cannot append to the training log {broken.name}: {err.strerror}; "
                    "the records already written are intact",
                    broken.name,
                ) from err

    def close(self) -> None:
        """Close the file."""
        if self.file is not None:
            self.file.close()
            self.file = None
