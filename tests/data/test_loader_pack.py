"""LM packing: rows never mix domains, no token is lost, resume is exact."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import webdataset as wds  # type: ignore[import-untyped]
from ado.data import Manifest, MixtureLoader, PackConfig
from ado.errors import InvalidInputError

EOS = 0
SEQ = 16

# webdataset 1.0.2 (used as the reference reader) leaves shard files to the garbage collector.
pytestmark = [
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]


@pytest.fixture
def manifest(make_domain: Any, tmp_path: Path) -> Manifest:
    make_domain("a", 40, per_shard=10, tokens=True)
    make_domain("b", 25, per_shard=10, tokens=True)
    return Manifest.from_dict({"a": "a/*.tar", "b": "b/*.tar"}, base_dir=str(tmp_path))


def _docs(manifest: Manifest, field: str) -> dict[str, dict[str, np.ndarray]]:
    """Tokens of every document, per domain and key, read with webdataset."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, paths in manifest.resolve().items():
        ds = wds.WebDataset([str(p) for p in paths], shardshuffle=False, empty_check=False)
        docs = {}
        for s in ds:
            raw = s[field]
            docs[s["__key__"]] = (
                np.load(io.BytesIO(raw)) if field == "npy" else np.frombuffer(raw, "<u2")
            ).astype(np.int64)
        out[name] = docs
    return out


@pytest.mark.parametrize(("field", "dtype"), [("npy", "int64"), ("u16", "int32"), ("u32", "int64")])
def test_packing_keeps_domains_apart_and_loses_no_token(
    manifest: Manifest, field: str, dtype: str
) -> None:
    pack = PackConfig(seq_len=SEQ, eos_id=EOS, field=field, dtype=dtype, vocab_size=1000)
    loader = MixtureLoader(manifest, 8, seed=2, pack=pack, weights=[0.6, 0.4])
    rows: dict[int, list[np.ndarray]] = {0: [], 1: []}
    for _ in range(30):
        b = next(loader)
        assert b.tokens is not None
        assert b.samples is None
        assert b.tokens.shape == (8, SEQ + 1)
        assert b.tokens.dtype == np.dtype(dtype)
        # The Rust buffer is handed to numpy as is (the array does not own a copy).
        assert b.tokens.flags.c_contiguous
        assert not b.tokens.flags.owndata
        for row, d in zip(b.tokens, b.domain, strict=True):
            rows[int(d)].append(row.astype(np.int64))
    docs = _docs(manifest, "npy")
    for d, name in enumerate(manifest.names):
        # The domain's document order, from a raw loader with the same seed drawing only it.
        raw = MixtureLoader(manifest, 10, seed=2, weights=[float(i == d) for i in range(2)])
        order = [k for _ in range(20) for k in next(raw).keys]
        expected = np.concatenate([np.append(docs[name][k], EOS) for k in order])
        got = np.concatenate(rows[d])
        assert len(got) <= len(expected)
        np.testing.assert_array_equal(got, expected[: len(got)])  # nothing lost, nothing mixed


def test_index_reports_raw_token_counts(manifest: Manifest) -> None:
    from ado.data import index_shard

    paths = manifest.resolve()["a"]
    info = [index_shard(p) for p in paths]
    u16 = sum(i["tokens"]["u16"] for i in info)
    u32 = sum(i["tokens"]["u32"] for i in info)
    docs = _docs(manifest, "npy")["a"]
    assert u16 == u32 == sum(len(v) for v in docs.values())
    assert "npy" not in info[0]["tokens"]


def test_packing_resume_is_exact(manifest: Manifest) -> None:
    pack = PackConfig(seq_len=SEQ, eos_id=EOS, field="u16")
    ws = [[0.5, 0.5], [0.9, 0.1], [0.0, 1.0], [1.0, 0.0]]

    def run(loader: MixtureLoader, steps: int, offset: int) -> list[Any]:
        out = []
        for t in range(steps):
            loader.set_weights(ws[(t + offset) % len(ws)])
            b = next(loader)
            assert b.tokens is not None
            out.append((b.keys, b.domain.tolist(), b.tokens.tolist()))
        return out

    full = run(MixtureLoader(manifest, 4, seed=7, pack=pack), 40, 0)
    for k in (3, 21):
        first = MixtureLoader(manifest, 4, seed=7, pack=pack)
        head = run(first, k, 0)
        state = json.loads(json.dumps(first.state_dict()))
        again = MixtureLoader(manifest, 4, seed=7, pack=pack, readahead_bytes=0)
        again.load_state_dict(state)
        assert head + run(again, 40 - k, k) == full


def test_text_tokenizer_and_vocab_errors(manifest: Manifest) -> None:
    def tokenizer(text: str) -> list[int]:
        return [ord(c) for c in text]

    pack = PackConfig(seq_len=8, eos_id=1, field="txt", tokenizer=tokenizer)
    b = next(MixtureLoader(manifest, 3, pack=pack))
    assert b.tokens is not None
    joined = "".join(chr(t) if t != 1 else "|" for t in b.tokens[0].tolist())
    assert joined.startswith(b.keys[0])
    small = PackConfig(seq_len=8, eos_id=0, field="u16", vocab_size=10)
    with pytest.raises(InvalidInputError, match="vocab_size 10"):
        next(MixtureLoader(manifest, 3, pack=small))
    with pytest.raises(InvalidInputError, match="no field"):
        next(MixtureLoader(manifest, 3, pack=PackConfig(seq_len=8, eos_id=0, field="x.u32")))
    with pytest.raises(InvalidInputError, match="must end in"):
        MixtureLoader(manifest, 3, pack=PackConfig(seq_len=8, eos_id=0, field="tokens.bin"))
