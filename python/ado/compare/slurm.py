"""``ado compare --launcher slurm``: each run is a Slurm job, submitted through ``submitit``.

A run's job is recorded in its folder (``runs/<policy>/seed<k>/slurm.json``: the current job id
and every earlier one), so a second ``ado compare`` with the same arguments attaches to the jobs
that are still queued or running instead of submitting them again. A job is the run's
:func:`~ado.compare.run.train_one`: on one node in-process (one rank) or under ``torchrun``; on
``nnodes`` nodes, one task per node starts ``torchrun`` for its node.

Resuming: a job preempted or reaching its time limit is requeued by Slurm with the same id
(``submitit``'s checkpoint/requeue; the run continues from its newest checkpoint). A job that
fails is submitted again (``retries`` times, each continuing from the run's checkpoints). A job
cancelled with ``scancel`` is not resubmitted by the compare that saw it end (someone stopped
it): the compare waits for the other runs and then fails, naming it; the next ``ado compare``
with the same arguments resumes it from its checkpoints.

Job states come from ``squeue --states=all`` (no accounting database needed). Every cluster
setting (partition, time limit, GPUs, any other ``sbatch`` option) comes from the command line.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import submitit
from submitit.helpers import Checkpointable

from ado._io import atomic_write_text
from ado.errors import ConfigError, RunFailedError

__all__ = [
    "RunJob",
    "SlurmOptions",
    "SlurmPool",
    "job_states",
    "node_role",
    "parse_sbatch_options",
    "read_jobs",
]

logger = logging.getLogger(__name__)

#: States of a job that has not ended (``squeue`` long names).
ALIVE = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "REQUEUED",
        "REQUEUE_FED",
        "REQUEUE_HOLD",
        "RESIZING",
        "SUSPENDED",
        "STAGE_OUT",
        "SIGNALING",
        "STOPPED",
        "PREEMPTED",  # a preempted job that Slurm requeues
    }
)
#: End states that another submission does not fix without someone's decision.
CANCELLED = frozenset({"CANCELLED", "DEADLINE", "REVOKED"})
#: Time-outs of the squeue/sbatch commands.
COMMAND_TIMEOUT_S = 120


def parse_sbatch_options(items: Sequence[str]) -> dict[str, str | bool]:
    """``sbatch`` options as given on the command line (``account=abc``, ``--qos=high``,
    ``exclusive``) → submitit's ``additional_parameters``.

    Raises:
        ConfigError: an empty option name.
    """
    out: dict[str, str | bool] = {}
    for item in items:
        name, eq, value = item.lstrip("-").partition("=")
        key = name.strip().replace("-", "_")
        if not key:
            raise ConfigError(f"bad sbatch option {item!r}: expected NAME=VALUE or NAME")
        out[key] = value if eq else True
    return out


@dataclass(frozen=True)
class SlurmOptions:
    """How runs are submitted (nothing here has a cluster-specific default).

    Attributes:
        partition: ``--partition`` (None: the cluster's default).
        time_min: time limit per job in minutes (None: the partition's).
        gpus_per_node: ``--gpus-per-node`` (None: ranks per node on a CUDA preset, else none).
        cpus_per_task: CPUs of each node's task (None: one per rank on the node).
        sbatch: any other ``sbatch`` options (``NAME=VALUE`` or ``NAME``).
        retries: times a failed job is submitted again by one ``ado compare``.
        poll_s: seconds between job-state checks.
    """

    partition: str | None = None
    time_min: int | None = None
    gpus_per_node: int | None = None
    cpus_per_task: int | None = None
    sbatch: tuple[str, ...] = field(default_factory=tuple)
    retries: int = 1
    poll_s: float = 10.0

    def __post_init__(self) -> None:
        for name in ("time_min", "gpus_per_node", "cpus_per_task"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"slurm {name} must be >= 1, got {value}")
        if self.retries < 0:
            raise ConfigError(f"slurm retries must be >= 0, got {self.retries}")
        if self.poll_s <= 0:
            raise ConfigError(f"slurm poll_s must be > 0, got {self.poll_s}")
        parse_sbatch_options(self.sbatch)

    def describe(self) -> dict[str, Any]:
        """JSON-safe record for the report."""
        return {
            "partition": self.partition,
            "time_min": self.time_min,
            "gpus_per_node": self.gpus_per_node,
            "cpus_per_task": self.cpus_per_task,
            "sbatch": list(self.sbatch),
            "retries": self.retries,
        }


def job_states(job_ids: Sequence[str], env: dict[str, str] | None = None) -> dict[str, str] | None:
    """Each job's state from ``squeue --states=all`` (ids it no longer knows are left out), or
    None when squeue itself failed (the controller unreachable: the states are unknown)."""
    if not job_ids:
        return {}
    cmd = ["squeue", "--noheader", "--states=all", "--format=%i|%T", f"--jobs={','.join(job_ids)}"]
    try:
        got = subprocess.run(
            cmd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False, env=env
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        logger.warning("squeue failed: %s", err)
        return None
    if got.returncode != 0:
        if "Invalid job id" in got.stderr:  # none of them is known any more
            return {}
        logger.warning("squeue failed (exit %d): %s", got.returncode, got.stderr.strip()[-500:])
        return None
    states = {}
    for line in got.stdout.splitlines():
        jid, _, state = line.strip().partition("|")
        if jid:
            states[jid] = state.strip().split()[0] if state.strip() else "UNKNOWN"
    return states


class RunJob(Checkpointable):
    """A run as a submitit job: ``fn(*args)`` (``train_one``). Preemption or a time-out requeues
    the same call (``Checkpointable.checkpoint``); the run resumes from its newest checkpoint."""

    def __init__(self) -> None:
        super().__init__()

    def __call__(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)


@dataclass
class _Tracked:
    key: str
    folder: Path
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    future: Future[dict[str, Any]]
    job_id: str
    attempts: int = 1


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive lock on ``folder`` (two compares never submit the same run twice)."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".slurm.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_jobs(folder: Path) -> list[str]:
    """The job ids recorded in a run folder (oldest first; the last is the current one)."""
    path = folder / "slurm.json"
    if not path.is_file():
        return []
    try:
        jobs = json.loads(path.read_text()).get("job_ids", [])
    except (OSError, ValueError, AttributeError) as err:
        raise ConfigError(f"{path}: unreadable ({err}); remove it to submit again") from None
    return [str(j) for j in jobs]


class SlurmPool:
    """Runs as Slurm jobs, each with a :class:`~concurrent.futures.Future` of its result (what
    ``ado compare``'s scheduler waits on, as on a process pool).

    Args:
        folder: where submitit keeps its job scripts, pickles and logs (``<out>/slurm``).
        options: the submission options.
        nodes: nodes per run (one task per node: it starts that node's torchrun).
        default_cpus: CPUs of a node's task unless ``options.cpus_per_task`` (its ranks).
        default_gpus: GPUs per node unless ``options.gpus_per_node`` (None: none asked for).
        name: job-name prefix.
    """

    def __init__(
        self,
        folder: Path,
        options: SlurmOptions,
        *,
        nodes: int,
        default_cpus: int,
        default_gpus: int | None,
        name: str = "ado",
    ) -> None:
        self.options = options
        self.folder = folder
        self.name = name
        self.executor = submitit.SlurmExecutor(folder=folder / "%j", max_num_timeout=3)
        # None leaves an option out of the job script (submitit's own defaults, a 5-minute
        # time limit and a wckey, would otherwise be sent): the cluster's defaults apply
        self.executor.update_parameters(
            nodes=nodes,
            ntasks_per_node=1,
            cpus_per_task=options.cpus_per_task or default_cpus,
            gpus_per_node=options.gpus_per_node or default_gpus,
            partition=options.partition,
            time=options.time_min,
            wckey=None,
            additional_parameters=parse_sbatch_options(options.sbatch),
        )
        self._tracked: list[_Tracked] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll_loop, name="ado-slurm-poll", daemon=True)
        self._poller.start()

    def submit(
        self, key: str, folder: Path, fn: Callable[..., Any], *args: Any
    ) -> Future[dict[str, Any]]:
        """Run ``fn(*args)`` as the job of run ``key`` (run folder ``folder``): attach to its
        recorded job if that is still queued or running, else submit a new one."""
        future: Future[dict[str, Any]] = Future()
        with _locked(folder):
            jobs = read_jobs(folder)
            states = job_states(jobs[-1:]) if jobs else {}
            state = (states or {}).get(jobs[-1]) if jobs else None
            if jobs and (states is None or state in ALIVE):
                job_id = jobs[-1]
                logger.info("%s: attaching to Slurm job %s (%s)", key, job_id, state or "unknown")
            else:
                job_id = self._submit(key, folder, fn, args)
        with self._lock:
            self._tracked.append(_Tracked(key, folder, fn, args, future, job_id))
        return future

    def _submit(self, key: str, folder: Path, fn: Callable[..., Any], args: tuple[Any, ...]) -> str:
        """Submit a job (under the run folder's lock) and record its id there."""
        self.executor.update_parameters(job_name=f"{self.name}-{key.replace('/', '-')}")
        job = self.executor.submit(RunJob(), fn, *args)
        jobs = [*read_jobs(folder), str(job.job_id)]
        atomic_write_text(folder / "slurm.json", json.dumps({"job_ids": jobs}, indent=2) + "\n")
        logger.info("%s: submitted Slurm job %s", key, job.job_id)
        return str(job.job_id)

    def log_of(self, job_id: str) -> Path:
        """The job's stderr log (submitit's)."""
        return self.folder / job_id / f"{job_id}_0_log.err"

    def running(self) -> int:
        """Jobs not finished yet."""
        with self._lock:
            return sum(not t.future.done() for t in self._tracked)

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.options.poll_s):
            try:
                self.poll()
            except Exception as err:  # the poller must never die silently
                logger.exception("Slurm poll failed: %s", err)

    def poll(self) -> None:
        """Check every unfinished job once; finish the futures of those that ended."""
        with self._lock:
            open_ = [t for t in self._tracked if not t.future.done()]
        if not open_:
            return
        states = job_states(sorted({t.job_id for t in open_}))
        if states is None:
            return  # squeue failed: look again later
        for t in open_:
            state = states.get(t.job_id)  # None: Slurm has forgotten the job (it ended)
            if state in ALIVE:
                continue
            done = t.folder / "result.json"
            if done.is_file():
                try:
                    t.future.set_result(json.loads(done.read_text()))
                except (OSError, ValueError) as err:
                    t.future.set_exception(RunFailedError(f"{done}: unreadable: {err}"))
                continue
            self._ended_without_result(t, state or "ENDED")

    def _ended_without_result(self, t: _Tracked, state: str) -> None:
        log = self.log_of(t.job_id)
        tail = log.read_text(errors="replace")[-2000:] if log.is_file() else "(no log)"
        if state not in CANCELLED and t.attempts <= self.options.retries:
            logger.warning(
                "%s: Slurm job %s ended %s without a result; submitting it again (it resumes "
                "from its checkpoints); its log ends:\n%s",
                t.key,
                t.job_id,
                state,
                tail,
            )
            with _locked(t.folder):
                t.job_id = self._submit(t.key, t.folder, t.fn, t.args)
            t.attempts += 1
            return
        why = "was cancelled" if state in CANCELLED else f"ended {state} (retries used up)"
        t.future.set_exception(
            RunFailedError(
                f"{t.key}: Slurm job {t.job_id} {why} before the run finished; run the same "
                f"`ado compare` again to resume it from its checkpoints (log: {log}):\n{tail}"
            )
        )

    def shutdown(self, cancel_futures: bool = True) -> None:
        """Stop watching (the jobs keep running: the next compare attaches to them)."""
        self._stop.set()
        self._poller.join(timeout=COMMAND_TIMEOUT_S + 5)
        if cancel_futures:
            with self._lock:
                for t in self._tracked:
                    t.future.cancel()


def node_role() -> tuple[int, str | None, int | None]:
    """(node rank, first node's host, a rendezvous port) of the Slurm job this runs in: what a
    multi-node run's ``torchrun`` needs. The port is derived from the job id, so every node of
    the job picks the same one and two jobs on one node rarely collide."""
    env = submitit.JobEnvironment()
    hosts = env.hostnames
    port = 20000 + int(str(env.raw_job_id).split("_")[0]) % 20000
    return env.node, (hosts[0] if hosts else None), port
