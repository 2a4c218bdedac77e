"""``train()`` in process: evaluation, callbacks, the static baseline and the GPT's loss."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from ado.data import MixtureLoader
from ado.errors import ConfigError
from ado.torch import GPT, GPTConfig, HeldOut, TrainConfig, train
from torch_runs import tiny_config


def test_train_evaluates_and_calls_back(make_corpus: Any, tmp_path: Path) -> None:
    manifest = make_corpus()
    cfg = TrainConfig(
        **tiny_config(manifest, steps=6, log_batches=False),
        eval_manifest=str(manifest),
        eval_every=3,
        eval_batches=2,
        log_path=str(tmp_path / "log.jsonl"),
    )
    steps: list[int] = []
    evals: list[tuple[int, dict[str, float]]] = []
    result = train(
        cfg,
        on_step=lambda t, stats, mixer: steps.append(t),
        on_eval=lambda t, rec: evals.append((t, rec)),
    )
    assert steps == [1, 2, 3, 4, 5, 6]
    assert [t for t, _ in evals] == [3, 6]
    rec = evals[-1][1]
    assert set(rec) == {"loss/cycle", "loss/pairs", "loss/noise", "loss/uniform_avg"}
    assert rec["loss/uniform_avg"] == pytest.approx(
        (rec["loss/cycle"] + rec["loss/pairs"] + rec["loss/noise"]) / 3
    )
    assert len(result.train_losses) == 6
    assert result.tokens == 6 * 4 * 16
    assert result.model is not None
    assert sum(result.weights.values()) == pytest.approx(1.0)
    # the held-out rows are the same at every evaluation: evaluating the final model again
    # reproduces the last evaluation exactly
    held = HeldOut(manifest, batch_size=4, pack=cfg.pack(), batches=2)
    assert held.evaluate(result.model, "cpu") == rec
    assert held.evaluate(result.model, "cpu") == rec
    events = [json.loads(x)["event"] for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    # start; per step its statistics and (log_every=1) the metrics; two evaluations
    assert events.count("start") == 1
    assert events.count("step") == 6
    assert events.count("train") == 6
    assert events.count("eval") == 2


def test_held_out_rows_do_not_depend_on_the_training_seed(make_corpus: Any) -> None:
    # runs under different seeds are scored on the same rows (``eval_seed``), so the spread
    # between seeds in a comparison is training noise, not a different evaluation sample
    manifest = make_corpus()
    evals: list[dict[str, float]] = []
    cfg = TrainConfig(
        **tiny_config(manifest, steps=2, log_batches=False, seed=3),
        eval_manifest=str(manifest),
        eval_batches=2,
    )
    result = train(cfg, on_eval=lambda t, rec: evals.append(rec))
    assert result.model is not None
    same_rows = HeldOut(manifest, batch_size=4, pack=cfg.pack(), batches=2, seed=0)
    other_rows = HeldOut(manifest, batch_size=4, pack=cfg.pack(), batches=2, seed=3)
    assert same_rows.evaluate(result.model, "cpu") == evals[-1]
    assert other_rows.evaluate(result.model, "cpu") != evals[-1]
    moved = train(cfg.model_copy(update={"eval_seed": 3}), on_eval=lambda t, rec: evals.append(rec))
    assert moved.model is not None
    assert other_rows.evaluate(moved.model, "cpu") == evals[-1]


def test_without_a_policy_the_loop_runs_the_static_mixture(make_corpus: Any) -> None:
    # policy=None is the static mixture of the manifest's weights (uniform when it has none),
    # through the same loop as any policy
    cfg = TrainConfig(**tiny_config(make_corpus(), steps=3, log_batches=False, policy=None))
    result = train(cfg)
    assert len(result.train_losses) == 3
    assert result.weights == pytest.approx({"cycle": 1 / 3, "pairs": 1 / 3, "noise": 1 / 3})
    uniform = train(cfg.model_copy(update={"policy": "uniform", "overrides": {}}))
    assert uniform.train_losses == result.train_losses
    with pytest.raises(ConfigError, match="neither a file nor a preset name"):
        train(TrainConfig(**tiny_config(make_corpus(name="x"), steps=1, policy="nope")))


def test_gpt_per_sequence_loss_is_the_row_mean() -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=16, seq_len=8, n_layer=1, n_head=2, n_embd=8))
    x = torch.randint(0, 16, (3, 8))
    y = torch.randint(0, 16, (3, 8))
    per_seq = model(x, y)
    assert torch.equal(per_seq, model.per_sequence_loss(x, y))
    logits = model(x)
    full = torch.nn.functional.cross_entropy(logits.reshape(-1, 16), y.reshape(-1))
    assert per_seq.shape == (3,)
    torch.testing.assert_close(per_seq.mean(), full)
    with pytest.raises(ValueError, match="exceeds seq_len"):
        model(torch.zeros(1, 9, dtype=torch.long))


def test_each_step_gives_the_policy_its_learning_rate(make_corpus: Any, tmp_path: Path) -> None:
    # StepStats.lr is the rate the step trained with, under the configured schedule, and ADO's
    # `law: lr` runs on it; out-of-distribution sets are evaluated beside the held-out ones
    manifest = make_corpus()
    cfg = TrainConfig(
        **tiny_config(
            manifest,
            steps=40,
            log_batches=False,
            schedule="wsd",
            decay_fraction=0.25,
            policy="ado-lr",
            overrides={
                "ignore_steps": 2,
                "start_step": 20,
                "update_interval": 5,
                "subsample": 1,
                "window": 3,
                "order": 1,
                "min_points": 8,
            },
        ),
        eval_manifest=str(manifest),
        ood_manifest=str(manifest),
        log_path=str(tmp_path / "log.jsonl"),
    )
    seen: list[float | None] = []
    evals: list[dict[str, float]] = []
    fits: list[float] = []

    def on_step(t: int, stats: Any, mixer: Any) -> None:
        seen.append(stats.lr)
        fits.append(mixer.policy.metrics()["fits"])

    result = train(cfg, on_step=on_step, on_eval=lambda t, r: evals.append(r))
    schedule = cfg.lr_schedule()
    assert (schedule.kind, schedule.decay_steps) == ("wsd", 10)
    assert seen == pytest.approx(schedule.values().tolist())
    records = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in records if r["event"] == "step"] == pytest.approx(seen)
    assert result.model is not None
    assert fits[-1] == 4  # refits at steps 20, 25, 30, 35 under the learned schedule
    for d in ("cycle", "pairs", "noise"):  # the same shards, scored under both names
        assert evals[-1][f"loss/ood/{d}"] == evals[-1][f"loss/{d}"]
    assert set(evals[-1]) - {"loss/uniform_avg"} == {
        f"loss/{p}{d}" for p in ("", "ood/") for d in ("cycle", "pairs", "noise")
    }


def test_train_closes_its_loaders_even_when_a_step_fails(
    make_corpus: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``train`` closes the training and held-out loaders (joining their threads) on the way
    out, also when a callback raises."""
    closed: list[int] = []
    real_close = MixtureLoader.close

    def close(self: MixtureLoader) -> None:
        closed.append(id(self))
        real_close(self)

    monkeypatch.setattr(MixtureLoader, "close", close)
    manifest = make_corpus()
    cfg = TrainConfig(
        **tiny_config(manifest, steps=3, log_batches=False), eval_manifest=str(manifest)
    )

    def boom(t: int, stats: Any, mixer: Any) -> None:
        raise RuntimeError("step callback failed")

    with pytest.raises(RuntimeError, match="step callback failed"):
        train(cfg, on_step=boom)
    assert len(set(closed)) == 1 + 3  # the training loader and one held-out loader per domain
    closed.clear()
    train(cfg)
    assert len(set(closed)) == 4
