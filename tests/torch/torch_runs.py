"""Helpers for the tests that run ``benchmarks/train_gpt.py`` in subprocesses."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
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
