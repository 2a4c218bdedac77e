"""``ado.integrations.hf``: a Hugging Face Trainer on the mixture, in process (one rank, gradient
accumulation, logs, bitwise resume, bad configurations) and under ``torchrun`` (two gloo ranks,
resumed, through ``benchmarks/train_hf.py``, whose log ``ado replay`` reads)."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded; tiny models from configs
transformers = pytest.importorskip("transformers")

from ado import load_policy  # noqa: E402
from ado.cli import main as ado_main  # noqa: E402
from ado.data import LoaderConfig, Manifest, MixtureLoader, PackConfig  # noqa: E402
from ado.errors import ConfigError, StateError  # noqa: E402
from ado.integrations.hf import DATA_FILE, AdoTrainer  # noqa: E402
from ado.runlog import read_run_log  # noqa: E402
from ado.torch import atomic_save, load_checkpoint  # noqa: E402
from torch_runs import (  # noqa: E402
    FAST_ADO,
    ROOT,
    tiny_config,
    train_records,
    two_ranks_then_resume,
)
from transformers import GPT2Config, GPT2LMHeadModel, TrainerCallback, TrainingArguments  # noqa: E402

SEQ, BATCH = 16, 4
HF_SCRIPT = ROOT / "benchmarks" / "train_hf.py"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _trainer(
    manifest: Path, out: Path, *, steps: int = 8, accum: int = 2, save: int = 0, **kw: Any
) -> AdoTrainer:
    pack = PackConfig(seq_len=SEQ, eos_id=0, field="u16", vocab_size=64)
    loader = kw.pop("loader", None) or MixtureLoader(manifest, BATCH, seed=3, pack=pack)
    if isinstance(loader, LoaderConfig) or kw.pop("with_manifest", False):
        kw["manifest"] = manifest  # a LoaderConfig: built by the Trainer, for its rank
    domains = loader.domains if isinstance(loader, MixtureLoader) else Manifest.load(manifest).names
    policy = load_policy("ado", domains=domains, overrides=FAST_ADO)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=64, n_positions=SEQ + 1, n_embd=32, n_layer=1, n_head=2,
            bos_token_id=0, eos_token_id=0,
        )
    )  # fmt: skip
    args = TrainingArguments(
        output_dir=str(out),
        max_steps=steps,
        gradient_accumulation_steps=accum,
        per_device_train_batch_size=BATCH,
        learning_rate=3e-3,
        logging_steps=1,
        save_strategy="steps" if save else "no",
        save_steps=save or 500,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
    )
    return AdoTrainer(model=model, args=args, loader=loader, policy=policy, **kw)


class _Logs(TrainerCallback):
    """What the Trainer's reporting callbacks (TensorBoard, W&B...) receive."""

    def __init__(self) -> None:
        self.logs: list[dict[str, float]] = []

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
        self.logs.append(dict(logs or {}))


def test_one_rank_with_gradient_accumulation(make_corpus: Any, tmp_path: Path) -> None:
    manifest = make_corpus()
    seen = _Logs()
    trainer = _trainer(
        manifest, tmp_path / "out", steps=12, accum=3, run_log=str(tmp_path / "run.jsonl")
    )
    trainer.add_callback(seen)
    trainer.train()
    mixer = trainer.mixer
    # one policy step per optimizer step; exactly accum draws per step (the Trainer never read
    # ahead across a step boundary: the mixer refuses an (accum + 1)-th draw before its step)
    assert mixer.steps_done == 12
    assert mixer.policy.step == 11
    assert mixer.loader.step == 12 * 3
    log = read_run_log(tmp_path / "run.jsonl")
    assert log.header["source"] == "hf"
    steps = list(log.steps())
    assert [s.step for s in steps] == list(range(12))
    assert all(s.counts.sum() == 3 * BATCH for s in steps)  # every micro-batch was recorded
    # the Trainer's loss of each step is the mean of the per-sequence losses the policy got
    train_logs = [r for r in seen.logs if "loss" in r]
    assert len(train_logs) == 12
    for rec, stats in zip(train_logs, steps, strict=True):
        assert rec["loss"] == pytest.approx(stats.loss_sums.sum() / stats.counts.sum(), rel=1e-5)
    # the policy's metrics reach the Trainer's loggers; a step's batches were drawn with the
    # weights the policy set at the end of the step before (weights change only at boundaries)
    domains = mixer.domains
    after = [[rec[f"ado/weight/{d}"] for d in domains] for rec in train_logs]
    drawn = [rec["weights"] for rec in log.events("step")]
    assert drawn[1:] == after[:-1]
    assert train_logs[-1]["ado/fits"] >= 1  # a refit at step 10 moved the weights
    assert len({tuple(w) for w in drawn}) == 2
    assert after[-1] == mixer.weights.tolist()


