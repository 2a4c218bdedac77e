"""Corpus tokenizers: a byte-level BPE trained with Hugging Face ``tokenizers``, or bytes.

Both map text to token ids ``< vocab_size`` with a reserved end-of-document id (``eos_id``), and
both give the id of each of the 256 raw bytes (the noise domain is drawn over those ids, so its
loss floor is ``ln 256`` nats per token whatever the tokenizer).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ado.errors import ConfigError

__all__ = ["EOS_TOKEN", "MAX_VOCAB_SIZE", "CorpusTokenizer", "check_vocab_size", "train_bpe"]

logger = logging.getLogger(__name__)

#: The end-of-document token of trained BPE tokenizers (id 0).
EOS_TOKEN = "<|endoftext|>"
#: The largest vocabulary: token ids are stored as u16.
MAX_VOCAB_SIZE = 1 << 16

U16 = npt.NDArray[np.uint16]


@lru_cache(maxsize=1)
def _byte_chars() -> list[str]:
    """GPT-2's byte → printable character table (what ``ByteLevel`` uses), indexed by byte."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = dict(zip(bs, cs, strict=True))
    return [chr(table[b]) for b in range(256)]


class CorpusTokenizer:
    """Text → token ids, for shard building.

    Use :meth:`plain_bytes` or :func:`train_bpe` to make one, :meth:`load` to read one saved with a
    corpus.

    Attributes:
        kind: ``"bpe"`` or ``"bytes"``.
        vocab_size: ids are ``< vocab_size``.
        eos_id: the end-of-document id.
    """

    def __init__(self, kind: Literal["bpe", "bytes"], hf: Any | None = None) -> None:
        self.kind = kind
        self._hf = hf
        if kind == "bytes":
            self.vocab_size = 257
            self.eos_id = 256
            self._byte_ids = np.arange(256, dtype=np.uint16)
        else:
            if hf is None:
                raise ConfigError("a BPE CorpusTokenizer needs a trained tokenizers.Tokenizer")
            self.vocab_size = int(hf.get_vocab_size())
            eos = hf.token_to_id(EOS_TOKEN)
            if eos is None:
                raise ConfigError(f"the BPE tokenizer has no {EOS_TOKEN} token")
            self.eos_id = int(eos)
            ids = [hf.token_to_id(c) for c in _byte_chars()]
            if any(i is None for i in ids):
                raise ConfigError("the BPE tokenizer lacks some of the 256 byte-level symbols")
            self._byte_ids = np.asarray(ids, dtype=np.uint16)
        check_vocab_size(self.vocab_size)

    @classmethod
    def plain_bytes(cls) -> CorpusTokenizer:
        """Plain UTF-8 bytes: ids 0-255, ``eos_id`` 256."""
        return cls("bytes")

    @classmethod
    def load(cls, folder: str | Path) -> CorpusTokenizer:
        """The tokenizer of a built corpus (``tokenizer.json`` if present, else bytes)."""
        path = Path(folder) / "tokenizer.json"
        if not path.exists():
            return cls.plain_bytes()
        from tokenizers import Tokenizer

        return cls("bpe", Tokenizer.from_file(str(path)))

    def encode_batch(self, texts: Sequence[str]) -> list[U16]:
        """Token ids of each text (no ``eos_id``: the loader appends it when packing)."""
        if self._hf is None:
            return [
                np.frombuffer(t.encode("utf-8"), dtype=np.uint8).astype(np.uint16) for t in texts
            ]
        encs = self._hf.encode_batch(list(texts), add_special_tokens=False)
        return [np.asarray(e.ids, dtype=np.uint16) for e in encs]

    def byte_ids(self, data: bytes) -> U16:
        """Token ids of raw bytes, one token per byte (the noise domain)."""
        out: U16 = self._byte_ids[np.frombuffer(data, dtype=np.uint8)]
        return out

    def token_text(self, token_id: int) -> str:
        """The text of one token id (for reports: a byte token outside UTF-8 reads as ``\\xNN``)."""
        if self._hf is None:
            if token_id >= 256:
                return "<eos>"
            return chr(token_id) if 32 <= token_id < 127 else f"\\x{token_id:02x}"
        text: str = self._hf.decode([int(token_id)])
        return text

    def save(self, folder: str | Path) -> None:
        """Write ``tokenizer.json`` (BPE only; a byte tokenizer needs no file)."""
        if self._hf is not None:
            # Through json so that the file is stable (sorted vocab is what tokenizers writes).
            text = self._hf.to_str(pretty=False)
            (Path(folder) / "tokenizer.json").write_text(json.dumps(json.loads(text), indent=0))

    def describe(self) -> dict[str, Any]:
        """JSON-safe summary for the corpus metadata."""
        return {"kind": self.kind, "vocab_size": self.vocab_size, "eos_id": self.eos_id}


def check_vocab_size(vocab_size: int) -> None:
    """Refuse a vocabulary outside ``[1, MAX_VOCAB_SIZE]`` (a ``ConfigError``)."""
    if not 1 <= vocab_size <= MAX_VOCAB_SIZE:
        raise ConfigError(
            f"vocab_size must be in [1, {MAX_VOCAB_SIZE}] (token ids are stored as u16), "
            f"got {vocab_size}"
        )


def train_bpe(texts: Sequence[str], vocab_size: int = 8192) -> CorpusTokenizer:
    """Train a byte-level BPE on ``texts`` (a uniform held-out sample of the domains).

    Args:
        texts: training texts, in a fixed order (the result depends on it).
        vocab_size: target vocabulary, including the 256 byte symbols and ``<|endoftext|>``.

    Raises:
        ConfigError: ``tokenizers`` is not installed, or no training text.
    """
    try:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ConfigError(
            "--tokenizer bpe needs the 'tokenizers' package: pip install 'ado[corpus]' "
            "(or use --tokenizer bytes)"
        ) from err
    check_vocab_size(vocab_size)  # before training: a huge one aborts the trainer (SIGABRT)
    if not texts:
        raise ConfigError("no text to train the tokenizer on")
    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    hf.train_from_iterator(list(texts), trainer=trainer, length=len(texts))
    logger.info("trained a %d-token byte-level BPE", hf.get_vocab_size())
    return CorpusTokenizer("bpe", hf)
