"""Forks: a child forked from a process whose loader reads remote shards (os.fork, torch
DataLoader workers with fork or spawn) reads the same batches, and never pins a shard its parent
released (the child closes its copies of the parent's flock descriptors at once)."""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ado.data import MixtureLoader, PackConfig
from ado.data.remote import RemoteConfig

sys.path.insert(0, str(Path(__file__).parent))
from servers import ShardHTTPServer, upload

FAST = RemoteConfig(retries=4, backoff_s=0.001, backoff_max_s=0.01, prefetch_bytes=0)
PACK = PackConfig(seq_len=16, eos_id=0, field="u16")


@pytest.fixture(params=["http", "s3"])
def remote_manifest(
    make_domain: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[dict[str, str]]:
    """The corpus behind the local HTTP server (fsspec), or on moto's S3 server (obstore: its
    runtime and connections are the parent's after a fork, and must not be used there)."""
    make_domain("web", 100, per_shard=20, tokens=True)
    make_domain("code", 45, per_shard=15, tokens=True)
    if request.param == "s3":
        pytest.importorskip("obstore")
        endpoint = request.getfixturevalue("s3")
        bucket = f"fork-{uuid.uuid4().hex[:12]}"
        upload(endpoint, bucket, tmp_path)
        yield {
            "web": f"s3://{bucket}/web/shard-{{000..004}}.tar",
            "code": f"s3://{bucket}/code/shard-{{000..002}}.tar",
        }
        return
    server = ShardHTTPServer(tmp_path).start()
    base = server.url("").rstrip("/")
    yield {
        "web": f"{base}/web/shard-{{000..004}}.tar",
        "code": f"{base}/code/shard-{{000..002}}.tar",
    }
    server.stop()


def _loader(manifest: dict[str, str], cache: Path) -> MixtureLoader:
    return MixtureLoader(
        manifest, 4, seed=2, pack=PACK, cache_dir=cache, remote=FAST, max_open_files=4
    )


def _expected(manifest: dict[str, str], cache: Path, skip: int, n: int) -> list[bytes]:
    with _loader(manifest, cache) as ref:
        for _ in range(skip):
            next(ref)
        return [next(ref).tokens.tobytes() for _ in range(n)]  # type: ignore[union-attr]


def test_os_fork_child_reads_identical_batches_and_pins_nothing(
    remote_manifest: dict[str, str], tmp_path: Path
) -> None:
    want = _expected(remote_manifest, tmp_path / "ref-cache", 5, 10)
    loader = _loader(remote_manifest, tmp_path / "cache")
    for _ in range(5):
        next(loader)  # read-ahead threads run; the shards being read are held (shared flocks)
    assert loader.cache is not None
    cache = loader.cache
    assert cache._held
    to_child_r, to_child_w = os.pipe()
    to_parent_r, to_parent_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: wait while the parent evicts, then read
        status = 1
        try:
            os.close(to_child_w)
            os.close(to_parent_r)
            held = len(cache._held)
            os.write(to_parent_w, b"forked\n")
            os.read(to_child_r, 1)
            got = [next(loader).tokens.tobytes() for _ in range(10)]  # type: ignore[union-attr]
            report = {"held_after_fork": held, "same": got == want}
            os.write(to_parent_w, json.dumps(report).encode() + b"\n")
            loader.close()
            status = 0
        finally:
            os._exit(status)
    os.close(to_child_r)
    os.close(to_parent_w)
    with os.fdopen(to_parent_r, "rb") as from_child:
        assert from_child.readline() == b"forked\n"
        loader.close()  # the parent lets go of every shard while the child lives
        entries = sorted((cache.root / "shards").iterdir())
        assert entries
        evicted = [cache._evict(p) for p in entries]
        os.write(to_child_w, b"g")
        report = json.loads(from_child.readline())
    os.close(to_child_w)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert evicted == [True] * len(entries), "a forked child pinned shards its parent released"
    assert report == {"held_after_fork": 0, "same": True}


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_dataloader_workers_read_identical_batches(
    remote_manifest: dict[str, str], tmp_path: Path, method: str
) -> None:
    torch = pytest.importorskip("torch")
    from fork_helpers import LoaderDataset

    want = _expected(remote_manifest, tmp_path / "ref-cache", 3, 6)
    loader = _loader(remote_manifest, tmp_path / "cache")
    for _ in range(3):
        next(loader)
    data = torch.utils.data.DataLoader(
        LoaderDataset(loader, 6),
        batch_size=None,
        num_workers=2,
        multiprocessing_context=method,
    )
    got = list(data)
    # each worker yields the continuation of the parent's stream; the DataLoader alternates them
    assert got[0::2] == want
    assert got[1::2] == want
    loader.close()
    assert not loader.cache._held  # type: ignore[union-attr]
