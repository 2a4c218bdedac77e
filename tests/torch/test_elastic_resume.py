"""Elastic resume through ``ado.torch.train``: a checkpoint written by 2 ranks (torchrun, gloo)
resumes on 1 rank; the policy state continues unchanged and the loader continues the global
stream (``tests/data/test_elastic.py`` checks the coverage property exactly)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from ado.torch import TrainConfig, train
from ado.torch.checkpoint import latest_checkpoint, load_checkpoint
from ado.torch.train import resume, setup
from torch_runs import launch, tiny_config, train_records


def test_two_rank_checkpoint_resumes_on_one_rank(make_corpus: Any, tmp_path: Path) -> None:
    manifest = make_corpus()
    ckpt = tmp_path / "ckpt"
    cfg = tiny_config(manifest, steps=12, ckpt_every=12, ckpt_dir=str(ckpt), log_batches=False)
    first = {**cfg, "log_path": str(tmp_path / "ref-{rank}.jsonl")}
    proc = launch(first, tmp_path, name="ref", nproc=2)
    assert proc.wait(timeout=300) == 0, (tmp_path / "ref.stderr").read_text()[-3000:]
    saved = load_checkpoint(latest_checkpoint(ckpt / "rank_0"), map_location="cpu")  # type: ignore[arg-type]
    policy = json.loads(saved["data"]["policy"])
    loader = json.loads(saved["data"]["rank_0"])["loader"]
    assert loader["world_size"] == 2

    one = TrainConfig(**{**cfg, "steps": 20})
    run = setup(one)
    try:
        resume(run)
        assert run.start == 12
        assert run.mixer.policy.state_dict() == policy  # the policy continues unchanged
        assert run.mixer.loader.step == loader["step"]
        assert run.mixer.loader.weights == loader["weights"]
        assert run.mixer.loader.world_size == 1
        assert run.mixer.loader.state_dict()["origin"]["world"] == 2
    finally:
        run.close()
    torch.set_num_threads(1)
    result = train(one.model_copy(update={"log_path": str(tmp_path / "one.jsonl")}))
    assert result.resumed_from == 12
    assert [r["step"] for r in train_records(tmp_path / "one.jsonl")] == list(range(13, 21))
