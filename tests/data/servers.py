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


def _etag(path: Path) -> str:
    """An MD5 ETag, as S3 gives single-part objects."""
    return '"' + hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest() + '"'


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
    """

    drop_every: int = 0
    status_every: int = 0
    status: int = 503
    truncate_every: int = 0
    corrupt_every: int = 0
    latency_s: float = 0.0
    always_status: int | None = None
    count: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def tick(self) -> int:
        with self.lock:
            self.count += 1
            return self.count


class ShardHTTPServer:
    """Serves the files under ``root`` at ``http://127.0.0.1:<port>/``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.faults = Faults()
        self.log: list[tuple[str, str, int]] = []  # (method, path, status)
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

            def _ok(self, status: int, length: int, path: Path) -> None:
                """Record and send the status line and headers of a file's (partial) body."""
                self._record(status)
                self.send_response(status)
                self.send_header("Content-Length", str(length))
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("ETag", _etag(path))
                self.end_headers()

            def do_HEAD(self) -> None:
                time.sleep(server.faults.latency_s)
                path = self._file()
                if path is None:
                    return self._not_found()
                self._ok(200, path.stat().st_size, path)

            def do_GET(self) -> None:
                f = server.faults
                time.sleep(f.latency_s)
                path = self._file()
                if path is None:
                    return self._not_found()
                data = path.read_bytes()
                status = 200
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes="):
                    a, _, b = rng[6:].partition("-")
                    lo = int(a) if a else max(0, len(data) - int(b))
                    hi = min(len(data) - 1, int(b)) if (a and b) else len(data) - 1
                    data = data[lo : hi + 1]
                    status = 206
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
                self._ok(status, len(data), path)
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

            def _error(self, status: int) -> None:
                self._record(status)
                body = b"unavailable"
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def start(self) -> ShardHTTPServer:
        self._thread.start()
        return self

    def stop(self) -> None:
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
