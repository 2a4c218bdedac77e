"""A corpus on which data-parallel training must reproduce one-process training: every document
of a domain is the same token sequence, one packed row long (``seq_len`` tokens + EOS). Each rank
reads its own documents (:class:`~ado.data.MixtureLoader` shards every domain by rank), yet every
row of a domain is the same, so a 2-rank run with per-rank batch B/2 sees exactly the rows, slot
by slot, of a 1-rank run with batch B: the maths says their losses agree to float rounding."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np

VOCAB = 64
EOS = 0
DOMAINS = ("counting", "pairs", "noise")


def _doc(name: str, length: int) -> np.ndarray:
    rng = np.random.default_rng(DOMAINS.index(name))
    if name == "counting":
        return (np.arange(length) % (VOCAB - 1)) + 1
    if name == "pairs":
        return np.repeat(rng.integers(1, VOCAB, (length + 1) // 2), 2)[:length]
    return rng.integers(1, VOCAB, length)


def _shard(path: Path, name: str, doc: np.ndarray, n: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = doc.astype("<u2").tobytes()
    with tarfile.open(path, "w") as tar:
        for i in range(n):
            info = tarfile.TarInfo(f"{name}-{i:04d}.u16")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def replica_corpus(root: Path, seq_len: int, docs: int = 16) -> Path:
    """Write the corpus (train, val, ``corpus.json``) under ``root``; returns ``root``."""
    info: dict[str, object] = {
        "format_version": 1,
        "recipe": "replica (tests)",
        "tokenizer": {"kind": "ids", "vocab_size": VOCAB, "eos_id": EOS},
        "field": "u16",
        "domains": {},
    }
    for split in ("train", "val"):
        lines = ["domains:"]
        for name in DOMAINS:
            doc = _doc(name, seq_len)
            rel = f"{split}/{name}/{name}-00000.tar"
            _shard(root / rel, name, doc, docs)
            lines += [f"  {name}:", "    shards:", f"    - {rel}"]
            counts = {"samples": docs, "tokens": docs * seq_len, "shards": 1}
            info["domains"].setdefault(name, {"noise": False})[split] = counts  # type: ignore[union-attr]
        (root / ("manifest.yaml" if split == "train" else "val.yaml")).write_text(
            "\n".join(lines) + "\n"
        )
    (root / "corpus.json").write_text(json.dumps(info, indent=2) + "\n")
    return root