def test_a_loader_config_is_built_for_the_trainers_rank(make_corpus: Any, tmp_path: Path) -> None:
    manifest = make_corpus()
    pack = PackConfig(seq_len=SEQ, eos_id=0, field="u16", vocab_size=64)
    config = LoaderConfig(batch_size=BATCH, seed=3, pack=pack, readahead_bytes=0)
    log = tmp_path / "run.jsonl"
    trainer = _trainer(manifest, tmp_path / "out", steps=2, loader=config, run_log=str(log))
    assert trainer.mixer.loader.config == config  # rank 0 of 1: the Trainer's process
    trainer.train()
    # the same batches as a loader built by hand from it
    ref = _trainer(manifest, tmp_path / "ref", steps=2, loader=config.build(manifest))
    ref.train()
    assert trainer.mixer.loader.state_dict() == ref.mixer.loader.state_dict()
    assert LoaderConfig(**read_run_log(log).header["config"]["loader"]) == config
    with pytest.raises(ConfigError, match="a LoaderConfig and a manifest"):
        _trainer(manifest, tmp_path / "x", loader=config.build(manifest), with_manifest=True)
    with pytest.raises(ConfigError, match="with a pack"):
        _trainer(manifest, tmp_path / "y", loader=LoaderConfig(batch_size=BATCH))
    with pytest.raises(ConfigError, match="for rank 1 of 2 but this process is rank 0 of 1"):
        _trainer(manifest, tmp_path / "z", loader=config.for_rank(1, 2))


def _params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_resume_from_a_checkpoint_is_bitwise(make_corpus: Any, tmp_path: Path) -> None:
    manifest = make_corpus()
    ref = _trainer(manifest, tmp_path / "ref", steps=12, save=4,
                   run_log=str(tmp_path / "ref.jsonl"), log_batches=True)  # fmt: skip
    ref.train()
    assert (tmp_path / "ref" / "checkpoint-4" / DATA_FILE).is_file()
    # a run that stopped after step 4: its checkpoint folder and its log
    (tmp_path / "run").mkdir()
    shutil.copytree(tmp_path / "ref" / "checkpoint-4", tmp_path / "run" / "checkpoint-4")
    shutil.copy(tmp_path / "ref.jsonl", tmp_path / "run.jsonl")
    again = _trainer(manifest, tmp_path / "run", steps=12, save=4,
                     run_log=str(tmp_path / "run.jsonl"), log_batches=True)  # fmt: skip
    assert again.mixer.steps_done == 0
    again.train(resume_from_checkpoint=True)
    assert again.mixer.steps_done == 12
    # weights, samples, losses and every policy metric of steps 5..12 equal the uninterrupted run
    want, got = _params(ref.model), _params(again.model)
    assert all(torch.equal(want[k], got[k]) for k in want)
    assert train_records(tmp_path / "run.jsonl") == train_records(tmp_path / "ref.jsonl")
    assert again.mixer.state_dict() == ref.mixer.state_dict()
    assert train_records(tmp_path / "ref.jsonl")[-1]["fits"] >= 1


