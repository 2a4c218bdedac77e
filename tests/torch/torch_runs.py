"""Helpers for the tests that run ``benchmarks/train_gpt.py`` in subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "train_gpt.py"

#: ADO with a refit every 10 steps from step 10 on (the preset waits 2000 steps).
FAST_ADO = {
    "ignore_steps": 0,
    "start_step": 10,
    "update_interval": 10,
    "min_points": 5,
    "subsample": 1,
    "window": 5,
    "order": 2,
}

#: Record fields that measure time (they differ between any two runs).
TIMING = ("tokens_per_s", "policy_ms_per_step", "last_fit_ms")


def tiny_config(manifest: Path, **fields: Any) -> dict[str, Any]:
    """A TrainConfig dict for a model that trains a step in milliseconds on one thread."""
    cfg: dict[str, Any] = {
        "manifest": str(manifest),
        "policy": "ado",
        "overrides": FAST_ADO,
        "seq_len": 16,
        "vocab_size": 64,
        "batch_size": 4,
        "n_layer": 1,
        "n_head": 2,
        "n_embd": 32,
        "lr": 3e-3,
        "warmup": 5,
        "threads": 1,
        "log_every": 1,
        "log_batches": True,
        "progress": False,
    }
    cfg.update(fields)
    return cfg


def launch(
    config: dict[str, Any],
    folder: Path,
    env: dict[str, str] | None = None,
    name: str = "run",
    script: Path = SCRIPT,
    nproc: int = 0,
) -> subprocess.Popen[bytes]:
    """Start ``script --config`` with ``config`` (written to ``folder/name.json``); with ``nproc``,
    under ``torchrun`` with that many processes on a free local port."""
    path = folder / f"{name}.json"
    path.write_text(json.dumps(config))
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **(env or {})}
    cmd = [sys.executable, str(script), "--config", str(path)]
    if nproc:
        run = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}"]
        cmd = [*run, f"--master_port={free_port()}", *cmd[1:]]
    with (folder / f"{name}.stderr").open("wb") as err:  # the child keeps its own descriptor
        return subprocess.Popen(cmd, env=full_env, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT)


def train_records(log: Path) -> list[dict[str, Any]]:
    """The ``train`` records of a JSONL log, timing fields removed."""
    out = []
    for line in log.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("event") == "train":
            out.append({k: v for k, v in rec.items() if k not in TIMING})
    return out


def free_port() -> int:
    """A TCP port free right now (for MASTER_PORT)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def two_ranks_then_resume(
    config: dict[str, Any],
    folder: Path,
    script: Path,
    copy_checkpoint: Callable[[Path, Path], None],
    timeout_s: float = 300,
) -> list[list[dict[str, Any]]]:
    """Train ``config`` with ``script`` on 2 ranks under ``torchrun`` (checkpoints in
    ``folder/ref``, logs ``folder/ref-{rank}.jsonl``) and check that the ranks agree bitwise on
    the loss and the weights and never share a sample. Then ``copy_checkpoint(ref, run)`` puts
    a checkpoint into the empty ``folder/run``, the same run resumes from it there (logs
    ``run-{rank}.jsonl``, starting as copies of the first run's), and every rank's log must
    equal the uninterrupted run's. Returns the uninterrupted run's train records per rank."""
    ref, run = folder / "ref", folder / "run"
    first = {**config, "log_path": str(folder / "ref-{rank}.jsonl"), "ckpt_dir": str(ref)}
    proc = launch(first, folder, name="ref", script=script, nproc=2)
    assert proc.wait(timeout=timeout_s) == 0, (folder / "ref.stderr").read_text()[-3000:]
    logs = [train_records(folder / f"ref-{r}.jsonl") for r in range(2)]
    assert [len(x) for x in logs] == [config["steps"]] * 2
    rows = config["grad_accum"] * config["batch_size"]
    for r0, r1 in zip(*logs, strict=True):
        # the reduced loss and the weights are bitwise identical on both ranks
        assert r0["loss"] == r1["loss"]
        assert r0["weights_hash"] == r1["weights_hash"]
        assert len(r0["keys"]) == len(r1["keys"]) == rows  # accum x batch rows per rank
        assert not set(r0["keys"]) & set(r1["keys"])  # ranks never share a sample
    run.mkdir()
    copy_checkpoint(ref, run)
    for r in range(2):
        shutil.copy(folder / f"ref-{r}.jsonl", folder / f"run-{r}.jsonl")
    again = {**config, "log_path": str(folder / "run-{rank}.jsonl"), "ckpt_dir": str(run)}
    proc = launch(again, folder, name="again", script=script, nproc=2)
    assert proc.wait(timeout=timeout_s) == 0, (folder / "again.stderr").read_text()[-3000:]
    for r in range(2):
        assert train_records(folder / f"run-{r}.jsonl") == logs[r]
    return logs
