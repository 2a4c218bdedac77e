"""Two ranks with gloo under ADO: identical weights every step, disjoint samples, equal batch
counts, and no hang although one domain has a single document (fewer than the ranks)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from torch_runs import ROOT, free_port, launch, tiny_config, train_records

STEPS = 60
WORLD = 2
TIMEOUT_S = 300  # a hang fails the test instead of blocking the suite


def rank_env(rank: int, port: int) -> dict[str, str]:
    """The variables torchrun gives rank ``rank`` of a ``WORLD``-rank job on this host."""
    return {
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(WORLD),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }


def test_two_ranks_gloo_stay_consistent(make_corpus: Any, tmp_path: Path) -> None:
    manifest = make_corpus(tiny=True)
    cfg = tiny_config(
        manifest,
        steps=STEPS,
        grad_accum=2,
        prior=[0.25, 0.25, 0.25, 0.25],  # the tiny domain is drawn often
        log_path=str(tmp_path / "log-{rank}.jsonl"),
        verify_every=1,
    )
    port = free_port()
    procs = [launch(cfg, tmp_path, rank_env(r, port), name=f"rank{r}") for r in range(WORLD)]
    try:
        for p in procs:
            p.wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        raise AssertionError(f"the 2-rank run hung (> {TIMEOUT_S} s)") from None
    for rank, p in enumerate(procs):
        err = (tmp_path / f"rank{rank}.stderr").read_text()
        assert p.returncode == 0, f"rank {rank} failed:\n{err[-3000:]}"

    logs = [train_records(tmp_path / f"log-{r}.jsonl") for r in range(WORLD)]
    assert [len(log) for log in logs] == [STEPS, STEPS]  # equal step (and batch) counts
    hashes = set()
    tiny_seen = 0
    for r0, r1 in zip(*logs, strict=True):
        assert r0["step"] == r1["step"]
        # the all-reduced loss and the policy's weights are bitwise identical on both ranks
        assert r0["weights_hash"] == r1["weights_hash"]
        assert r0["loss"] == r1["loss"]
        assert {k: v for k, v in r0.items() if k.startswith("weight/")} == {
            k: v for k, v in r1.items() if k.startswith("weight/")
        }
        # equal batch counts: grad_accum x batch_size rows per rank per step
        assert len(r0["keys"]) == len(r1["keys"]) == 2 * 4
        # ranks never share a document (except the 1-document domain, which every rank reads)
        shared = set(r0["keys"]) & set(r1["keys"])
        assert all(k.startswith("tiny-") for k in shared), shared
        tiny_seen += sum(k.startswith("tiny-") for k in r0["keys"] + r1["keys"])
        hashes.add(r0["weights_hash"])
    assert tiny_seen > 0  # the small domain was really drawn
    last = logs[0][-1]
    assert last["fits"] >= 3  # several refits happened (steps 10, 20, ...)
    assert len(hashes) > 10  # and the weights really moved


#: A rank that joins a 2-rank gloo group through ``train``'s set-up and exits without destroying
#: it; an atexit hook registered *before* the group (so it runs after ado's) reports whether the
#: group was still alive when the interpreter began to finalise.
_EXIT_CHILD = """
import atexit, os, sys
import torch.distributed as dist
atexit.register(lambda: print("alive at exit:", dist.is_initialized(), flush=True))
from ado.torch.train import _distributed_setup
rank, world, _ = _distributed_setup("cpu")
dist.barrier()
print("joined", rank, world, flush=True)
"""


def test_a_group_the_loop_created_is_destroyed_before_the_interpreter_finalises(
    tmp_path: Path,
) -> None:
    """Left to the interpreter's finalisation, a gloo group can abort a finished rank (SIGABRT,
    "terminate called without an active exception"), which failed a 2-rank HF run in CI."""
    port = free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _EXIT_CHILD],
            env={**os.environ, **rank_env(rank, port)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(WORLD)
    ]
    outs = [p.communicate(timeout=TIMEOUT_S)[0] for p in procs]
    for rank, (p, out) in enumerate(zip(procs, outs, strict=True)):
        assert p.returncode == 0, out[-3000:]
        assert f"joined {rank} {WORLD}" in out
        assert "alive at exit: False" in out, out[-3000:]


def test_run_main_destroys_the_group_its_main_created(tmp_path: Path) -> None:
    """The training examples' ``run_main`` destroys a process group that ``main`` (the HF
    Trainer, Lightning) created and left behind, also when ``main`` fails on bad input."""
    import torch.distributed as dist
    from ado.errors import ConfigError

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from train_gpt import run_main

    stores = iter(range(2))

    def make_group() -> None:
        store = dist.FileStore(str(tmp_path / f"store-{next(stores)}"), 1)
        dist.init_process_group("gloo", store=store, rank=0, world_size=1)

    run_main(make_group)
    assert not dist.is_initialized()

    def fail_with_a_group() -> None:
        make_group()
        raise ConfigError("no such manifest")

    with pytest.raises(SystemExit) as exit_info:
        run_main(fail_with_a_group)
    assert exit_info.value.code == 2
    assert not dist.is_initialized()
