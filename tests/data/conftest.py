"""Fixtures for the loader tests: small WebDataset shards written in temporary folders."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import webdataset as wds  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).parent))
from servers import ShardHTTPServer, s3_env

MakeDomain = Callable[..., list[Path]]


def _npy(tokens: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, tokens)
    return buf.getvalue()


@pytest.fixture
def make_domain(tmp_path: Path) -> MakeDomain:
    """``make_domain(name, n, per_shard=..., tokens=False)`` writes shards for one domain.

    Each sample has ``txt`` (its key) and ``bin`` members; with ``tokens=True`` also ``npy``
    (uint16), ``u16`` and ``u32`` token fields of random lengths, ids ``< 1000``.
    """

    def make(name: str, n: int, per_shard: int = 25, tokens: bool = False) -> list[Path]:
        folder = tmp_path / name
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng([ord(c) for c in name] + [n])
        with wds.ShardWriter(
            str(folder / "shard-%03d.tar"), maxcount=per_shard, verbose=0, mtime=0.0
        ) as sink:
            for i in range(n):
                key = f"{name}-{i:05d}"
                sample: dict[str, object] = {
                    "__key__": key,
                    "txt": key,
                    "bin": rng.bytes(int(rng.integers(1, 64))),
                }
                if tokens:
                    toks = rng.integers(1, 1000, size=int(rng.integers(0, 40)), dtype=np.uint16)
                    sample["npy"] = _npy(toks)
                    sample["u16"] = toks.tobytes()
                    sample["u32"] = toks.astype("<u4").tobytes()
                sink.write(sample)
        return sorted(folder.glob("shard-*.tar"))

    return make


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for key, value in s3_env(s3_endpoint).items():
        monkeypatch.setenv(key, value)
    return s3_endpoint


@pytest.fixture
def corpus(make_domain: Any, tmp_path: Path) -> Path:
    """Two domains of token shards under ``tmp_path`` (``web``: 5 shards, ``code``: 3)."""
    make_domain("web", 100, per_shard=20, tokens=True)
    make_domain("code", 45, per_shard=15, tokens=True)
    return tmp_path


@pytest.fixture
def http(corpus: Path) -> Iterator[ShardHTTPServer]:
    server = ShardHTTPServer(corpus).start()
    yield server
    server.stop()