def test_bad_configurations_are_refused(make_corpus: Any, tmp_path: Path) -> None:
    manifest = make_corpus()
    with pytest.raises(ConfigError, match="train_dataset"):
        _trainer(manifest, tmp_path / "a", train_dataset=[1, 2])
    with pytest.raises(ConfigError, match="max_steps"):
        _trainer(manifest, tmp_path / "b", steps=-1)
    trainer = _trainer(manifest, tmp_path / "c")
    other = MixtureLoader(manifest, BATCH, rank=1, world_size=2, pack=trainer.mixer.loader.pack)
    with pytest.raises(ConfigError, match=r"rank=args\.process_index"):
        _trainer(manifest, tmp_path / "d", loader=other)
    (tmp_path / "c" / "checkpoint-3").mkdir(parents=True)  # a Trainer checkpoint without data
    with pytest.raises(StateError, match=DATA_FILE):
        trainer.train(resume_from_checkpoint=True)
    atomic_save({"format_version": 99}, tmp_path / "c" / "checkpoint-3" / DATA_FILE)
    with pytest.raises(StateError, match="format_version"):
        trainer.train(resume_from_checkpoint=str(tmp_path / "c" / "checkpoint-3"))
    assert trainer.mixer.steps_done == 0  # nothing was trained


def test_a_refused_resume_changes_nothing(make_corpus: Any, tmp_path: Path) -> None:
    """A checkpoint of another batch size is refused before the policy moves; the next fresh
    ``train()`` then runs (it failed with "steps must increase": the policy was at step 3)."""
    manifest = make_corpus()
    _trainer(manifest, tmp_path / "ref", steps=4, save=4).train()
    pack = PackConfig(seq_len=SEQ, eos_id=0, field="u16", vocab_size=64)
    other = _trainer(manifest, tmp_path / "run", steps=4,
                     loader=MixtureLoader(manifest, BATCH + 2, seed=3, pack=pack))  # fmt: skip
    before = other.mixer.state_dict()
    with pytest.raises(StateError):
        other.train(resume_from_checkpoint=str(tmp_path / "ref" / "checkpoint-4"))
    assert other.mixer.policy.step == -1
    assert other.mixer.state_dict() == before
    other.train()
    assert other.mixer.steps_done == 4


def _tamper(state: dict[str, Any], edit: str) -> Any:
    if edit == "nan_step":
        state["step"] = float("nan")
    elif edit == "missing_policy":
        del state["policy"]
    elif edit == "list_not_dict":
        return list(state.values())
    elif edit == "rank_entry_list":
        state["rank_0"] = [1, 2, 3]
    elif edit == "tensor_policy":
        state["policy"] = torch.zeros(1000)
    elif edit == "micro_string":
        entry = json.loads(state["rank_0"])
        entry["micro"] = "0"
        state["rank_0"] = json.dumps(entry)
    return state


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("nan_step", "data state is invalid: step: Input should be a valid integer"),
        ("missing_policy", "data state is invalid: policy: Field required"),
        ("list_not_dict", "data state must be a mapping, got list"),
        ("rank_entry_list", "data state rank_0 must be a JSON string (as saved) or a mapping"),
        ("tensor_policy", "data state policy must be a JSON string (as saved) or a mapping, got T"),
        ("micro_string", "data state rank_0 is invalid: micro: Input should be a valid integer"),
    ],
)
def test_a_tampered_data_state_is_refused(
    make_corpus: Any, tmp_path: Path, edit: str, message: str
) -> None:
    """A tampered ``ado_data.pt``: a ``StateError`` naming the field (was ``ValueError``,
    ``KeyError``, ``AttributeError``), and nothing changes."""
    manifest = make_corpus()
    _trainer(manifest, tmp_path / "ref", steps=2, accum=1, save=2).train()
    ckpt = tmp_path / "ref" / "checkpoint-2"
    atomic_save(_tamper(load_checkpoint(ckpt / DATA_FILE), edit), ckpt / DATA_FILE, overwrite=True)
    trainer = _trainer(manifest, tmp_path / "run", steps=2, accum=1)
    with pytest.raises(StateError, match=re.escape(message)):
        trainer.train(resume_from_checkpoint=str(ckpt))
    assert trainer.mixer.policy.step == -1


