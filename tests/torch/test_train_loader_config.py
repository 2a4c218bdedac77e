"""``TrainConfig`` carries the training loader's :class:`~ado.data.LoaderConfig` whole: its
other options are given there, its batch size, seed, mode and packing are the run's fields, its
rank and world size the process group's; the JSON form (compare's torchrun hand-off, checkpoints,
the run log) holds it and builds the same run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ado.data import LoaderConfig
from ado.runlog import read_run_log
from ado.torch import TrainConfig, train
from pydantic import ValidationError
from torch_runs import tiny_config


def test_train_config_carries_the_loader_config(make_corpus: Any, tmp_path: Path) -> None:
    manifest = make_corpus()
    options = {"readahead_bytes": 0, "max_open_files": 2, "cache_dir": str(tmp_path / "idx")}
    cfg = TrainConfig(
        **tiny_config(manifest, steps=2, log_path=str(tmp_path / "log.jsonl")), loader=options
    )
    assert cfg.loader == LoaderConfig(
        batch_size=cfg.batch_size, seed=cfg.seed, mode=cfg.mode, pack=cfg.pack(), **options
    )
    # the JSON form round-trips (a LoaderConfig given whole, too)
    assert TrainConfig(**json.loads(cfg.model_dump_json())) == cfg
    assert TrainConfig(**{**tiny_config(manifest), "loader": cfg.loader}).loader == cfg.loader
    # a configuration saved before the field existed still loads, with the defaults
    old = cfg.model_dump()
    del old["loader"]
    assert TrainConfig(**old).loader == LoaderConfig(
        batch_size=cfg.batch_size, seed=cfg.seed, mode=cfg.mode, pack=cfg.pack()
    )
    # the run's loader is that configuration (for rank 0 of 1), and the run log holds it
    seen: list[LoaderConfig] = []
    train(cfg, on_step=lambda t, stats, mixer: seen.append(mixer.loader.config))
    assert seen == [cfg.loader, cfg.loader]
    logged = read_run_log(tmp_path / "log.jsonl").header["config"]["loader"]
    assert LoaderConfig(**logged) == cfg.loader


@pytest.mark.parametrize(
    ("loader", "named"),
    [
        ({"batch_size": 3}, "loader.batch_size is 3 but the run's is 4: set the run's batch_size"),
        ({"seed": 9}, "loader.seed is 9 but the run's is 0"),
        ({"pack": {"seq_len": 8, "eos_id": 0}}, "set the run's seq_len, eos_id, field, vocab_size"),
        ({"rank": 1, "world_size": 2}, "loader.rank and loader.world_size are set by the process"),
        ({"readahed_bytes": 0}, "readahed_bytes: Extra inputs are not permitted"),
        ({"max_open_files": 0}, "max_open_files: Input should be greater than or equal to 1"),
        (7, "loader\n  Value error, must be a LoaderConfig or a mapping, got int"),
    ],
)
def test_train_config_refuses_a_loader_config_it_cannot_carry(
    make_corpus: Any, loader: Any, named: str
) -> None:
    with pytest.raises(ValidationError, match=named):
        TrainConfig(**tiny_config(make_corpus()), loader=loader)


def test_credentials_stay_out_of_train_config_errors(make_corpus: Any) -> None:
    loader = {"storage_options": {"token": "s3cr3t-not-shown"}, "readahed_bytes": 0}
    with pytest.raises(ValidationError) as err:
        TrainConfig(**tiny_config(make_corpus()), loader=loader)
    assert "readahed_bytes" in str(err.value)
    assert "not-shown" not in str(err.value)
