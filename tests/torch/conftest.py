"""Fixtures for the PyTorch tests: a tiny token corpus (WebDataset shards with a ``u16`` field)
and one torch thread."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
wds = pytest.importorskip("webdataset")

VOCAB = 64
EOS = 0

MakeCorpus = Callable[..., Path]


def write_domain(folder: Path, name: str, docs: list[np.ndarray], per_shard: int = 20) -> None:
    """Write ``docs`` (uint16 token arrays) as shards ``folder/name/shard-NNN.tar``."""
    out = folder / name
    out.mkdir(parents=True, exist_ok=True)
    with wds.ShardWriter(
        str(out / "shard-%03d.tar"), maxcount=per_shard, verbose=0, mtime=0.0
    ) as sink:
        for i, doc in enumerate(docs):
            sink.write({"__key__": f"{name}-{i:05d}", "u16": doc.astype("<u2").tobytes()})


def _docs(kind: str, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    out = []
    for _ in range(n):
        length = int(rng.integers(20, 60))
        if kind == "cycle":  # learnable: a counting pattern with a random phase
            start = int(rng.integers(1, VOCAB))
            doc = (start + np.arange(length)) % (VOCAB - 1) + 1
        elif kind == "pairs":  # half-learnable: random tokens, each repeated twice
            doc = np.repeat(rng.integers(1, VOCAB, size=(length + 1) // 2), 2)[:length]
        else:  # noise: unlearnable
            doc = rng.integers(1, VOCAB, size=length)
        out.append(doc.astype(np.uint16))
    return out


@pytest.fixture
def make_corpus(tmp_path: Path) -> MakeCorpus:
    """``make_corpus(tiny=False)`` writes three domains (``cycle``, ``pairs``, ``noise``; 60, 50
    and 40 documents) and, with ``tiny``, a fourth with a single document; returns the manifest."""

    def make(tiny: bool = False, name: str = "corpus") -> Path:
        root = tmp_path / name
        rng = np.random.default_rng(1234)
        domains = {"cycle": 60, "pairs": 50, "noise": 40}
        for dom, n in domains.items():
            write_domain(root, dom, _docs(dom, n, rng))
        lines = ["domains:"] + [f"  {d}: {d}/*.tar" for d in domains]
        if tiny:
            write_domain(root, "tiny", _docs("cycle", 1, rng))
            lines.append("  tiny: tiny/*.tar")
        manifest = root / "manifest.yaml"
        manifest.write_text("\n".join(lines) + "\n")
        return manifest

    return make


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """torch on one thread for the test, restored after it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
