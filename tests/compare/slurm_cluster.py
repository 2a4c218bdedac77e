"""A real one-node Slurm cluster on 127.0.0.1 for tests: munged, slurmctld and slurmd (Debian's
``slurmctld slurmd slurm-client munge`` packages), started in a temporary folder and stopped by
the PIDs they wrote. Needs root (the daemons run as root, ``SlurmUser=root``).

    with slurm_cluster(tmp_path) as env:   # env: os.environ plus SLURM_CONF
        subprocess.run(["sbatch", ...], env=env)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "scontrol", "sinfo")
START_TIMEOUT_S = 60


def missing() -> list[str]:
    """The Slurm/munge programs that are not installed (empty: a cluster can start)."""
    return [d for d in DAEMONS if shutil.which(d) is None]


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _conf(root: Path, host: str, ports: list[int], cpus: int) -> str:
    return f"""ClusterName=adotest
SlurmctldHost={host}(127.0.0.1)
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmctldPort={ports[0]}
SlurmdPort={ports[1]}
AuthType=auth/munge
AuthInfo=socket={root}/munge/munge.socket
SlurmUser=root
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/ctld.pid
SlurmdPidFile={root}/d.pid
SlurmctldLogFile={root}/ctld.log
SlurmdLogFile={root}/d.log
ReturnToService=2
MinJobAge=600
KillWait=5
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=8000 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def _stop(pid_file: Path) -> None:
    with contextlib.suppress(OSError, ValueError):
        pid = int(pid_file.read_text().strip())
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            os.kill(pid, 0)  # raises once it is gone
            time.sleep(0.1)


@contextlib.contextmanager
def slurm_cluster(root: Path, cpus: int = 2) -> Iterator[dict[str, str]]:
    """Start munged, slurmctld and slurmd under ``root``; yield the environment to run Slurm
    commands in; stop all three at exit (by their PIDs). The node is idle when this yields."""
    root.mkdir(parents=True, exist_ok=True)
    for sub in ("state", "spool", "munge"):
        (root / sub).mkdir(exist_ok=True)
    key = Path("/etc/munge/munge.key")
    if not key.exists():  # the munge package creates it; create one if it did not
        subprocess.run(["mungekey", "--create", f"--keyfile={key}"], check=True)
    munge_sock = root / "munge" / "munge.socket"
    munged = [
        "munged",
        "--force",
        f"--socket={munge_sock}",
        f"--pid-file={root / 'munge' / 'munged.pid'}",
        f"--log-file={root / 'munge' / 'munged.log'}",
        f"--seed-file={root / 'munge' / 'munged.seed'}",
    ]
    host = socket.gethostname().split(".")[0]
    conf = root / "slurm.conf"
    conf.write_text(_conf(root, host, _free_ports(2), cpus))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    started: list[Path] = []
    try:
        subprocess.run(munged, check=True, capture_output=True)
        started.append(root / "munge" / "munged.pid")
        subprocess.run(["slurmctld", "-f", str(conf)], check=True, env=env)
        started.append(root / "ctld.pid")
        subprocess.run(["slurmd", "-f", str(conf)], check=True, env=env)
        started.append(root / "d.pid")
        deadline = time.monotonic() + START_TIMEOUT_S
        state = ""
        while time.monotonic() < deadline:
            got = subprocess.run(
                ["sinfo", "--noheader", "--format=%t"],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            state = got.stdout.strip()
            if state == "idle":
                break
            time.sleep(0.5)
        else:
            logs = "\n".join(
                p.read_text()[-2000:] for p in (root / "ctld.log", root / "d.log") if p.exists()
            )
            raise RuntimeError(f"the Slurm node did not come up (state {state!r}):\n{logs}")
        yield env
    finally:
        subprocess.run(["scancel", "--full", "--user=root"], env=env, check=False)
        for pid_file in reversed(started):
            _stop(pid_file)
