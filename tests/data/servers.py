"""Test servers on 127.0.0.1, started and stopped by fixtures: a static HTTP server with Range
support, a request log and fault injection, and moto's S3-compatible server."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

_ETAGS: dict[tuple[str, int, int], str] = {}


def _etag(path: Path) -> str:
    """An MD5 ETag, as S3 gives single-part objects (computed once per file version: a ranged
    GET of a large file must not cost a pass over all of it)."""
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key not in _ETAGS:
        digest = hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
        _ETAGS[key] = '"' + digest + '"'
    return _ETAGS[key]


@dataclass
class Faults:
    """Faults injected into GET requests of shard files (``.tar``), by request count.

    Attributes:
        drop_every: Every n-th GET: the connection is closed without an answer.
        status_every: Every n-th GET: answered with ``status`` (503 unless set).
        truncate_every: Every n-th GET: the full ``Content-Length``, half the body, then close.
        corrupt_every: Every n-th GET: one byte of the body flipped (same size).
        latency_s: Added to every request (HEAD and GET, shards and sidecars).
        always_status: If set, every shard GET is answered with it (beyond any retry budget).
        status_first: The first n requests of a shard (any method, HEAD included) are answered
            with ``status`` (a transient blip of the store).
        hang: Shard requests (any method) get no answer at all until the server stops or
            ``hang`` is cleared (then the connection is closed unanswered).
        trickle_s: Shard GETs send their headers, then one byte every ``trickle_s`` seconds.
        overlong: Shard GETs send the file without a ``Content-Length``, then garbage until the
            client hangs up (a body longer than the object).
        endless_sidecar: Sidecar GETs send an index-shaped body without end.
        sidecar_status: If set, sidecar GETs are answered with it (403: a presigned URL).
        redirect_loop: Shard requests are redirected to themselves.
        ignore_range: Shard GETs with a ``Range`` header get the whole file (200), as servers
            without range support answer.
    """

    drop_every: int = 0
    status_every: int = 0
    status: int = 503
    truncate_every: int = 0
    corrupt_every: int = 0
    latency_s: float = 0.0
    always_status: int | None = None
    status_first: int = 0
    hang: bool = False
    trickle_s: float = 0.0
    overlong: bool = False
    endless_sidecar: bool = False
    sidecar_status: int | None = None
    redirect_loop: bool = False
    ignore_range: bool = False
    count: int = 0
    any_count: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopped: threading.Event = field(default_factory=threading.Event)

    def tick(self) -> int:
        with self.lock:
            self.count += 1
            return self.count

    def tick_any(self) -> int:
        with self.lock:
            self.any_count += 1
            return self.any_count


class ShardHTTPServer:
    """Serves the files under ``root`` at ``http://127.0.0.1:<port>/``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.faults = Faults()
        self.log: list[tuple[str, str, int]] = []  # (method, path, status)
        self.sent = 0  # body bytes sent by the fault modes that stream without end
        self._log_lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _record(self, status: int) -> None:
                with server._log_lock:
                    server.log.append((self.command, self.path, status))

            def _file(self) -> Path | None:
                rel = self.path.split("?", 1)[0].lstrip("/")
                path = (server.root / rel).resolve()
                if server.root.resolve() not in path.parents or not path.is_file():
                    return None
                return path

            def _not_found(self) -> None:
                self._record(404)
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _ok(
                self, status: int, length: int, path: Path, part: tuple[int, int] | None = None
            ) -> None:
                """Record and send the status line and headers of a file's (partial) body
                (``part``: the bytes ``[lo, hi]`` of a 206 answer)."""
                self._record(status)
                self.send_response(status)
                self.send_header("Content-Length", str(length))
                if part is not None:
                    size = path.stat().st_size
                    self.send_header("Content-Range", f"bytes {part[0]}-{part[1]}/{size}")
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("ETag", _etag(path))
                self.end_headers()

            def _any_fault(self, path: Path) -> bool:
                """Faults of every request of a shard (HEAD included); True when answered."""
                f = server.faults
                if path.suffix != ".tar":
                    return False
                if f.hang:
                    self._record(-2)
                    while f.hang and not f.stopped.wait(0.05):
                        pass
                    self.close_connection = True  # no answer: the client sees a disconnect
                    return True
                if f.redirect_loop:
                    self._record(302)
                    self.send_response(302)
                    self.send_header("Location", self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return True
                if f.status_first and f.tick_any() <= f.status_first:
                    self._error(f.status)
                    return True
                return False

            def _stream(self, head: bytes, filler: bytes, every_s: float = 0.0) -> None:
                """Send ``head``, then ``filler`` until the client hangs up (no length)."""
                self._record(200)
                self.send_response(200)
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                try:
                    self.wfile.write(head)
                    while not server.faults.stopped.is_set():
                        self.wfile.write(filler)
                        server.sent += len(filler)
                        if every_s:
                            time.sleep(every_s)
                except OSError:
                    pass

            def do_HEAD(self) -> None:
                time.sleep(server.faults.latency_s)
                path = self._file()
                if path is None:
                    return self._not_found()
                if self._any_fault(path):
                    return
                self._ok(200, path.stat().st_size, path)

            def do_GET(self) -> None:
                f = server.faults
                time.sleep(f.latency_s)
                if self.path.split("?", 1)[0].endswith(".adoidx"):
                    if f.sidecar_status is not None:
                        return self._error(f.sidecar_status)
                    if f.endless_sidecar:
                        return self._stream(b"ADOIDX", b"\0" * 65536)
                path = self._file()
                if path is None:
                    return self._not_found()
                if self._any_fault(path):
                    return
                if path.suffix == ".tar" and f.overlong:
                    return self._stream(path.read_bytes(), b"\xff" * 65536)
                size = path.stat().st_size
                lo, hi, status, part = 0, size - 1, 200, None
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes=") and not f.ignore_range:
                    a, _, b = rng[6:].partition("-")
                    lo = int(a) if a else max(0, size - int(b))
                    hi = min(size - 1, int(b)) if (a and b) else size - 1
                    status, part = 206, (lo, hi)
                if path.suffix == ".tar" and f.trickle_s:
                    self._ok(status, hi + 1 - lo, path, part)
                    try:
                        with open(path, "rb") as src:
                            src.seek(lo)
                            for byte in src.read(hi + 1 - lo):
                                if f.stopped.is_set():
                                    break
                                self.wfile.write(bytes([byte]))
                                self.wfile.flush()
                                server.sent += 1
                                time.sleep(f.trickle_s)
                    except OSError:
                        pass
                    self.close_connection = True
                    return
                with open(path, "rb") as src:
                    src.seek(lo)
                    data = src.read(hi + 1 - lo)
                shard = path.suffix == ".tar"
                n = f.tick() if shard else 0
                if shard and f.always_status is not None:
                    return self._error(f.always_status)
                if shard and f.drop_every and n % f.drop_every == 0:
                    self._record(-1)
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if shard and f.status_every and n % f.status_every == 0:
                    return self._error(f.status)
                self._ok(status, len(data), path, part)
                if shard and f.truncate_every and n % f.truncate_every == 0:
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if shard and f.corrupt_every and n % f.corrupt_every == 0:
                    data = bytearray(data)
                    data[len(data) // 2] ^= 0xFF
                    data = bytes(data)
                self.wfile.write(data)

            def do_PUT(self) -> None:
                """The server is read-only: uploads are refused (405), and logged."""
                self.close_connection = True  # the body is not read
                self._error(405)

            do_POST = do_PUT

            def _error(self, status: int) -> None:
                self._record(status)
                body = b"unavailable"
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def start(self) -> ShardHTTPServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.faults.stopped.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def url(self, rel: str) -> str:
        return f"http://127.0.0.1:{self.port}/{rel}"

    def shard_gets(self) -> dict[str, int]:
        """Successful GETs of each ``.tar`` (answered 200/206), by path."""
        out: dict[str, int] = {}
        with self._log_lock:
            for method, path, status in self.log:
                if method == "GET" and path.endswith(".tar") and status in (200, 206):
                    out[path] = out.get(path, 0) + 1
        return out


def cancel_in_flight(
    cache: Any,
    url: str,
    http: ShardHTTPServer,
    *,
    then_trickle_s: float | None = None,
    join_s: float = 30,
) -> list[BaseException]:
    """Download ``url`` into ``cache`` on a worker thread from ``http`` (set to trickle), cancel
    the transfer once a few bytes have gone out (``cache.cancel_downloads()`` must count it),
    optionally set the trickle to ``then_trickle_s``, and return what the worker raised."""
    caught: list[BaseException] = []

    def fetch() -> None:
        try:
            cache.ensure(url)
        except BaseException as e:  # handed to the test thread
            caught.append(e)

    worker = threading.Thread(target=fetch)
    worker.start()
    deadline = time.monotonic() + 60
    while http.sent < 5:
        assert time.monotonic() < deadline
        assert worker.is_alive()
        time.sleep(0.02)
    assert cache.cancel_downloads() == 1
    if then_trickle_s is not None:
        http.faults.trickle_s = then_trickle_s
    worker.join(timeout=join_s)
    assert not worker.is_alive()
    return caught


def s3_env(endpoint: str) -> dict[str, str]:
    """Environment for an S3-compatible store at ``endpoint`` with dummy credentials."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def upload(endpoint: str, bucket: str, root: Path) -> None:
    """Create ``bucket`` and upload every file under ``root`` (keys relative to it)."""
    import boto3

    env = s3_env(endpoint)
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )
    client.create_bucket(Bucket=bucket)
    for path in sorted(root.rglob("*")):
        if path.is_file():
            client.upload_file(str(path), bucket, os.fspath(path.relative_to(root)))
