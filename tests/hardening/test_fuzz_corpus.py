"""Replay the Rust fuzz corpus through the Python binding: each input is indexed or refused with
a ``ShardError``; none panics. The outcome matches the class recorded by the fuzzer."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from ado.data import index_shard
from ado.errors import ShardError

CORPUS = Path(__file__).resolve().parents[2] / "rust" / "ado-core" / "tests" / "fuzz_corpus"
EXPECTED = [
    line.split("\t", 1) for line in (CORPUS / "expected.tsv").read_text().splitlines() if line
]


def test_corpus_is_there() -> None:
    assert len(EXPECTED) >= 15


@pytest.mark.parametrize(("name", "outcome"), EXPECTED, ids=[n for n, _ in EXPECTED])
def test_corpus_input(name: str, outcome: str, tmp_path: Path) -> None:
    shard = tmp_path / name
    shutil.copyfile(CORPUS / name, shard)
    if outcome.startswith("ok"):
        info = index_shard(shard, tmp_path / "cache")
        assert info["source"] == "built"
        assert info["members"] >= info["samples"]
        again = index_shard(shard, tmp_path / "cache")
        assert again["source"] == "cache"
        assert again["samples"] == info["samples"]
    else:
        with pytest.raises(ShardError) as err:
            index_shard(shard, tmp_path / "cache")
        first_words = outcome.removeprefix("err ").split(":")[0]
        assert first_words in str(err.value)
