"""Ranged reads of remote shards (``RemoteConfig.reads``), against real servers on 127.0.0.1:
batches bitwise equal to whole-shard reads and to local files (moto's S3 server, the HTTP
server), nothing downloaded whole in ``"ranged"`` mode, and bad servers: a ranged GET that fails
or trickles is retried and timed out like any read; a server that ignores ``Range`` is read
whole, without its body being taken."""

from __future__ import annotations

import logging
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from ado.data import MixtureLoader, PackConfig
from ado.data.cache import ShardCache, coalesce
from ado.data.remote import RemoteConfig
from ado.errors import ShardError

sys.path.insert(0, str(Path(__file__).parent))
from servers import ShardHTTPServer, upload

FAST = {"retries": 4, "backoff_s": 0.001, "backoff_max_s": 0.01}


def _manifest(base: str) -> dict[str, str]:
    return {
        "web": f"{base}/web/shard-{{000..004}}.tar",
        "code": f"{base}/code/shard-{{000..002}}.tar",
    }


def _batches(loader: MixtureLoader, steps: int) -> list[Any]:
    out = []
    for t in range(steps):
        b = next(loader)
        out.append(
            (
                b.keys,
                b.domain.tolist(),
                None if b.tokens is None else b.tokens.tobytes(),
                None if b.samples is None else [sorted(s.items()) for s in b.samples],
            )
        )
        if t % 7 == 6:
            loader.set_weights([0.2, 0.8] if t % 2 else [0.9, 0.1])
    return out


def test_coalesce_groups_near_ranges_and_keeps_their_positions() -> None:
    ranges = [(5000, 6000), (0, 100), (150, 300), (6000, 6100), (200, 250)]
    assert coalesce(ranges, 0) == [(0, 100, [1]), (150, 300, [2, 4]), (5000, 6100, [0, 3])]
    assert coalesce(ranges, 50) == [(0, 300, [1, 2, 4]), (5000, 6100, [0, 3])]
    assert coalesce(ranges, 10_000) == [(0, 6100, [1, 2, 4, 0, 3])]
    assert coalesce([], 10) == []


@pytest.mark.parametrize("kind", ["http", "s3"])
@pytest.mark.parametrize("sidecars", [True, False])
def test_ranged_batches_equal_whole_shard_reads_and_local_files(
    kind: str, sidecars: bool, corpus: Path, http: ShardHTTPServer, s3: str, tmp_path: Path
) -> None:
    pack = PackConfig(seq_len=16, eos_id=0, field="u16")
    kw: dict[str, Any] = {"batch_size": 4, "seed": 3, "rank": 1, "world_size": 2, "pack": pack}
    local = _batches(MixtureLoader(_manifest(str(corpus)), **kw), 40)  # writes sidecars
    raw = _batches(MixtureLoader(_manifest(str(corpus)), batch_size=6, seed=1), 12)
    if not sidecars:
        for side in corpus.rglob("*.adoidx"):
            side.unlink()
    if kind == "s3":
        bucket = f"b-{uuid.uuid4().hex[:12]}"
        upload(s3, bucket, corpus)
        base = f"s3://{bucket}"
    else:
        base = http.url("").rstrip("/")
    modes = {
        "whole": RemoteConfig(reads="whole", **FAST),
        "ranged": RemoteConfig(reads="ranged", **FAST),
        "ranged-no-gap": RemoteConfig(reads="ranged", range_gap_bytes=0, range_threads=2, **FAST),
        "auto": RemoteConfig(
            reads="auto", ranged_min_bytes=0, ranged_min_sample_bytes=0, **FAST
        ),
    }
    for name, cfg in modes.items():
        cache = tmp_path / f"cache-{name}"
        loader = MixtureLoader(_manifest(base), cache_dir=cache, remote=cfg, **kw)
        for copy in (cache / "shards").iterdir():
            copy.unlink()  # without sidecars, indexing downloaded the shards: read them again
        assert _batches(loader, 40) == local, name
        assert loader.cache is not None
        stats = loader.cache.stats.as_dict()
        loader.close()
        if name.startswith("ranged"):
            assert stats["range_gets"] > 0, stats
            if sidecars:  # nothing was downloaded whole (the index came from the sidecar)
                assert stats["downloads"] == 0, stats
                assert list((cache / "shards").iterdir()) == []
        if name == "whole":
            assert stats["range_gets"] == 0, stats
        if name == "auto":  # the first batch by ranges: the prefetch starts after it
            assert stats["range_gets"] > 0, stats
        raw_loader = MixtureLoader(
            _manifest(base), batch_size=6, seed=1, cache_dir=tmp_path / f"raw-{name}", remote=cfg
        )
        assert _batches(raw_loader, 12) == raw, name