def test_a_huge_tensor_in_the_data_state_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    """A 512 MiB tensor planted in ``ado_data.pt`` is refused without being read (tensors are
    memory-mapped; the state's fields are strings): peak memory grows by far less than it."""
    path = tmp_path / DATA_FILE
    subprocess.run(
        [sys.executable, "-c", "import sys, torch; torch.save({'format_version': 1, 'step': 0, "
         "'policy': torch.zeros(2**27)}, sys.argv[1])", str(path)],
        check=True, timeout=300,
    )  # fmt: skip
    probe = textwrap.dedent(
        """
        import resource, sys
        from ado.errors import StateError
        from ado.integrations._common import read_data_state
        from ado.torch.mixer import _decode
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        state = read_data_state(sys.argv[1])
        try:
            _decode(state["policy"], "policy")
        except StateError as err:
            print(err)
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    message, grown_mib = out.stdout.strip().splitlines()
    assert "policy must be a JSON string (as saved) or a mapping, got Tensor" in message
    assert int(grown_mib) < 64, f"{grown_mib} MiB for a 512 MiB tensor"


def test_a_pickle_over_the_limit_is_refused_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ado.integrations import _common

    path = tmp_path / DATA_FILE
    atomic_save({"format_version": 1, "policy": "x" * 4096}, path)
    monkeypatch.setattr(_common, "MAX_STATE_PICKLE_BYTES", 1024)
    with pytest.raises(StateError, match="bytes of pickled objects; a data state holds at most"):
        _common.read_data_state(path)
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(StateError, match=r"not a data state written by torch\.save"):
        _common.read_data_state(tmp_path / "junk.pt")


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_resume_true_skips_a_checkpoint_whose_save_was_interrupted(
    make_corpus: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A kill between the Trainer's files and ``ado_data.pt`` leaves ``checkpoint-N`` without
    it: ``resume_from_checkpoint=True`` resumes from the newest complete one and says so."""
    manifest = make_corpus()
    _trainer(manifest, tmp_path / "out", steps=4, accum=1, save=2).train()
    (tmp_path / "out" / "checkpoint-4" / DATA_FILE).unlink()  # the save killed before it
    trainer = _trainer(manifest, tmp_path / "out", steps=4, accum=1, save=2)
    seen = _Records()
    hf_logger = logging.getLogger("transformers")  # it does not propagate to caplog's root
    hf_logger.addHandler(seen)
    try:
        with caplog.at_level("WARNING", logger="ado.integrations.hf"):
            trainer.train(resume_from_checkpoint=True)
    finally:
        hf_logger.removeHandler(seen)
    # GPT-2's lm_head.weight is tied to the embedding: restored, not "missing"
    assert not [m for m in seen.messages if "missing keys" in m], seen.messages
    assert "resuming from" in caplog.text
    assert "checkpoint-2" in caplog.text
    assert trainer.mixer.steps_done == 4
    assert trainer.state.global_step == 4


def test_two_ranks_under_torchrun_and_resume(
    make_corpus: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = make_corpus()
    cfg = tiny_config(manifest, steps=12, grad_accum=2, verify_every=1, ckpt_every=6, keep=3,
                      policy="ado")  # fmt: skip

    def step_6(ref: Path, run: Path) -> None:
        shutil.copytree(ref / "checkpoint-6", run / "checkpoint-6")

    # 2 ranks, then both resumed from the step-6 checkpoint: the same steps 7..12 on every rank
    logs = two_ranks_then_resume(cfg, tmp_path, HF_SCRIPT, step_6)
    assert logs[0][-1]["fits"] >= 1
    a = load_checkpoint(tmp_path / "ref" / "checkpoint-12" / DATA_FILE)
    b = load_checkpoint(tmp_path / "run" / "checkpoint-12" / DATA_FILE)
    assert a == b
    assert {"rank_0", "rank_1"} <= set(a)
    # ado replay reads the example's run log
    capsys.readouterr()
    assert ado_main(["replay", str(tmp_path / "ref-0.jsonl"), "--policy", "uniform"]) == 0
    assert "replayed 12 steps" in capsys.readouterr().out
