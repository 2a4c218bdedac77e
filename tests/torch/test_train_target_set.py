"""A held-out target set evaluated by the training loop (ADO's ``target_set``; issue 24, §2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ado.errors import ConfigError
from ado.policy import ADO
from ado.torch import HeldOut, TrainConfig, train
from torch_runs import FAST_ADO, tiny_config

#: evaluate the target every 3 steps on 2 batches of 4 rows of 16 tokens (one target domain)
TARGET = {"every": 3, "tokens": 128, "min_blocks": 1}


def target_manifest(manifest: Path) -> Path:
    """A one-domain target set: the ``cycle`` domain's shards (a user's target data)."""
    out = manifest.parent / "target.yaml"
    out.write_text("domains:\n  wanted: cycle/*.tar\n")
    return out


def config(manifest: Path, tmp_path: Path, **fields: Any) -> TrainConfig:
    base = tiny_config(
        manifest,
        steps=9,
        log_batches=False,
        overrides={**FAST_ADO, "target_set": TARGET},
        target_manifest=str(target_manifest(manifest)),
        log_path=str(tmp_path / "log.jsonl"),
    )
    base.update(fields)
    return TrainConfig(**base)


def events(log: Path, kind: str) -> list[dict[str, Any]]:
    rows = [json.loads(x) for x in log.read_text().splitlines()]
    return [r for r in rows if r["event"] == kind]


def test_loop_evaluates_the_target_every_n_steps_on_its_budget_and_feeds_the_policy(
    make_corpus: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = make_corpus()
    received: list[tuple[int, float]] = []
    original = ADO.observe_target

    def spy(self: ADO, step: int, loss: float) -> None:
        received.append((step, loss))
        original(self, step, loss)

    monkeypatch.setattr(ADO, "observe_target", spy)
    cfg = config(manifest, tmp_path)
    result = train(cfg)
    # after steps 3, 6 and 9 (0-based steps 2, 5, 8), each the loss the log records
    target = events(tmp_path / "log.jsonl", "target")
    assert [s for s, _ in received] == [2, 5, 8]
    assert [r["step"] for r in target] == [3, 6, 9]
    assert [r["loss"] for r in target] == [loss for _, loss in received]
    # the budget: 128 tokens = 2 batches of 4 rows x 16 tokens, of rows drawn with eval_seed + 1;
    # the last evaluation is of the final model, so an evaluator of exactly that budget and
    # those rows reproduces it (another number of batches or other rows would not)
    held = HeldOut(target_manifest(manifest), batch_size=4, pack=cfg.pack(), batches=2, seed=1)
    assert result.model is not None
    assert held.evaluate(result.model, "cpu")["loss/wanted"] == received[-1][1]
    assert all(r["tokens"] == 128 for r in target)
    assert result.target_evals == 3
    assert result.target_tokens == 3 * 128
    assert result.target_token_fraction == pytest.approx(384 / (9 * 4 * 16))
    assert result.target_flop_fraction == pytest.approx(result.target_token_fraction / 3)
    assert target[-1]["token_fraction"] == pytest.approx(result.target_token_fraction)
    # the policy regressed the intervals between evaluations
    metrics = events(tmp_path / "log.jsonl", "train")[-1]
    assert metrics["target_evals"] == 3
    assert metrics["target_blocks"] == 1  # the first interval only starts the running means


def test_resume_with_a_target_set_is_exact(make_corpus: Any, tmp_path: Path) -> None:
    manifest = make_corpus()
    full = train(config(manifest, tmp_path / "a", ckpt_dir=None))
    (tmp_path / "a").mkdir(exist_ok=True)
    ckpt = tmp_path / "b" / "ckpt"
    (tmp_path / "b").mkdir()
    cut = config(manifest, tmp_path / "b", ckpt_dir=str(ckpt), ckpt_every=3)

    def stop(done: int, *_: Any) -> None:
        if done == 5:  # after the checkpoint at step 3 (a target evaluation was due there)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cut, on_step=stop)
    resumed = train(cut)
    assert resumed.resumed_from == 3
    assert resumed.weights == full.weights
    assert resumed.target_tokens == full.target_tokens
    assert resumed.evals == full.evals
    target_b = [r["loss"] for r in events(tmp_path / "b" / "log.jsonl", "target")]
    target_a = [r["loss"] for r in events(tmp_path / "a" / "log.jsonl", "target")]
    assert target_b == target_a


def test_bad_target_set_configurations_are_refused(make_corpus: Any, tmp_path: Path) -> None:
    manifest = make_corpus()
    target = str(target_manifest(manifest))
    with pytest.raises(ConfigError, match="needs target_manifest"):
        train(config(manifest, tmp_path, target_manifest=None))
    with pytest.raises(ConfigError, match="takes no held-out target"):
        train(config(manifest, tmp_path, overrides=FAST_ADO))
    with pytest.raises(ConfigError, match="below one batch per target domain"):
        train(config(manifest, tmp_path, overrides={**FAST_ADO, "target_set": {"tokens": 63}}))
    with pytest.raises(ConfigError, match="out-of-distribution set"):
        train(config(manifest, tmp_path, ood_manifest=target))
    with pytest.raises(ConfigError, match="transfer and target_set"):
        train(config(manifest, tmp_path, overrides={**FAST_ADO, "target_set": {}, "transfer": {}}))
