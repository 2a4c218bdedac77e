"""``s3://`` through obstore (Rust ``object_store``): which client ``RemoteConfig.client`` picks,
batches equal to fsspec's and the local files' on moto's S3 server, and the guarantees of the
fsspec path kept, against the fault-injecting server of ``servers.py`` speaking S3's GET/HEAD
(path-style ``/bucket/key``): stalls and trickles end within the timeouts, a transfer is
cancelled at its next read, a body longer than announced is refused and leaves nothing, a 503
on the stat is retried, a missing object is called missing, a 403 is not retried, and no secret
reaches an error or a log line."""

from __future__ import annotations

import io
import logging
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from ado.data import MixtureLoader
from ado.data.cache import ShardCache
from ado.data.fetch import remote_object
from ado.data.remote import RemoteConfig, TransferCancelledError, redact_text
from ado.errors import RetryBudgetError, ShardError, ShardNotFoundError

pytest.importorskip("obstore")
sys.path.insert(0, str(Path(__file__).parent))
from servers import ShardHTTPServer, cancel_in_flight, upload
from test_remote_faults import QUICK as FSSPEC_QUICK

QUICK = FSSPEC_QUICK.model_copy(update={"client": "obstore"})  # short timeouts
KEY, SECRET = "AKIAOBSTORETEST00001", "obstore/SECRET+value0123456789"
WEB = "web/shard-{000..004}.tar"


def _fake(http: ShardHTTPServer) -> dict[str, Any]:
    """storage_options pointing obstore's S3 client at the fault server (bucket = the first
    folder of the corpus)."""
    return {"key": KEY, "secret": SECRET, "endpoint_url": http.url("").rstrip("/")}


def _rows(loader: MixtureLoader, steps: int) -> list[Any]:
    return [(b.keys, b.domain.tolist(), b.samples) for b in (next(loader) for _ in range(steps))]