def test_a_cached_shard_is_read_from_the_cache_not_by_ranges(
    corpus: Path, http: ShardHTTPServer, tmp_path: Path
) -> None:
    url = http.url("web/shard-000.tar")
    cache = ShardCache(tmp_path / "c", config=RemoteConfig(reads="ranged"))
    cache.index(url)  # no sidecar: indexing downloads the shard
    cache.entry(url).unlink()
    name = cache.name_for(url)
    got = cache.read_ranges(name, [(0, 512), (1024, 2048)])
    assert got is not None
    data = (corpus / "web/shard-000.tar").read_bytes()
    assert got == [data[:512], data[1024:2048]]
    cache.ensure(url)
    assert cache.read_ranges(name, [(0, 512)]) is None  # whole in the cache: read it there
    whole = ShardCache(tmp_path / "w", config=RemoteConfig(reads="whole"))
    whole.index(url)
    assert whole.read_ranges(whole.name_for(url), [(0, 512)]) is None
    small = ShardCache(tmp_path / "a", config=RemoteConfig(reads="auto"))
    small.index(url)  # auto: a small shard is read whole
    assert small.read_ranges(small.name_for(url), [(0, 512)]) is None


def test_failing_ranged_gets_are_retried_and_batches_stay_identical(
    corpus: Path, http: ShardHTTPServer, tmp_path: Path
) -> None:
    want = _batches(MixtureLoader(_manifest(str(corpus)), batch_size=5, seed=2), 20)
    http.faults.drop_every = 3
    http.faults.status_every = 4
    http.faults.truncate_every = 5
    # a corrupt answer fails the sample's hash: the shard is read whole instead (checked)
    http.faults.corrupt_every = 7
    cfg = RemoteConfig(reads="ranged", range_gap_bytes=0, retries=10, **{
        k: v for k, v in FAST.items() if k != "retries"})  # fmt: skip
    loader = MixtureLoader(
        _manifest(http.url("").rstrip("/")), batch_size=5, seed=2, cache_dir=tmp_path / "c",
        remote=cfg,
    )  # fmt: skip
    assert _batches(loader, 20) == want
    assert loader.cache is not None
    assert loader.cache.stats.as_dict()["range_gets"] > 0
    statuses = [s for m, p, s in http.log if m == "GET" and p.endswith(".tar")]
    for status in (206, 503, -1):
        assert status in statuses


def test_a_trickling_ranged_get_times_out_within_its_budget(
    corpus: Path, http: ShardHTTPServer, tmp_path: Path
) -> None:
    cfg = RemoteConfig(
        reads="ranged",
        retries=2,
        backoff_s=0.001,
        backoff_max_s=0.01,
        read_timeout_s=1.0,
        attempt_timeout_s=1.0,
        min_bytes_per_s=1 << 30,
    )
    loader = MixtureLoader(
        {"web": http.url("web/shard-000.tar")}, batch_size=2, cache_dir=tmp_path / "c", remote=cfg
    )
    assert loader.cache is not None
    loader.cache.entry(http.url("web/shard-000.tar")).unlink()  # indexing downloaded it
    http.faults.trickle_s = 0.2  # a byte per 0.2 s: never idle past the read timeout
    start = time.monotonic()
    with pytest.raises(ShardError, match="ranged read failed after 2 attempts") as caught:
        next(loader)
    assert "not done after 1.0 s" in str(caught.value)
    assert time.monotonic() - start < 30
    assert http.sent < 100  # cut off, not read to its end
    gets = [s for m, p, s in http.log if m == "GET" and p.endswith(".tar")]
    assert gets.count(206) == 2, gets


def test_a_server_that_ignores_range_is_read_whole_without_taking_its_body(
    corpus: Path, http: ShardHTTPServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    want = _batches(MixtureLoader(_manifest(str(corpus)), batch_size=5, seed=4), 15)
    http.faults.ignore_range = True
    loader = MixtureLoader(
        _manifest(http.url("").rstrip("/")), batch_size=5, seed=4, cache_dir=tmp_path / "c",
        remote=RemoteConfig(reads="ranged", **FAST),
    )  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="ado"):
        assert _batches(loader, 15) == want
    assert "does not serve ranges; reading it whole" in caplog.text
    assert loader.cache is not None
    stats = loader.cache.stats.as_dict()
    assert stats["range_gets"] == 0, stats
    assert stats["downloads"] > 0, stats
    loader.close()  # joins the read-ahead threads (one may be in a download)
    # a refused ranged GET per shard read, then its whole download
    gets = http.shard_gets()
    assert gets, gets
    assert all(n >= 2 for n in gets.values()), gets


def test_a_sidecar_too_costly_to_check_by_ranges_means_a_whole_read(
    corpus: Path, http: ShardHTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sidecar not yet checked against its shard must tile the archive; when that check would
    take more GETs than allowed (records between members), the shard is read whole (and the
    sidecar checked against it), with the same batches."""
    import ado.data.cache as cache_mod

    want = _batches(MixtureLoader(_manifest(str(corpus)), batch_size=5, seed=6), 10)  # sidecars
    monkeypatch.setattr(cache_mod, "_TILING_GETS", 0)
    loader = MixtureLoader(
        _manifest(http.url("").rstrip("/")), batch_size=5, seed=6, cache_dir=tmp_path / "c",
        remote=RemoteConfig(reads="ranged", **FAST),
    )  # fmt: skip
    assert _batches(loader, 10) == want
    assert loader.cache is not None
    stats = loader.cache.stats.as_dict()
    assert stats["range_gets"] == 0, stats
    assert stats["downloads"] > 0, stats
