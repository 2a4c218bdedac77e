"""``gs://`` shards against a local GCS emulator (``gcp-storage-emulator`` from PyPI, started on
127.0.0.1 by the fixture; gcsfs reaches it through ``endpoint_url``, anonymously): batches equal
the local files bit for bit, globs list a prefix, sidecars from ``ado shards index`` are uploaded
and spare the indexing download, and a replaced object (new generation) is noticed."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# gcsfs >= 2026.10 asks a gRPC control API for each bucket's type (60 s against an emulator, and
# over TLS): the classic file system is what the emulator serves. Read at gcsfs's import.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
pytest.importorskip("gcsfs")
emulator = pytest.importorskip("gcp_storage_emulator.server")

from ado.data import MixtureLoader  # noqa: E402
from ado.data.cache import ShardCache  # noqa: E402
from ado.data.remote import RemoteConfig  # noqa: E402

BUCKET = "ado-test"


@pytest.fixture
def gcs(corpus: Path) -> Iterator[dict[str, Any]]:
    """The corpus uploaded to a fresh in-memory emulator; yields the storage options."""
    import gcsfs

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = emulator.create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    opts = {"token": "anon", "endpoint_url": f"http://127.0.0.1:{port}"}
    try:
        fs = gcsfs.GCSFileSystem(**opts, skip_instance_cache=True)
        assert "Extended" not in type(fs).__name__
        for path in sorted(corpus.rglob("*.tar")):
            fs.pipe_file(f"{BUCKET}/{path.relative_to(corpus)}", path.read_bytes())
        yield opts
    finally:
        server.stop()


def _rows(loader: MixtureLoader, steps: int) -> list[Any]:
    return [(b.keys, b.domain.tolist(), b.samples) for b in (next(loader) for _ in range(steps))]


def test_gcs_batches_equal_local_and_sidecars_spare_the_download(
    gcs: dict[str, Any], corpus: Path, tmp_path: Path
) -> None:
    import gcsfs

    manifest = {
        "web": f"gs://{BUCKET}/web/*.tar",
        "code": f"gs://{BUCKET}/code/shard-{{000..002}}.tar",
    }
    local = {"web": str(corpus / "web/*.tar"), "code": str(corpus / "code/shard-{000..002}.tar")}
    remote = MixtureLoader(
        manifest, batch_size=5, seed=4, storage_options=gcs, cache_dir=tmp_path / "c"
    )
    assert remote.num_samples == [100, 45]
    assert _rows(remote, 12) == _rows(MixtureLoader(local, batch_size=5, seed=4), 12)
    # sidecars uploaded beside the shards; a fresh node reads them instead of downloading
    cache = ShardCache(tmp_path / "cli", storage_options=gcs)
    url = f"gs://{BUCKET}/web/shard-000.tar"
    assert cache.write_sidecar(url)["source"] == "built"
    fs = gcsfs.GCSFileSystem(**gcs, skip_instance_cache=True)
    assert fs.exists(f"{BUCKET}/web/shard-000.tar.adoidx")
    fresh = MixtureLoader(
        {"web": url},
        batch_size=4,
        storage_options=gcs,
        cache_dir=tmp_path / "fresh",
        remote=RemoteConfig(prefetch_bytes=0),
    )
    assert fresh.cache is not None
    assert fresh.cache.stats.as_dict()["downloads"] == 0
    one = MixtureLoader({"web": str(corpus / "web/shard-000.tar")}, batch_size=4)
    assert _rows(fresh, 3) == _rows(one, 3)
    # the object is replaced (a new generation): the node notices and re-indexes
    fresh.close()
    fs.pipe_file(f"{BUCKET}/web/shard-000.tar", (corpus / "web/shard-001.tar").read_bytes())
    fs.rm_file(f"{BUCKET}/web/shard-000.tar.adoidx")
    again = MixtureLoader(
        {"web": url}, batch_size=4, storage_options=gcs, cache_dir=tmp_path / "fresh"
    )
    want = MixtureLoader({"web": str(corpus / "web/shard-001.tar")}, batch_size=4)
    assert _rows(again, 3) == _rows(want, 3)


def test_gcs_ranged_reads_equal_local(gcs: dict[str, Any], corpus: Path, tmp_path: Path) -> None:
    """``reads="ranged"`` against the emulator: sidecars beside the shards, nothing downloaded
    whole, batches equal the local files'."""
    urls = [f"gs://{BUCKET}/web/shard-{i:03d}.tar" for i in range(5)]
    writer = ShardCache(tmp_path / "cli", storage_options=gcs)
    for url in urls:
        writer.write_sidecar(url)
    loader = MixtureLoader(
        {"web": f"gs://{BUCKET}/web/shard-{{000..004}}.tar"},
        batch_size=5,
        seed=2,
        storage_options=gcs,
        cache_dir=tmp_path / "ranged",
        remote=RemoteConfig(reads="ranged", retries=2, backoff_s=0.001),
    )
    local = MixtureLoader({"web": str(corpus / "web/shard-{000..004}.tar")}, batch_size=5, seed=2)
    assert _rows(loader, 12) == _rows(local, 12)
    assert loader.cache is not None
    stats = loader.cache.stats.as_dict()
    assert stats["range_gets"] > 0, stats
    assert stats["downloads"] == 0, stats
