"""Bad servers and bad actors, against real servers on 127.0.0.1 (the fault-injecting HTTP server
of ``servers.py``, moto's S3 server): stalls and trickles fail within their timeouts and Ctrl-C
interrupts them; answers longer than they may be are cut off; no credential reaches any log line
at any level; a 503 or a redirect loop is not called a missing object; forged sidecars are not
trusted; a replaced object is noticed; a cached copy damaged on disk is fetched again."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import struct
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from ado.data import MixtureLoader
from ado.data.remote import RemoteConfig, redact, redact_text
from ado.errors import RetryBudgetError, ShardError, ShardNotFoundError

sys.path.insert(0, str(Path(__file__).parent))
from servers import ShardHTTPServer, cancel_in_flight, s3_env, upload

# Short timeouts: a stall must end in seconds, where the libraries' defaults wait 5 minutes.
QUICK = RemoteConfig(
    retries=2,
    backoff_s=0.001,
    backoff_max_s=0.01,
    connect_timeout_s=2.0,
    read_timeout_s=1.0,
    attempt_timeout_s=2.0,
    prefetch_bytes=0,
)

WEB = "web/shard-{000..004}.tar"


def _rows(loader: MixtureLoader, steps: int) -> list[Any]:
    return [(b.keys, b.domain.tolist(), b.samples) for b in (next(loader) for _ in range(steps))]


def _clear(loader: MixtureLoader) -> None:
    """Drop the cached shards (indexing downloaded them): the next reads fetch again."""
    assert loader.cache is not None
    for p in (loader.cache.root / "shards").iterdir():
        p.unlink()


# -- stalls and trickles ----------------------------------------------------------------------
@pytest.mark.parametrize("fault", ["hang", "trickle"])
def test_a_stalled_or_trickling_server_fails_within_its_timeouts(
    fault: str, http: ShardHTTPServer, tmp_path: Path
) -> None:
    if fault == "hang":
        http.faults.hang = True  # HEAD and GET of the shard: no answer at all
    else:
        http.faults.trickle_s = 0.2  # headers at once, then a byte per 0.2 s (never idle 1 s)
    start = time.monotonic()
    with pytest.raises(RetryBudgetError) as caught:
        MixtureLoader(
            {"web": http.url("web/shard-000.tar")},
            batch_size=2,
            cache_dir=tmp_path / "c",
            remote=QUICK,
        )
    elapsed = time.monotonic() - start
    text = str(caught.value)
    assert "failed after 2 attempts" in text
    if fault == "hang":
        assert "stat failed" in text, text
        assert "Timeout" in text, text
    else:
        assert "download failed" in text, text
        assert "not done after 2.0 s" in text, text
        assert http.sent < 200  # the trickle was cut off, not read to its end
    # two attempts of (at most) one read timeout or one attempt deadline each, plus slack;
    # without the bounds the stall lasts until the server stops
    assert elapsed < 30, elapsed


_INTERRUPT = textwrap.dedent(
    """
    import json, pathlib, sys, threading, time
    from ado.data import MixtureLoader
    from ado.data.remote import RemoteConfig
    url, cache, where, flag, client = sys.argv[1:6]
    cfg = RemoteConfig(retries=2, read_timeout_s=120.0, attempt_timeout_s=300.0,
                       prefetch_bytes=0, client=client)
    def wait_for(name):
        while not pathlib.Path(flag + name).exists():
            time.sleep(0.01)
    if where == "build":
        print("ready", flush=True)
        try:
            MixtureLoader({"web": url}, batch_size=2, cache_dir=cache, remote=cfg)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            raise
        sys.exit(0)
    # next: this thread fetches the shard itself (no read-ahead threads). readahead: two
    # read-ahead threads run a shard ahead; the one reading the second shard stalls while
    # this thread waits for it.
    threads = 2 if where == "readahead" else 0
    loader = MixtureLoader({"web": url}, batch_size=2, seed=0, cache_dir=cache, remote=cfg,
                           readahead_threads=threads, readahead_bytes=1 << 20)
    urls = sorted({url.replace("{000..004}", f"{i:03d}") for i in range(5)})
    # readahead: the first batch's shard stays cached
    keep = set(loader._core.upcoming_shards([1])[0]) if where == "readahead" else set()
    for i, u in enumerate(urls):
        if i not in keep:
            loader.cache.entry(u).unlink(missing_ok=True)  # indexing downloaded it
    kept = {urls[i] for i in keep}
    fetched = []  # (shard, fetched by this thread)
    ahead = threading.Event()
    acquire = loader.cache.acquire
    def spy(name):
        on_main = threading.get_ident() == threading.main_thread().ident
        fetched.append((name, on_main))
        if where == "readahead" and not on_main and loader.cache.real_url(name) not in kept:
            # (a read-ahead thread may open a kept shard too: holding it there would hold the
            # first batch, which this thread waits for)
            ahead.set()
            wait_for("-hung")  # a read-ahead thread reaches the server once it hangs
        return acquire(name)
    loader.cache.acquire = spy
    rows = []
    if where == "readahead":
        # the first batch starts the read-ahead threads; one goes on to the next shard (however
        # loaded the machine, before this thread needs it)
        b = next(loader)
        rows.append((b.keys, b.domain.tolist()))
        ahead.wait(60)
    print("ready", flush=True)
    wait_for("-hung")  # the server hangs now
    try:
        while len(rows) < 15:
            b = next(loader)
            rows.append((b.keys, b.domain.tolist()))
    except KeyboardInterrupt:
        print("interrupted", json.dumps(fetched), flush=True)
        if where == "next":
            raise
    wait_for("-resume")  # the server answers again
    while len(rows) < 15:
        b = next(loader)
        rows.append((b.keys, b.domain.tolist()))
    loader.close()
    print("rows", json.dumps(rows), flush=True)
    """
)


def _interrupt_a_stall(
    where: str, http: ShardHTTPServer, folder: Path, client: str
) -> tuple[str, float, str, str, int]:
    """Run :data:`_INTERRUPT` in a child, stall the server, send SIGINT once a request hangs,
    then let the server answer again: (the child's line after SIGINT, seconds it took, the rest
    of its stdout, its stderr, its exit status). ``client="obstore"``: the child reads
    ``s3://`` URLs through obstore from the same server (speaking S3's path-style GET/HEAD)."""
    flag = str(folder / "flag")
    http.faults.hang = where == "build"
    path = "web/shard-{000..004}.tar" if where == "readahead" else "web/shard-000.tar"
    url = http.url(path)
    env = dict(os.environ)
    if client == "obstore":
        url = f"s3://{path}"
        env.update(s3_env(http.url("").rstrip("/")))
    http.log.clear()
    proc = subprocess.Popen(
        [sys.executable, "-c", _INTERRUPT, url, str(folder / "c"), where, flag, client],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    # A child stuck before "ready" must fail the test, not hang the suite.
    watchdog = threading.Timer(180, proc.kill)
    watchdog.start()
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.communicate()[1][-3000:]
        http.faults.hang = True
        Path(flag + "-hung").touch()
        deadline = time.monotonic() + 60
        while not any(s == -2 for _, _, s in list(http.log)):  # the request is stalled
            assert time.monotonic() < deadline
            assert proc.poll() is None
            time.sleep(0.05)
        time.sleep(0.3)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        line = proc.stdout.readline()
        waited = time.monotonic() - sent
        http.faults.hang = False
        Path(flag + "-resume").touch()
        out, err = proc.communicate(timeout=120)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return line, waited, out, err, proc.returncode


@pytest.mark.parametrize("client", ["fsspec", "obstore"])
@pytest.mark.parametrize("where", ["build", "next", "readahead"])
def test_ctrl_c_interrupts_a_stalled_transfer_promptly(
    where: str, client: str, http: ShardHTTPServer, tmp_path: Path, corpus: Path
) -> None:
    """The read timeout is 120 s; Ctrl-C must not wait for it: while the loader is built
    (indexing threads), inside ``next()`` while this thread fetches the shard, and inside
    ``next()`` while it waits for a read-ahead thread stuck in the stalled read. After that
    interrupt the loader goes on (the server answers again) with the batches it would have
    given without it. (On a loaded machine this thread could reach the next shard before the
    read-ahead threads do, and fetch it itself, as in the ``next`` case: the child lets a
    read-ahead thread into the fetcher first, and holds it there until the server hangs.)"""
    if client == "obstore":
        pytest.importorskip("obstore")
    line, waited, out, err, returncode = _interrupt_a_stall(where, http, tmp_path, client)
    assert line.startswith("interrupted"), err[-3000:]
    if where != "readahead":
        assert err.rstrip().endswith("KeyboardInterrupt"), err[-3000:]
        assert returncode != 0
        assert waited < 20, waited  # far below the 120 s read timeout the stall would last
        return
    fetched = json.loads(line.split(" ", 1)[1])
    # a read-ahead thread was in the stalled fetch (this thread may have waited for it)
    assert any(not on_main for _, on_main in fetched), fetched
    assert returncode == 0, err[-3000:]
    rows = json.loads(out.split("rows ", 1)[1])
    local = MixtureLoader({"web": str(corpus / "web/shard-{000..004}.tar")}, batch_size=2, seed=0)
    assert rows == [[k, d] for k, d, _ in _rows(local, 15)]
    assert waited < 5, waited  # Ctrl-C is polled every 20 ms while the batch waits


def test_cancel_downloads_stops_a_transfer_in_flight(
    http: ShardHTTPServer, tmp_path: Path
) -> None:
    """What the loader does on Ctrl-C for the read-ahead threads it no longer waits for: their
    downloads stop at the next read (not at the end of the transfer or its timeouts), are not
    retried, and leave nothing in the cache."""
    from ado.data.cache import ShardCache
    from ado.data.remote import TransferCancelledError

    http.faults.trickle_s = 0.05  # 20 bytes/s: the whole shard would take minutes
    cfg = RemoteConfig(retries=3, read_timeout_s=30.0, attempt_timeout_s=600.0, prefetch_bytes=0)
    cache = ShardCache(tmp_path / "c", config=cfg)
    caught = cancel_in_flight(cache, http.url("web/shard-000.tar"), http)
    assert [type(e) for e in caught] == [TransferCancelledError], caught
    assert "cancelled" in str(caught[0])
    assert http.sent < 2000  # stopped long before the end of the shard
    assert list((tmp_path / "c" / "shards").iterdir()) == []
    assert list((tmp_path / "c" / "tmp").iterdir()) == []
    assert len([s for m, p, s in http.log if m == "GET" and p.endswith(".tar")]) == 1


# -- size bounds -------------------------------------------------------------------------------
def test_an_endless_sidecar_is_cut_off_and_the_shard_indexed(
    corpus: Path, http: ShardHTTPServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    http.faults.endless_sidecar = True
    cfg = QUICK.model_copy(update={"max_index_bytes": 64 << 10, "retries": 3})
    loader = MixtureLoader(
        {"web": http.url(WEB)}, batch_size=4, seed=1, cache_dir=tmp_path / "c", remote=cfg
    )
    local = MixtureLoader({"web": str(corpus / WEB)}, batch_size=4, seed=1)
    assert _rows(loader, 5) == _rows(local, 5)
    assert "sidecar read is longer than 65536 bytes; refused" in caplog.text
    # 5 sidecars, each read to its bound: what the server got out is bounded by the socket
    # buffers, not by the (endless) body
    assert http.sent < 5 * (16 << 20), http.sent


@pytest.mark.parametrize("limit", [None, 1 << 20])
def test_a_body_longer_than_announced_is_refused_and_leaves_nothing(
    limit: int | None, corpus: Path, http: ShardHTTPServer, tmp_path: Path
) -> None:
    loader = MixtureLoader(
        {"web": http.url(WEB)},
        batch_size=4,
        cache_dir=tmp_path / "c",
        cache_limit=limit,
        remote=QUICK,
        readahead_threads=0,  # one download at a time: none in flight when the error comes
    )
    _clear(loader)
    http.faults.overlong = True  # the file, then 0xff bytes without end
    with pytest.raises(ShardError) as caught:  # a TooLargeError, through the core
        next(loader)
    text = str(caught.value)
    assert "sent more than the" in text, text
    assert "bytes announced; refused" in text, text
    assert len(text) < 600
    for body in ("web-000", "\\xff", "ÿ"):  # no body bytes
        assert body not in text
    assert loader.cache is not None
    root = loader.cache.root
    assert list((root / "shards").iterdir()) == []
    assert [p for p in (root / "tmp").iterdir() if p.name.startswith(".dl-")] == []
    shard = max(p.stat().st_size for p in corpus.glob("web/*.tar"))
    assert http.sent < shard + (16 << 20)  # cut off at the announced size, not streamed on
    http.faults.overlong = False
    assert len(_rows(loader, 2)) == 2  # and the loader goes on once the server behaves


# -- credentials -------------------------------------------------------------------------------
PASSWORD = "pa#ss?w@rd/42:x"
SIGNATURES = {
    "X-Amz-Signature": "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
    "X-Amz-Credential": "AKIAEXAMPLEKEY99/20260101/us-east-1/s3/aws4_request",
    "X-Goog-Signature": "ffeeddccbbaa99887766554433221100",
    "sig": "sasSignatureValue123456",
    "token": "tokenValue987654321",
}


def test_redaction_removes_whole_passwords_and_presigned_values() -> None:
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in SIGNATURES.items())
    raw = f"http://user:{PASSWORD}@127.0.0.1:9/web/a.tar?{query}"
    assert redact(raw) == "http://***@127.0.0.1:9/web/a.tar?***"
    quoted = f"http://user:{quote(PASSWORD, safe='')}@127.0.0.1:9/web/a.tar?{query}"
    assert redact(quoted) == "http://***@127.0.0.1:9/web/a.tar?***"
    # a path with an @ in a URL without user-info keeps its path
    assert redact("s3://bucket/a@b.tar") == "s3://bucket/a@b.tar"
    # free text (as the protocol libraries log it): every shape of credential is masked
    line = (
        f"GET {raw} headers={{'Authorization': b'AWS4-HMAC-SHA256 Credential=AKIAEXAMPLEKEY99/"
        "2026, SignedHeaders=host, Signature=abcdef0123456789'}"
    )
    masked = redact_text(line)
    for secret in [PASSWORD, "w@rd", "abcdef0123456789", "AKIAEXAMPLEKEY99", *SIGNATURES.values()]:
        assert secret not in masked, (secret, masked)
    assert "127.0.0.1:9/web/a.tar" in masked


def _protocol_loggers_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # the root: every library's DEBUG lines
    for name in ("aiohttp", "botocore", "s3fs", "fsspec", "urllib3", "ado"):
        logging.getLogger(name).setLevel(logging.DEBUG)


def test_no_credential_in_any_log_line_at_debug(
    corpus: Path, s3: str, http: ShardHTTPServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _protocol_loggers_at_debug(caplog)
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in SIGNATURES.items())
    user = f"user:{quote(PASSWORD, safe='')}"
    base = f"http://{user}@127.0.0.1:{http.port}"
    urls = [f"{base}/web/shard-{i:03d}.tar?{query}" for i in range(5)]
    # presigned shard URLs: the sidecar is refused (403), so each shard is indexed instead
    http.faults.sidecar_status = 403
    loader = MixtureLoader(
        {"web": urls}, batch_size=4, seed=1, cache_dir=tmp_path / "h", remote=QUICK
    )
    local = MixtureLoader({"web": str(corpus / WEB)}, batch_size=4, seed=1)
    assert _rows(loader, 3) == _rows(local, 3)
    http.faults.sidecar_status = None
    # a failure, logged and raised
    http.faults.status_first = 10**6
    with pytest.raises(ShardError) as failing:
        MixtureLoader(
            {"web": f"{base}/code/shard-000.tar?{query}"},
            batch_size=2,
            cache_dir=tmp_path / "h2",
            remote=QUICK,
        )
    http.faults.status_first = 0
    # S3 with explicit keys: botocore's DEBUG lines carry the signed request
    bucket = f"b-{uuid.uuid4().hex[:12]}"
    upload(s3, bucket, corpus)
    key, secret = "AKIALOGCHECK000001", "logcheck/SECRET+value0123456789"
    opts = {"key": key, "secret": secret, "client_kwargs": {"endpoint_url": s3}}
    s3_loader = MixtureLoader(
        {"web": f"s3://{bucket}/{WEB}"},
        batch_size=4,
        storage_options=opts,
        cache_dir=tmp_path / "s",
        remote=QUICK,
    )
    _rows(s3_loader, 2)
    records = caplog.records
    assert any(r.name.startswith(("aiohttp", "fsspec")) for r in records) or any(
        r.name.startswith("botocore") for r in records
    )
    assert any(r.name.startswith("botocore") for r in records)  # the signed requests
    texts = [caplog.text, str(failing.value), repr(failing.value)]
    texts += [r.getMessage() for r in records]
    secrets = [PASSWORD, quote(PASSWORD, safe=""), "w@rd", key, secret, *SIGNATURES.values()]
    secrets += [quote(v, safe="") for v in SIGNATURES.values()]
    for text in texts:
        for s in secrets:
            assert s not in text, (s, text[text.find(s) - 200 : text.find(s) + 200])


# -- misleading answers ------------------------------------------------------------------------
def test_a_transient_503_on_the_size_request_is_retried(
    corpus: Path, http: ShardHTTPServer, tmp_path: Path
) -> None:
    http.faults.status_first = 3  # the stat (HEAD, then fsspec's GET fallback) answers 503
    cfg = QUICK.model_copy(update={"retries": 4})
    loader = MixtureLoader(
        {"web": http.url("web/shard-000.tar")}, batch_size=2, cache_dir=tmp_path / "c", remote=cfg
    )
    local = MixtureLoader({"web": str(corpus / "web/shard-000.tar")}, batch_size=2)
    assert _rows(loader, 3) == _rows(local, 3)
    assert [m for m, p, s in http.log if s == 503][:1] == ["HEAD"]


@pytest.mark.parametrize("fault", ["503", "redirect"])
def test_a_failing_size_request_is_not_called_a_missing_object(
    fault: str, http: ShardHTTPServer, tmp_path: Path
) -> None:
    if fault == "503":
        http.faults.status_first = 10**6
    else:
        http.faults.redirect_loop = True
    with pytest.raises(ShardError) as caught:
        MixtureLoader(
            {"web": http.url("web/shard-000.tar")},
            batch_size=2,
            cache_dir=tmp_path / "c",
            remote=QUICK,
        )
    assert not isinstance(caught.value, ShardNotFoundError)
    text = str(caught.value)
    assert "no such object" not in text
    if fault == "503":
        assert "stat failed after 2 attempts" in text, text
        assert "503" in text, text
    else:
        assert "stat failed: TooManyRedirects" in text, text
    # a missing object still is one
    with pytest.raises(ShardNotFoundError, match="no such object"):
        MixtureLoader(
            {"web": http.url("web/nope.tar")}, batch_size=2, cache_dir=tmp_path / "d", remote=QUICK
        )


# -- forged sidecars ---------------------------------------------------------------------------
def _samples(data: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """Split an encoded index into its head (through the extensions) and its samples
    ``(key, members)`` (the format of ``ShardIndex::encode``)."""
    pos = 8 + 8 * 8
    (n_exts,) = struct.unpack_from("<I", data, pos)
    pos += 4
    for _ in range(n_exts):
        (n,) = struct.unpack_from("<I", data, pos)
        pos += 4 + n
    head = data[:pos]
    (n,) = struct.unpack_from("<I", data, pos)
    pos += 4
    out = []
    for _ in range(n):
        (k,) = struct.unpack_from("<I", data, pos)
        key = data[pos + 4 : pos + 4 + k]
        pos += 4 + k
        (m,) = struct.unpack_from("<I", data, pos)
        members = data[pos : pos + 4 + m * 29]
        pos += 4 + m * 29
        out.append((key, members))
    assert pos == len(data)
    return head, out


def _encode(head: bytes, samples: list[tuple[bytes, bytes]]) -> bytes:
    buf = io.BytesIO()
    buf.write(head + struct.pack("<I", len(samples)))
    for key, members in samples:
        buf.write(struct.pack("<I", len(key)) + key + members)
    return buf.getvalue()


@pytest.mark.parametrize("reads", ["whole", "ranged"])
@pytest.mark.parametrize("forgery", ["two_of_twenty", "rotated_keys"])
def test_a_forged_remote_sidecar_is_not_trusted(
    forgery: str, reads: str, corpus: Path, http: ShardHTTPServer, tmp_path: Path
) -> None:
    # ranged: the sidecar is checked by ranged reads (it must tile the archive; each sample
    # read must match it), the shard is never downloaded whole unless it fails
    from ado._core import decode_index, index_file

    shard = corpus / "web/shard-000.tar"
    head, samples = _samples(index_file(str(shard)))
    assert len(samples) == 20
    if forgery == "two_of_twenty":
        forged = _encode(head, samples[:2])
    else:  # each sample keeps its members but is given the next sample's key
        keys = [k for k, _ in samples]
        forged = _encode(head, [(keys[(i + 1) % 20], m) for i, (_, m) in enumerate(samples)])
    assert decode_index(forged, "x")["file_size"] == shard.stat().st_size  # a valid index
    Path(str(shard) + ".adoidx").write_bytes(forged)
    url = http.url("web/shard-000.tar")
    quick = QUICK.model_copy(update={"reads": reads})
    loader = MixtureLoader(
        {"web": url}, batch_size=4, seed=0, cache_dir=tmp_path / "c", remote=quick
    )
    assert http.shard_gets() == {}  # built from the sidecar alone
    match = (
        "sidecar index does not describe the shard"
        if forgery == "two_of_twenty"
        else "names another member"
    )
    with pytest.raises(ShardError, match=match):
        _rows(loader, 6)
    if forgery == "two_of_twenty":
        # the node now holds the index built from the shard: the next loader is right
        again = MixtureLoader(
            {"web": url}, batch_size=4, seed=0, cache_dir=tmp_path / "c", remote=QUICK
        )
        assert again.num_samples == [20]
        Path(str(shard) + ".adoidx").unlink()
        local = MixtureLoader({"web": str(shard)}, batch_size=4, seed=0, cache_dir=tmp_path / "l")
        assert _rows(again, 6) == _rows(local, 6)


def test_a_forged_local_sidecar_with_rotated_keys_is_caught(tmp_path: Path, corpus: Path) -> None:
    """The same forgery next to a local shard, with the file's identity: the reader checks
    each member's tar header against the key it serves."""
    from ado._core import index_file

    shard = corpus / "web/shard-001.tar"
    head, samples = _samples(index_file(str(shard)))  # carries this file's identity
    keys = [k for k, _ in samples]
    forged = _encode(head, [(keys[(i + 1) % 20], m) for i, (_, m) in enumerate(samples)])
    Path(str(shard) + ".adoidx").write_bytes(forged)
    loader = MixtureLoader({"web": str(shard)}, batch_size=4, seed=0, readahead_threads=0)
    with pytest.raises(ShardError, match="names another member"):
        _rows(loader, 6)


def _ustar_copy(shard: Path, out: Path) -> Path:
    """``shard`` rewritten as plain ustar (GNU format, no per-member PAX records): its members
    follow one another with nothing between them."""
    with tarfile.open(shard) as src, tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as dst:
        for m in src.getmembers():
            m.mtime = 0
            dst.addfile(m, src.extractfile(m))
    return out


@pytest.mark.parametrize("layout", ["pax", "ustar"])
def test_a_forged_local_sidecar_that_stretches_a_member_over_later_samples_is_caught(
    layout: str, tmp_path: Path, corpus: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A sidecar with the file's identity whose second sample's last member is stretched over
    the 18 samples after it (which it leaves out), with a matching hash. Where a PAX record
    precedes each member (webdataset's writer), the tiling reads it and the sidecar is rebuilt;
    where members follow one another (ustar), the sidecar tiles, and the reader compares the
    member's tar header size with the indexed one: another sample's bytes are never served as
    its data."""
    from ado._core import file_hash, index_file

    shard = corpus / "web/shard-003.tar"
    if layout == "ustar":
        shard = _ustar_copy(shard, tmp_path / "ustar.tar")
    head, samples = _samples(index_file(str(shard)))

    def last_member(members: bytes) -> tuple[int, tuple[int, ...]]:
        at = 4 + (struct.unpack_from("<I", members)[0] - 1) * 29
        return at, struct.unpack_from("<IQQQB", members, at)

    key, members = samples[1]
    at, (ext, offset, _, _, named) = last_member(members)
    _, (_, tail_offset, tail_size, _, _) = last_member(samples[-1][1])
    size = tail_offset + tail_size - offset  # through the last sample's data
    span = tmp_path / "span"
    span.write_bytes(shard.read_bytes()[offset - 512 : offset + size])
    digest = int(file_hash(str(span))[1], 16)
    stretched = members[:at] + struct.pack("<IQQQB", ext, offset, size, digest, named)
    Path(str(shard) + ".adoidx").write_bytes(_encode(head, [samples[0], (key, stretched)]))
    with caplog.at_level(logging.WARNING, logger="ado"):
        loader = MixtureLoader({"web": str(shard)}, batch_size=4, seed=0, readahead_threads=0)
    if layout == "pax":
        assert loader.num_samples == [20]
        assert "does not describe it" in caplog.text
        fresh = MixtureLoader({"web": str(corpus / "web/shard-003.tar")}, batch_size=4, seed=0)
        assert _rows(loader, 6) == _rows(fresh, 6)
    else:
        assert loader.num_samples == [2]  # the sidecar was taken: it tiles
        with pytest.raises(ShardError, match="gives another size"):
            _rows(loader, 2)


def test_a_forged_local_sidecar_that_lists_two_of_twenty_samples_is_rebuilt(
    tmp_path: Path, corpus: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A sidecar beside a local shard, with the file's identity, listing 2 of its 20 samples:
    its members do not tile the archive, so it is not trusted; the shard is indexed again (and
    the sidecar replaced) and the loader reads all 20 samples, as from a fresh index."""
    from ado._core import index_file

    shard = corpus / "web/shard-002.tar"
    head, samples = _samples(index_file(str(shard)))
    assert len(samples) == 20
    sidecar = Path(str(shard) + ".adoidx")
    sidecar.write_bytes(_encode(head, samples[:2]))
    with caplog.at_level(logging.WARNING, logger="ado"):
        loader = MixtureLoader({"web": str(shard)}, batch_size=4, seed=0, cache_dir=tmp_path / "a")
    assert loader.num_samples == [20]
    warned = [r for r in caplog.records if "does not describe it" in r.getMessage()]
    assert [r.levelno for r in warned] == [logging.WARNING], caplog.text
    assert str(shard) in warned[0].getMessage()
    assert len(_samples(sidecar.read_bytes())[1]) == 20  # the forged sidecar was replaced
    sidecar.unlink()
    fresh = MixtureLoader({"web": str(shard)}, batch_size=4, seed=0, cache_dir=tmp_path / "b")
    assert _rows(loader, 10) == _rows(fresh, 10)
    assert sidecar.read_bytes() == index_file(str(shard))  # rebuilt the same


# -- staleness ---------------------------------------------------------------------------------
def test_a_replaced_object_is_noticed_and_reindexed(
    make_domain: Any, corpus: Path, http: ShardHTTPServer, tmp_path: Path
) -> None:
    url = http.url("web/shard-000.tar")
    cache = tmp_path / "node"
    old = MixtureLoader({"web": url}, batch_size=4, seed=0, cache_dir=cache, remote=QUICK)
    _rows(old, 2)
    old.close()
    # the object is replaced on the server by another shard (other keys, other size)
    other = make_domain("other", 30, per_shard=30, tokens=True)[0]
    (corpus / "web/shard-000.tar").write_bytes(other.read_bytes())
    new = MixtureLoader({"web": url}, batch_size=4, seed=0, cache_dir=cache, remote=QUICK)
    fresh = MixtureLoader(
        {"web": url}, batch_size=4, seed=0, cache_dir=tmp_path / "fresh", remote=QUICK
    )
    assert new.num_samples == [30]
    assert new.fingerprint == fresh.fingerprint
    assert _rows(new, 4) == _rows(fresh, 4)  # both nodes serve the new object
    # after eviction as well: no hash error, a re-index
    new.close()
    _clear(new)
    (corpus / "web/shard-000.tar").write_bytes((corpus / "web/shard-001.tar").read_bytes())
    third = MixtureLoader({"web": url}, batch_size=4, seed=0, cache_dir=cache, remote=QUICK)
    local = MixtureLoader({"web": str(corpus / "web/shard-000.tar")}, batch_size=4, seed=0)
    assert _rows(third, 4) == _rows(local, 4)


def test_a_cached_copy_damaged_on_disk_is_fetched_again(
    corpus: Path, http: ShardHTTPServer, tmp_path: Path
) -> None:
    url = http.url("web/shard-000.tar")
    cache = tmp_path / "node"
    first = MixtureLoader({"web": url}, batch_size=4, seed=0, cache_dir=cache, remote=QUICK)
    first.close()
    assert first.cache is not None
    entry = first.cache.entry(url)
    data = bytearray(entry.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte flipped
    entry.write_bytes(bytes(data))
    gets = http.shard_gets().get("/web/shard-000.tar", 0)
    for _ in range(2):  # every later run works (the first one repairs the copy)
        loader = MixtureLoader({"web": url}, batch_size=4, seed=0, cache_dir=cache, remote=QUICK)
        local = MixtureLoader({"web": str(corpus / "web/shard-000.tar")}, batch_size=4, seed=0)
        assert _rows(loader, 6) == _rows(local, 6)
        loader.close()
    assert http.shard_gets()["/web/shard-000.tar"] == gets + 1
    assert entry.read_bytes() == (corpus / "web/shard-000.tar").read_bytes()


# -- the CLI on a read-only server -----------------------------------------------------------
def test_shards_index_on_a_read_only_server_keeps_the_sidecars_in_the_cache(
    corpus: Path, http: ShardHTTPServer, tmp_path: Path
) -> None:
    """``ado -v shards index http://…``: the server refuses the upload (501); the sidecars go to
    the node cache, the summary says so with real counts, a loader given that cache reads them
    without downloading a shard, and no credential reaches the DEBUG log."""
    user = f"user:{quote(PASSWORD, safe='')}"
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in SIGNATURES.items())
    pattern = f"http://{user}@127.0.0.1:{http.port}/{WEB}?{query}"
    cache = tmp_path / "node"
    main = "import sys; from ado.cli import main; sys.exit(main(sys.argv[1:]))"
    cmd = [sys.executable, "-c", main, "-v", "shards", "index", pattern]
    res = subprocess.run(
        [*cmd, "--cache-dir", str(cache)], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "5 shards, 100 samples" in res.stdout, res.stdout
    assert "5 local" in res.stdout, res.stdout
    assert f"kept in the node cache {cache}" in res.stdout, res.stdout
    assert "DEBUG" in res.stderr  # the protocol libraries did log
    for text in (res.stdout, res.stderr):
        for s in [PASSWORD, quote(PASSWORD, safe=""), "w@rd", *SIGNATURES.values()]:
            assert s not in text, s
    assert [m for m, _, _ in http.log].count("POST") + [m for m, _, _ in http.log].count(
        "PUT"
    ) == 5  # one refused upload per shard, not retried
    for p in (cache / "shards").iterdir():
        p.unlink()
    before = dict(http.shard_gets())
    loader = MixtureLoader({"web": pattern}, batch_size=4, seed=3, cache_dir=cache, remote=QUICK)
    gets = {k: v - before.get(k, 0) for k, v in http.shard_gets().items() if v > before.get(k, 0)}
    local = MixtureLoader({"web": str(corpus / WEB)}, batch_size=4, seed=3)
    assert gets == {}
    assert _rows(loader, 4) == _rows(local, 4)
