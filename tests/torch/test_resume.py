"""Checkpoints: atomic writes, DCP/torch.save round trips, and SIGKILL + resume == uninterrupted."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed.checkpoint as dcp
from ado import load_policy
from ado.data import MixtureLoader, PackConfig
from ado.torch import (
    DataMixer,
    atomic_save,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from torch_runs import FAST_ADO, ROOT, launch, tiny_config, train_records

STEPS = 42
TIMEOUT_S = 240


def test_atomic_save_never_overwrites_by_accident(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.pt"
    atomic_save({"a": torch.arange(3)}, path)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        atomic_save({"a": torch.zeros(3)}, path)
    assert torch.equal(load_checkpoint(path)["a"], torch.arange(3))  # untouched
    atomic_save({"a": torch.ones(2)}, path, overwrite=True)
    assert torch.equal(load_checkpoint(path)["a"], torch.ones(2))
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.pt"]  # no temp file left

    class Boom:
        def __reduce__(self) -> Any:
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError, match="cannot pickle"):
        atomic_save({"x": Boom()}, tmp_path / "sub" / "other.pt")
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.pt"]  # failed write cleaned


def test_save_checkpoint_keeps_the_newest(tmp_path: Path) -> None:
    for step in (3, 6, 9, 12):
        save_checkpoint(tmp_path, step, {"step": step}, keep=2)
    (tmp_path / ".step_00000015.pt.abc.tmp").write_bytes(b"torn")  # a killed write
    assert sorted(p.name for p in tmp_path.glob("step_*")) == [
        "step_00000009.pt",
        "step_00000012.pt",
    ]
    latest = latest_checkpoint(tmp_path)
    assert latest is not None
    assert latest.name == "step_00000012.pt"
    assert load_checkpoint(latest)["step"] == 12
    with pytest.raises(FileExistsError):
        save_checkpoint(tmp_path, 12, {"step": 0})
    assert latest_checkpoint(tmp_path / "missing") is None


def _mixer(manifest: Path) -> DataMixer:
    pack = PackConfig(seq_len=16, eos_id=0, field="u16", vocab_size=64)
    loader = MixtureLoader(manifest, 4, seed=1, pack=pack)
    policy = load_policy(ROOT / "policies" / "ado.yaml", domains=loader.domains, overrides=FAST_ADO)
    return DataMixer(loader, policy)


def _steps(mixer: DataMixer, n: int) -> list[Any]:
    out = []
    for _ in range(n):
        b = mixer.next_batch()
        dom = torch.from_numpy(b.domain)
        mixer.record(2.0 + dom.double() / (mixer.steps_done + 1) ** 0.3, dom)
        mixer.step()
        out.append((b.keys, b.domain.tolist(), mixer.weights.tolist()))
    return out


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")
def test_dcp_and_torch_save_round_trip(make_corpus: Any, tmp_path: Path) -> None:
    """The mixer is a DCP ``Stateful``: save with torch.distributed.checkpoint (no process group),
    load into a fresh mixer, continue identically; past two refits, so the policy state is big."""
    manifest = make_corpus()
    full = _steps(_mixer(manifest), 40)
    first = _mixer(manifest)
    head = _steps(first, 25)
    dcp.save({"data": first}, checkpoint_id=str(tmp_path / "dcp"), no_dist=True)
    again = _mixer(manifest)
    dcp.load({"data": again}, checkpoint_id=str(tmp_path / "dcp"), no_dist=True)
    assert again.steps_done == 25
    assert head + _steps(again, 15) == full
    # plain torch.save with weights_only loading
    atomic_save({"data": first.state_dict()}, tmp_path / "plain.pt")
    third = _mixer(manifest)
    third.load_state_dict(load_checkpoint(tmp_path / "plain.pt")["data"])
    assert head + _steps(third, 15) == full


def _wait_for_step(log: Path, step: int, proc: Any) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError("the run ended before it could be killed")
        if log.exists():
            for line in log.read_text().splitlines()[::-1]:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if rec.get("step", 0) >= step:
                    return
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"step {step} not reached in {TIMEOUT_S} s")


def test_sigkill_and_resume_is_bitwise_identical(make_corpus: Any, tmp_path: Path) -> None:
    manifest = make_corpus()
    base = tiny_config(manifest, steps=STEPS, deterministic=True, ckpt_every=3, keep=2)
    ref_cfg = {**base, "log_path": str(tmp_path / "ref.jsonl"), "ckpt_dir": str(tmp_path / "ref")}
    ref = launch(ref_cfg, tmp_path, name="ref")
    assert ref.wait(timeout=TIMEOUT_S) == 0, (tmp_path / "ref.stderr").read_text()[-3000:]

    kill_at = random.Random(20251129).randint(8, 34)
    cfg = {**base, "log_path": str(tmp_path / "run.jsonl"), "ckpt_dir": str(tmp_path / "run")}
    victim = launch(cfg, tmp_path, name="victim")
    _wait_for_step(tmp_path / "run.jsonl", kill_at, victim)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=TIMEOUT_S)
    assert victim.returncode == -signal.SIGKILL
    resumed_at = latest_checkpoint(tmp_path / "run" / "rank_0")
    assert resumed_at is not None  # a checkpoint existed (every 3 steps, killed at >= 8)
    again = launch(cfg, tmp_path, name="again")
    assert again.wait(timeout=TIMEOUT_S) == 0, (tmp_path / "again.stderr").read_text()[-3000:]
    assert f"(step {int(resumed_at.stem[5:])})" in (tmp_path / "again.stderr").read_text()

    want = train_records(tmp_path / "ref.jsonl")
    got = train_records(tmp_path / "run.jsonl")
    assert len(want) == STEPS
    # keys, domains, losses, weights (hash and values) and every policy metric, bitwise
    assert got == want
    assert want[-1]["fits"] >= 3  # several ADO refits happened, some after the restart
    a = load_checkpoint(latest_checkpoint(tmp_path / "ref" / "rank_0"))  # type: ignore[arg-type]
    b = load_checkpoint(latest_checkpoint(tmp_path / "run" / "rank_0"))  # type: ignore[arg-type]
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert a["data"] == b["data"]
