"""``ado compare --launcher slurm`` on a real one-node Slurm cluster (the ``slurm`` fixture):
2 policies x 2 seeds, each run a job of 2 gloo ranks under torchrun. One job is killed with
``scancel`` after its first checkpoint, another is preempted (requeued by Slurm under the same
id); a second compare started while the jobs run attaches to the running ones (no job is
submitted twice) and resumes the killed run from its checkpoint; the preempted run resumes from
its own checkpoint when Slurm starts it again.

"The same report" as ``--launcher local`` means: ``report.json`` with the fields that describe
how and how fast the runs ran left out (:data:`HOW`: timings, ``resumed``, ``launch``, the
command line) is equal, floats to a relative 1e-6 (per-run held-out and OOD losses, tokens seen,
final weights, steps, tokens; the summary; ADO against each baseline), and every other field
exactly."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")
pytest.importorskip("submitit")

#: report fields that say how (and how fast) runs ran, not what they learned
HOW = frozenset(
    {
        "wall_seconds",
        "policy_seconds",
        "wall_seconds_mean",
        "policy_seconds_mean",
        "resumed",
        "launch",
        "command",
    }
)
RTOL = 1e-6
STEPS = "120"  # checkpoints every 40 steps: time to cancel a job between two of them
WAIT_S = 600  # a hang fails the test instead of blocking the suite


def _ado() -> str:
    ado = Path(sys.executable).with_name("ado")
    return str(ado) if ado.exists() else "ado"


def _args(corpus: Path, out: Path, *extra: str) -> list[str]:
    args = [_ado(), "compare", "--corpus", str(corpus), "--policies", "natural", "ado"]
    args += ["--seeds", "0", "1", "--steps", STEPS, "--nproc-per-node", "2", "--out", str(out)]
    return [*args, "--no-progress", *extra]


def assert_same_report(a: Any, b: Any, where: str = "report") -> None:
    """``a`` equals ``b`` without the :data:`HOW` fields, floats to a relative :data:`RTOL`."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = set(a) - HOW
        assert keys == set(b) - HOW, f"{where}: fields {sorted(keys ^ (set(b) - HOW))}"
        for k in sorted(keys):
            assert_same_report(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{where}: {len(a)} != {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_report(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, rel=RTOL, nan_ok=True), f"{where}: {a} != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _job_ids(out: Path) -> dict[str, list[str]]:
    return {
        f"{p.parent.parent.name}/{p.parent.name}": json.loads(p.read_text())["job_ids"]
        for p in sorted(out.glob("runs/*/seed*/slurm.json"))
    }


def _mid_run(out: Path, first: subprocess.Popen[bytes], but: Path | None = None) -> Path:
    """A run folder (other than ``but``) whose job wrote its first checkpoint and not yet its
    second: it is mid-run, with a third of the run still to go."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        for folder in out.glob("runs/*/seed*"):
            ckpts = list(folder.glob("ckpt/rank_0/step_*.pt"))
            if folder != but and len(ckpts) == 1 and not (folder / "result.json").exists():
                return folder
        assert first.poll() is None, "the first compare ended before the runs checkpointed"
        time.sleep(0.1)
    raise AssertionError(f"no run was between its checkpoints within {WAIT_S} s")


def _preempt(job: str, env: dict[str, str]) -> None:
    """What a preemption with PreemptMode=REQUEUE does: kill the job and queue it again under
    the same id (``scontrol requeue``); then let it start at once (a requeued job otherwise
    waits two minutes: its BeginTime)."""
    subprocess.run(["scontrol", "requeue", job], env=env, check=True)
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        state = subprocess.run(
            ["squeue", "--noheader", "--states=all", "--format=%T %r", f"--jobs={job}"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        if state[:2] == ["PENDING", "BeginTime"]:
            subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], env=env)
        elif state[:1] in (["RUNNING"], ["COMPLETED"]):
            return
        time.sleep(0.2)
    raise AssertionError(f"the requeued job {job} did not start again within {WAIT_S} s")


def test_slurm_compare_resumes_a_cancelled_job_and_reports_as_local(
    slurm: dict[str, str], tiny_corpus: Path, tmp_path: Path
) -> None:
    env = {**slurm, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "slurm"
    slurm_args = ["--launcher", "slurm", "--slurm-poll", "1", "--slurm-cpus-per-task", "1"]
    cmd = _args(tiny_corpus, out, *slurm_args)
    first_log = (tmp_path / "first.log").open("wb")
    first = subprocess.Popen(cmd, env=env, stdout=first_log, stderr=subprocess.STDOUT)
    try:
        victim = _mid_run(out, first)
        (job,) = json.loads((victim / "slurm.json").read_text())["job_ids"]
        subprocess.run(["scancel", job], env=env, check=True)
        preempted = _mid_run(out, first, but=victim)
        (requeued,) = json.loads((preempted / "slurm.json").read_text())["job_ids"]
        _preempt(requeued, env)
        before = _job_ids(out)
        # the same command again while the jobs run: it attaches to them
        second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=WAIT_S)
        assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
        assert first.wait(timeout=WAIT_S) != 0  # the first saw the job cancelled and says so
    finally:
        if first.poll() is None:
            first.kill()
        first_log.close()
    told = (tmp_path / "first.log").read_text()
    key = f"{victim.parent.name}/{victim.name}"
    assert f"{key}: Slurm job {job} was cancelled" in told
    assert "run the same `ado compare` again to resume it" in told

    after = _job_ids(out)
    assert set(after) == {f"{p}/seed{s}" for p in ("natural", "ado") for s in (0, 1)}
    for run, jobs in after.items():
        if run == key:
            assert jobs[0] == job
            assert len(jobs) == 2  # submitted again once, by the second compare
        else:
            assert jobs == before[run]  # attached to: never submitted twice
            assert len(jobs) == 1
    resumed = json.loads((victim / "result.json").read_text())
    assert resumed["resumed"] is True
    assert resumed["launch"]["slurm_jobs"] == after[key]
    # the preempted job ran again under its own id and resumed from its checkpoint
    again = json.loads((preempted / "result.json").read_text())
    assert again["resumed"] is True
    assert again["launch"]["slurm_jobs"] == [requeued]
    assert (preempted / "torchrun.log").read_text().count("-m ado.torch.launch") == 2
    log = (victim / "torchrun.log").read_text()
    assert log.count("-m ado.torch.launch") == 2  # trained twice: killed, then resumed

    local = tmp_path / "local"
    done = subprocess.run(
        _args(tiny_corpus, local), env=env, capture_output=True, text=True, timeout=WAIT_S
    )
    assert done.returncode == 0, done.stderr[-3000:]
    on_slurm = json.loads((out / "report.json").read_text())
    here = json.loads((local / "report.json").read_text())
    assert_same_report(on_slurm, here)
    for r in on_slurm["runs"]:
        assert r["launch"]["launcher"] == "slurm"
        assert (r["launch"]["world_size"], r["launch"]["backend"]) == (2, "gloo")
    assert {r["launch"]["launcher"] for r in here["runs"]} == {"local"}
    assert "Slurm jobs of each run" in (out / "report.md").read_text()
    # once every run finished, the same command submits nothing and writes the same report
    third = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=WAIT_S)
    assert third.returncode == 0, third.stderr[-3000:]
    assert _job_ids(out) == after
    assert_same_report(json.loads((out / "report.json").read_text()), here)


@pytest.mark.parametrize("retries", [1, 0])
def test_a_failed_job_is_submitted_again_within_the_retries(
    slurm: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, retries: int
) -> None:
    import cloudpickle
    import slurm_jobs
    from ado.compare.slurm import SlurmOptions, SlurmPool, read_jobs
    from ado.errors import RunFailedError

    monkeypatch.setenv("SLURM_CONF", slurm["SLURM_CONF"])
    cloudpickle.register_pickle_by_value(slurm_jobs)  # the job cannot import the tests
    options = SlurmOptions(retries=retries, poll_s=0.5)
    pool = SlurmPool(tmp_path / "slurm", options, nodes=1, default_cpus=1, default_gpus=None)
    folder = tmp_path / "run"
    try:
        future = pool.submit("flaky/seed0", folder, slurm_jobs.fail_once, str(folder))
        if retries:
            assert future.result(timeout=WAIT_S) == {"attempts": 2}
            assert len(read_jobs(folder)) == 2  # the second job resumed what the first began
        else:
            with pytest.raises(RunFailedError, match="retries used up") as err:
                future.result(timeout=WAIT_S)
            assert "the first attempt fails" in str(err.value)  # the job's log, quoted
            assert len(read_jobs(folder)) == 1
    finally:
        pool.shutdown()


def _job_script(tmp_path: Path, options: Any, **pool: Any) -> list[str]:
    from ado.compare.slurm import SlurmPool
    from submitit.slurm.slurm import _make_sbatch_string

    made = SlurmPool(tmp_path / "slurm", options, **pool)
    try:
        text = _make_sbatch_string(command="run", folder=tmp_path, **made.executor.parameters)
    finally:
        made.shutdown()
    return [line for line in text.splitlines() if line.startswith("#SBATCH")]


def test_the_job_script_holds_only_what_the_command_line_gave(tmp_path: Path) -> None:
    from ado.compare.slurm import SlurmOptions

    given = SlurmOptions(
        partition="p1",
        time_min=90,
        gpus_per_node=8,
        sbatch=("account=abc", "exclusive", "--qos=high"),
    )
    lines = _job_script(tmp_path, given, nodes=2, default_cpus=8, default_gpus=None)
    for flag in (
        "--partition=p1",
        "--time=90",
        "--gpus-per-node=8",
        "--account=abc",
        "--exclusive",
        "--qos=high",
        "--nodes=2",
        "--ntasks-per-node=1",
        "--cpus-per-task=8",
    ):
        assert f"#SBATCH {flag}" in lines, flag
    # nothing given: no partition, time limit, GPUs, account or wckey of ours
    bare = _job_script(tmp_path, SlurmOptions(), nodes=1, default_cpus=2, default_gpus=None)
    named = {line.split()[1].split("=")[0] for line in bare}
    assert named == {
        "--cpus-per-task",
        "--error",
        "--job-name",
        "--nodes",
        "--ntasks-per-node",
        "--open-mode",
        "--output",
        "--signal",  # USR2 before the time limit: submitit requeues the run
    }