# -- which client ------------------------------------------------------------------------------
def test_the_client_is_chosen_by_config_and_what_obstore_can_read(
    s3: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    auto, fs = RemoteConfig(), RemoteConfig(client="fsspec")
    url = "s3://bucket/a.tar"
    assert remote_object(url, None, auto).client == "obstore"  # AWS_* from the environment
    assert remote_object(url, None, fs).client == "fsspec"
    assert remote_object("http://127.0.0.1:9/a.tar", None, auto).client == "fsspec"
    assert remote_object(url, {"key": "k", "secret": "s"}, auto).client == "obstore"
    # botocore settings obstore does not read: fsspec (auto), a clear error (obstore)
    odd = {"config_kwargs": {"signature_version": "s3v4"}}
    assert remote_object(url, odd, auto).client == "fsspec"
    with pytest.raises(ShardError, match=r"client='obstore' cannot read it: .*config_kwargs"):
        remote_object(url, odd, RemoteConfig(client="obstore"))
    # credentials from a profile (botocore reads the shared files; object_store does not)
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_PROFILE", "research")
    assert remote_object(url, None, auto).client == "fsspec"
    # AWS itself with no region known: botocore finds the bucket's region, object_store cannot
    monkeypatch.delenv("AWS_PROFILE")
    for var in ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(var, raising=False)
    assert remote_object(url, {"key": "k", "secret": "s"}, auto).client == "fsspec"


def test_obstore_batches_equal_fsspec_and_local_files_and_identities_agree(
    s3: str, corpus: Path, tmp_path: Path
) -> None:
    bucket = f"b-{uuid.uuid4().hex[:12]}"
    upload(s3, bucket, corpus)
    manifest = {"web": f"s3://{bucket}/{WEB}", "code": f"s3://{bucket}/code/*.tar"}
    local = {"web": str(corpus / WEB), "code": str(corpus / "code/*.tar")}
    want = _rows(MixtureLoader(local, batch_size=5, seed=3), 10)
    before = {t for t in threading.enumerate() if t.name.startswith("ado-obstore")}
    for client in ("obstore", "fsspec"):
        cfg = RemoteConfig(client=client)
        with MixtureLoader(
            manifest, batch_size=5, seed=3, cache_dir=tmp_path / client, remote=cfg
        ) as loader:
            assert loader.cache is not None
            assert loader.cache.remote(f"s3://{bucket}/web/shard-000.tar").client == client
            assert _rows(loader, 10) == want
        # the helpers of obstore's blocking calls are the cache's, joined when it closes
        assert {t for t in threading.enumerate() if t.name.startswith("ado-obstore")} <= before
    # the two clients describe an object alike: a node switching clients keeps its cache
    url = f"s3://{bucket}/web/shard-001.tar"
    infos = [remote_object(url, None, RemoteConfig(client=c)).info() for c in ("obstore", "fsspec")]
    for key in ("size", "ETag", "LastModified"):
        assert str(infos[0][key]) == str(infos[1][key]), key
    # ranged reads through obstore: the bytes of the object
    obj = remote_object(url, None, RemoteConfig(client="obstore"))
    buf = io.BytesIO()
    obj.read_range(buf, start=512, end=4096, total=int(infos[0]["size"]))
    assert buf.getvalue() == (corpus / "web/shard-001.tar").read_bytes()[512:4096]


# -- bad servers -------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", ["hang", "trickle"])
def test_a_stalled_or_trickling_store_fails_within_its_timeouts(
    fault: str, http: ShardHTTPServer, tmp_path: Path
) -> None:
    if fault == "hang":
        http.faults.hang = True  # HEAD and GET: no answer at all
    else:
        http.faults.trickle_s = 0.2  # headers at once, then a byte per 0.2 s (never idle 1 s)
    start = time.monotonic()
    with pytest.raises(RetryBudgetError) as caught:
        MixtureLoader(
            {"web": "s3://web/shard-000.tar"},
            batch_size=2,
            cache_dir=tmp_path / "c",
            remote=QUICK,
            storage_options=_fake(http),
        )
    elapsed = time.monotonic() - start
    text = str(caught.value)
    assert "failed after 2 attempts" in text, text
    assert "TimeoutError" in text, text
    assert ("stat failed" if fault == "hang" else "download failed") in text, text
    if fault == "trickle":
        assert http.sent < 200  # cut off, not read to its end
    # two attempts of one read timeout (1 s) or one deadline (2 s, rounded up to 3 s) each
    assert elapsed < 20, elapsed


def test_cancel_downloads_stops_an_obstore_transfer_in_flight(
    http: ShardHTTPServer, tmp_path: Path
) -> None:
    http.faults.trickle_s = 0.05
    cfg = QUICK.model_copy(update={"retries": 3, "read_timeout_s": 30.0, "attempt_timeout_s": 600})
    cache = ShardCache(tmp_path / "c", config=cfg, storage_options=_fake(http))
    # then_trickle_s: the chunk in progress completes; the next read stops it
    caught = cancel_in_flight(
        cache, "s3://web/shard-000.tar", http, then_trickle_s=0.0005, join_s=60
    )
    assert [type(e) for e in caught] == [TransferCancelledError], caught
    assert list((tmp_path / "c" / "shards").iterdir()) == []
    assert list((tmp_path / "c" / "tmp").iterdir()) == []
    assert len([s for m, p, s in http.log if m == "GET" and p.endswith(".tar")]) == 1


@pytest.mark.parametrize("limit", [None, 1 << 20])
def test_a_body_longer_than_announced_is_refused_and_leaves_nothing(
    limit: int | None, corpus: Path, http: ShardHTTPServer, tmp_path: Path
) -> None:
    loader = MixtureLoader(
        {"web": f"s3://{WEB}"},
        batch_size=4,
        cache_dir=tmp_path / "c",
        cache_limit=limit,
        remote=QUICK,
        readahead_threads=0,
        storage_options=_fake(http),
    )
    assert loader.cache is not None
    root = loader.cache.root
    for p in (root / "shards").iterdir():
        p.unlink()
    http.faults.overlong = True  # the file without a Content-Length, then 0xff without end
    with pytest.raises(ShardError) as caught:
        next(loader)
    text = str(caught.value)
    assert len(text) < 600
    for body in ("web-000", "\\xff", "ÿ"):
        assert body not in text
    assert list((root / "shards").iterdir()) == []
    assert [p for p in (root / "tmp").iterdir() if p.name.startswith(".dl-")] == []
    shard = max(p.stat().st_size for p in corpus.glob("web/*.tar"))
    assert http.sent < 4 * (shard + (16 << 20))  # cut off, not streamed on
    http.faults.overlong = False
    assert len(_rows(loader, 2)) == 2


def test_an_object_announced_longer_than_its_index_is_refused_unread(
    http: ShardHTTPServer, corpus: Path, tmp_path: Path
) -> None:
    cache = ShardCache(tmp_path / "c", config=QUICK, storage_options=_fake(http))
    url = "s3://web/shard-000.tar"
    cache.index(url)
    cache.entry(url).unlink()
    size, digest = cache._expect[url]
    with pytest.raises(ShardError, match=r"more than the .* expected; refused"):
        cache._download(url, size - 10, digest, wait=True)
    assert list((tmp_path / "c" / "shards").iterdir()) == []
    assert [p for p in (tmp_path / "c" / "tmp").iterdir() if p.name.startswith(".dl-")] == []


def test_a_503_on_the_stat_is_retried_a_missing_object_is_missing_a_403_is_final(
    corpus: Path, http: ShardHTTPServer, tmp_path: Path
) -> None:
    http.faults.status_first = 3
    cfg = QUICK.model_copy(update={"retries": 4})
    opts = _fake(http)
    loader = MixtureLoader(
        {"web": "s3://web/shard-000.tar"},
        batch_size=2,
        cache_dir=tmp_path / "c",
        remote=cfg,
        storage_options=opts,
    )
    local = MixtureLoader({"web": str(corpus / "web/shard-000.tar")}, batch_size=2)
    assert _rows(loader, 3) == _rows(local, 3)
    assert [m for m, p, s in http.log if s == 503][:1] == ["HEAD"]
    http.faults.status_first = 0
    with pytest.raises(ShardNotFoundError, match="no such object"):
        MixtureLoader({"web": "s3://web/nope.tar"}, batch_size=2, cache_dir=tmp_path / "d",
                      remote=cfg, storage_options=opts)  # fmt: skip
    http.faults.always_status = 403
    http.log.clear()
    cache = ShardCache(tmp_path / "e", config=cfg, storage_options=opts)
    with pytest.raises(ShardError) as caught:
        cache._download("s3://web/shard-001.tar", None, None, wait=True)
    assert not isinstance(caught.value, RetryBudgetError)
    assert len([s for m, p, s in http.log if m == "GET" and s == 403]) == 1  # not retried


def test_no_secret_in_errors_or_log_lines(
    http: ShardHTTPServer, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    token = "FwoGZXIvYXdzEFAKESESSIONTOKEN0123456789"
    monkeypatch.setenv("AWS_SESSION_TOKEN", token)
    http.faults.always_status = 500
    with pytest.raises(ShardError) as caught:
        MixtureLoader({"web": "s3://web/shard-000.tar"}, batch_size=2,
                      cache_dir=tmp_path / "c", remote=QUICK,
                      storage_options=_fake(http))  # fmt: skip
    texts = [str(caught.value), repr(caught.value), caplog.text]
    texts += [r.getMessage() for r in caplog.records]
    assert "500" in str(caught.value)
    for text in texts:
        for secret in (KEY, SECRET, token):
            assert secret not in text, (secret, text)
    # S3's SignatureDoesNotMatch document quotes what was signed and the signature
    doc = (
        "<Error><Code>SignatureDoesNotMatch</Code><AWSAccessKeyId>AKIAX</AWSAccessKeyId>"
        "<StringToSign>AWS4-HMAC-SHA256\n20260101T000000Z</StringToSign>"
        "<SignatureProvided>0123456789abcdef</SignatureProvided></Error>"
    )
    masked = redact_text(doc)
    for secret in ("AKIAX", "20260101T000000Z", "0123456789abcdef"):
        assert secret not in masked
    assert "SignatureDoesNotMatch" in masked


def test_a_warm_node_asks_the_store_one_stat_per_shard_and_nothing_per_batch(
    corpus: Path, http: ShardHTTPServer, tmp_path: Path
) -> None:
    """Once every shard is in the node cache, a run reads local files: the store is asked
    what each object is now (one HEAD per shard, when the loader is built: how a replaced
    object is noticed on every rank) and nothing after that, whatever the batches read."""
    cfg = QUICK.model_copy(update={"prefetch_bytes": 1 << 30})
    manifest = {"web": f"s3://{WEB}", "code": "s3://code/shard-{000..002}.tar"}

    def loader() -> MixtureLoader:
        return MixtureLoader(
            manifest, batch_size=4, seed=5, cache_dir=tmp_path / "c", remote=cfg,
            storage_options=_fake(http),
        )  # fmt: skip

    with loader() as cold:
        want = _rows(cold, 40)
    http.log.clear()
    with loader() as warm:
        built = list(http.log)
        assert _rows(warm, 40) == want
        assert http.log == built  # nothing per batch
    assert sorted(m for m, _, _ in built) == ["HEAD"] * 8  # one stat per shard


@pytest.mark.parametrize("fault", ["corrupt_every", "truncate_every", "drop_every", "status_every"])
def test_flaky_answers_are_retried_and_never_cached(
    fault: str, corpus: Path, http: ShardHTTPServer, tmp_path: Path
) -> None:
    """A flipped byte (the hash check before the rename), a short body, a dropped connection
    or a 503 on every other GET: retried within the budget; the batches equal the local
    files', and every cached copy equals its source."""
    cfg = QUICK.model_copy(update={"retries": 6})
    loader = MixtureLoader(
        {"web": f"s3://{WEB}"}, batch_size=4, seed=2, cache_dir=tmp_path / "c", remote=cfg,
        readahead_threads=0, storage_options=_fake(http),
    )  # fmt: skip
    assert loader.cache is not None
    for p in (loader.cache.root / "shards").iterdir():
        p.unlink()  # indexing downloaded them: fetch again, through the faults
    setattr(http.faults, fault, 2)
    local = MixtureLoader({"web": str(corpus / WEB)}, batch_size=4, seed=2)
    assert _rows(loader, 30) == _rows(local, 30)
    assert loader.cache.stats.as_dict()["retried"] > 0
    for i in range(5):
        entry = loader.cache.entry(f"s3://web/shard-{i:03d}.tar")
        if entry.exists():
            assert entry.read_bytes() == (corpus / f"web/shard-{i:03d}.tar").read_bytes()
    loader.close()
