"""``ado.integrations.lightning``: a Lightning Trainer on the mixture, in process (one rank,
gradient accumulation, logged metrics, bitwise resume, bad configurations) and under ``torchrun``
(``strategy="ddp"``, two gloo ranks, resumed, through ``benchmarks/train_lightning.py``, whose
log ``ado replay`` reads)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

L = pytest.importorskip("lightning")

from ado.cli import main as ado_main  # noqa: E402
from ado.data import LoaderConfig, PackConfig  # noqa: E402
from ado.errors import ConfigError, InvalidInputError, StateError  # noqa: E402
from ado.integrations.lightning import CHECKPOINT_KEY, AdoCallback, MixtureDataModule  # noqa: E402
from ado.runlog import read_run_log  # noqa: E402
from ado.torch import GPT, GPTConfig  # noqa: E402
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402
from torch_runs import (  # noqa: E402
    FAST_ADO,
    ROOT,
    tiny_config,
    train_records,
    two_ranks_then_resume,
)

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    # lightning 2.6 on torch 2.10+: an upstream deprecation inside Lightning's own code
    pytest.mark.filterwarnings("ignore:.*LeafSpec.*is deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:.*does not have many workers:UserWarning"),
    # a machine with SLURM installed (srun on PATH) but these runs not under it
    pytest.mark.filterwarnings("ignore:The `srun` command is available"),
]

SEQ, BATCH = 16, 4
PL_SCRIPT = ROOT / "benchmarks" / "train_lightning.py"


class TinyLM(L.LightningModule):
    def __init__(self, per_sequence: bool = True) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.model = GPT(GPTConfig(vocab_size=64, seq_len=SEQ, n_layer=1, n_head=2, n_embd=32))
        self.per_sequence = per_sequence

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> Any:
        per_seq = self.model(batch["input_ids"], batch["targets"])
        if not self.per_sequence:
            return per_seq.mean()
        return {"loss": per_seq.mean(), "per_sequence_loss": per_seq}

    def configure_optimizers(self) -> Any:
        return torch.optim.AdamW(self.parameters(), lr=3e-3)


PACK = PackConfig(seq_len=SEQ, eos_id=0, field="u16", vocab_size=64)


def _fit(
    manifest: Path,
    root: Path,
    *,
    steps: int = 12,
    accum: int = 3,
    ckpt_every: int = 0,
    ckpt_path: str | None = None,
    callbacks: list[Any] | None = None,
    module: TinyLM | None = None,
    data: MixtureDataModule | None = None,
    **ado: Any,
) -> tuple[Any, MixtureDataModule, AdoCallback, TinyLM]:
    data = data or MixtureDataModule(
        manifest,
        BATCH,
        pack=PACK,
        policy="ado",
        overrides=FAST_ADO,
        seed=3,
    )
    cb = AdoCallback(**ado)
    extra: list[Any] = list(callbacks if callbacks is not None else [cb])
    if ckpt_every:
        extra.append(
            ModelCheckpoint(dirpath=root, filename="step_{step:03d}", auto_insert_metric_name=False,
                            every_n_train_steps=ckpt_every, save_top_k=-1)
        )  # fmt: skip
    trainer = L.Trainer(
        max_steps=steps,
        accumulate_grad_batches=accum,
        accelerator="cpu",
        devices=1,
        callbacks=extra,
        logger=False,
        enable_checkpointing=bool(ckpt_every),
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        log_every_n_steps=4,
    )
    module = module or TinyLM()
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    return trainer, data, cb, module


def test_one_rank_with_gradient_accumulation(make_corpus: Any, tmp_path: Path) -> None:
    manifest = make_corpus()
    trainer, data, _, _ = _fit(manifest, tmp_path, log_path=str(tmp_path / "run.jsonl"))
    mixer = data.mixer
    assert mixer is not None
    assert trainer.global_step == 12
    # one policy step per optimizer step and exactly accum draws per step: Lightning did not
    # fetch ahead across a step boundary (the mixer refuses an (accum + 1)-th draw)
    assert mixer.steps_done == 12
    assert mixer.loader.step == 12 * 3
    log = read_run_log(tmp_path / "run.jsonl")
    assert log.header["source"] == "lightning"
    steps = list(log.steps())
    assert [s.step for s in steps] == list(range(12))
    assert all(s.counts.sum() == 3 * BATCH for s in steps)  # every micro-batch was recorded
    # each step's batches were drawn with the weights set at the end of the step before
    drawn = [rec["weights"] for rec in log.events("step")]
    assert drawn[0] == mixer.policy.prior.tolist()
    assert len({tuple(w) for w in drawn}) == 2  # the refit at step 10 moved them
    # the policy's metrics reach Lightning's loggers
    logged = trainer.logged_metrics
    assert [float(logged[f"ado/weight/{d}"]) for d in mixer.domains] == pytest.approx(
        mixer.weights.tolist()
    )
    assert float(logged["ado/fits"]) == 1.0


def test_a_loader_config_is_carried_whole(make_corpus: Any, tmp_path: Path) -> None:
    manifest = make_corpus()
    config = LoaderConfig(batch_size=BATCH, seed=3, pack=PACK, readahead_bytes=0, max_open_files=2)
    data = MixtureDataModule(manifest, loader=config, overrides=FAST_ADO)
    log = tmp_path / "run.jsonl"
    _fit(manifest, tmp_path, steps=2, accum=1, data=data, log_path=str(log))
    assert data.mixer is not None
    assert data.mixer.loader.config == config  # (rank 0 of 1: the Trainer's)
    assert LoaderConfig(**read_run_log(log).header["config"]["loader"]) == config
    # the same through the fields and loader_options, validated when the module is made
    options = {"readahead_bytes": 0, "max_open_files": 2}
    again = MixtureDataModule(manifest, BATCH, pack=PACK, seed=3, loader_options=options)
    assert again.loader_config == config
    with pytest.raises(InvalidInputError, match="readahed_bytes: Extra inputs are not permitted"):
        MixtureDataModule(manifest, BATCH, pack=PACK, loader_options={"readahed_bytes": 0})
    with pytest.raises(ConfigError, match="not both"):
        MixtureDataModule(manifest, BATCH, loader=config)
    with pytest.raises(ConfigError, match=r"\['seed'\] given both"):
        MixtureDataModule(manifest, BATCH, pack=PACK, seed=1, loader_options={"seed": 2})
    with pytest.raises(ConfigError, match="packed rows"):
        MixtureDataModule(manifest, BATCH)


def _state(module: TinyLM) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.filterwarnings("ignore:The dirpath has changed:UserWarning")  # a copied checkpoint
def test_resume_from_a_checkpoint_is_bitwise(make_corpus: Any, tmp_path: Path) -> None:
    manifest = make_corpus()
    _, ref_data, _, ref_module = _fit(
        manifest, tmp_path / "ref", ckpt_every=4, log_path=str(tmp_path / "ref.jsonl"),
        log_batches=True,
    )  # fmt: skip
    ckpt = tmp_path / "ref" / "step_004.ckpt"
    assert CHECKPOINT_KEY in torch.load(ckpt, weights_only=False)
    shutil.copy(tmp_path / "ref.jsonl", tmp_path / "run.jsonl")  # the log of a run stopped at 4
    _, data, _, module = _fit(
        manifest, tmp_path / "run", ckpt_every=4, ckpt_path=str(ckpt),
        log_path=str(tmp_path / "run.jsonl"), log_batches=True,
    )  # fmt: skip
    # weights, samples, losses and every policy metric of steps 5..12 equal the uninterrupted run
    want, got = _state(ref_module), _state(module)
    assert all(torch.equal(want[k], got[k]) for k in want)
    assert train_records(tmp_path / "run.jsonl") == train_records(tmp_path / "ref.jsonl")
    assert data.mixer is not None
    assert ref_data.mixer is not None
    assert data.mixer.state_dict() == ref_data.mixer.state_dict()
    assert train_records(tmp_path / "ref.jsonl")[-1]["fits"] >= 1


@pytest.mark.filterwarnings("ignore:`max_epochs` was not set")  # the max_steps=-1 case
def test_bad_configurations_are_refused(make_corpus: Any, tmp_path: Path) -> None:
    manifest = make_corpus()
    with pytest.raises(ConfigError, match="AdoCallback"):
        _fit(manifest, tmp_path / "a", callbacks=[])
    with pytest.raises(ConfigError, match="per_sequence_loss"):
        _fit(manifest, tmp_path / "b", module=TinyLM(per_sequence=False))
    with pytest.raises(ConfigError, match="max_steps"):
        _fit(manifest, tmp_path / "c", steps=-1)
    # a Lightning checkpoint without the data side cannot resume it
    _fit(manifest, tmp_path / "d", steps=2, ckpt_every=2)
    ckpt = torch.load(tmp_path / "d" / "step_002.ckpt", weights_only=False)
    del ckpt[CHECKPOINT_KEY]
    torch.save(ckpt, tmp_path / "bare.ckpt")
    with pytest.raises(StateError, match="no 'ado' entry"):
        _fit(manifest, tmp_path / "e", steps=4, ckpt_every=2, ckpt_path=str(tmp_path / "bare.ckpt"))


def test_a_tampered_data_state_is_refused(make_corpus: Any, tmp_path: Path) -> None:
    """A tampered ``checkpoint["ado"]``: a ``StateError`` naming the field (was ``ValueError``,
    ``KeyError``, ``AttributeError``); the data side is validated whole before it changes."""
    manifest = make_corpus()
    _fit(manifest, tmp_path / "d", steps=2, accum=1, ckpt_every=2)
    ckpt = torch.load(tmp_path / "d" / "step_002.ckpt", weights_only=False)
    for edit, message in [
        (lambda s: s.update(step=float("nan")), "step: Input should be a valid integer"),
        (lambda s: s.pop("policy"), "policy: Field required"),
        (lambda s: s.update(policy=torch.zeros(8)), "policy must be a JSON string"),
    ]:
        bad = {**ckpt, CHECKPOINT_KEY: dict(ckpt[CHECKPOINT_KEY])}
        edit(bad[CHECKPOINT_KEY])
        torch.save(bad, tmp_path / "bad.ckpt")
        with pytest.raises(StateError, match=message):
            _fit(manifest, tmp_path / "e", steps=4, accum=1, ckpt_every=2,
                 ckpt_path=str(tmp_path / "bad.ckpt"))  # fmt: skip
    torch.save({**ckpt, CHECKPOINT_KEY: [1, 2]}, tmp_path / "bad.ckpt")
    with pytest.raises(StateError, match="data state must be a mapping, got list"):
        _fit(manifest, tmp_path / "e", steps=4, accum=1, ckpt_every=2,
             ckpt_path=str(tmp_path / "bad.ckpt"))  # fmt: skip


def test_two_ranks_ddp_under_torchrun_and_resume(
    make_corpus: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = make_corpus()
    cfg = tiny_config(manifest, steps=12, grad_accum=2, verify_every=1, ckpt_every=6, keep=3)

    def step_6(ref: Path, run: Path) -> None:
        shutil.copy(ref / "step_00000006.ckpt", run)  # rank 0 wrote every rank's data side

    # 2 ranks (ddp), then both resumed from the step-6 checkpoint
    logs = two_ranks_then_resume(cfg, tmp_path, PL_SCRIPT, step_6)
    assert logs[0][-1]["fits"] >= 1
    a = torch.load(tmp_path / "ref" / "step_00000012.ckpt", weights_only=False)
    b = torch.load(tmp_path / "run" / "step_00000012.ckpt", weights_only=False)
    assert a[CHECKPOINT_KEY] == b[CHECKPOINT_KEY]
    assert {"rank_0", "rank_1"} <= set(a[CHECKPOINT_KEY])
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    # ado replay reads the example's run log
    capsys.readouterr()
    assert ado_main(["replay", str(tmp_path / "ref-0.jsonl"), "--policy", "uniform"]) == 0
    assert "replayed 12 steps" in capsys.readouterr().out
