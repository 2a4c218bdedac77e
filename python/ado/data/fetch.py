"""One remote object as the node cache fetches it: its stat, a bounded whole read, a bounded
ranged read; through ``obstore`` (Rust ``object_store``) for ``s3://``, through fsspec for every
other protocol (``gs://`` too: the local GCS emulator the tests use does not answer the XML API
requests object_store makes, so that path would be untested) and for S3 configurations obstore
cannot serve.

:func:`remote_object` chooses by :attr:`RemoteConfig.client <ado.data.remote.RemoteConfig>`:
``"fsspec"`` always fsspec; ``"obstore"`` obstore for ``s3://`` (a configuration it cannot serve
is a ``ShardError``); ``"auto"`` (default) obstore where it applies: the package is installed and
the credentials, region and endpoint are ones it reads (``storage_options`` it translates:
``key``, ``secret``, ``token``, ``anon``, ``endpoint_url``, ``requester_pays``,
``client_kwargs`` ``endpoint_url``/``region_name``; the ``AWS_*`` environment variables,
web identity, instance metadata), else fsspec (an AWS profile or shared credentials file,
botocore ``config_kwargs``, no region known for AWS itself).

Both paths keep the same guarantees (``docs/data-path.md``): connect and per-read timeouts and a
deadline per attempt, no retry of their own (``with_retries`` owns the budget), a body never
written past its announced size or the caller's bound, cancellation between reads, and errors
scrubbed of every secret. obstore never logs through Python; its errors are cut to their first
line, and the credentials it reads from the environment are remembered for :func:`redact_text`.
Blocking obstore calls (they release the GIL) run on helper threads (``ado-obstore``) while the
calling thread waits for each: interruptibly (a Rust call does not return to Python for a
signal: Ctrl-C is raised at once), up to the attempt's deadline, and asking the transfer's cancel
flag every 50 ms. A call given up on ends on its own at the client's timeouts (connect, read, and
the request timeout: the attempt deadline rounded up to a power of 1.25).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

from ado.data.remote import (
    RangeNotServedError,
    RemoteConfig,
    TransferCancelledError,
    TransientError,
    _pump,
    _remember,
    filesystem,
    install_log_redaction,
    read_bounded,
    read_range,
    redact,
    scheme_of,
)
from ado.errors import ShardError, TooLargeError

__all__ = ["ObjectStoreError", "RemoteObject", "obstore_config", "remote_object"]

T = TypeVar("T")

logger = logging.getLogger(__name__)


class RemoteObject(Protocol):
    """What the cache asks of one remote object (see :func:`remote_object`)."""

    url: str
    client: str

    def info(self) -> dict[str, Any]:
        """What the store says about the object: ``size`` and what changes when it is
        replaced (``ETag``, ``LastModified``, ``VersionId``; the protocol's own keys)."""
        ...

    def read(
        self,
        out: IO[bytes],
        *,
        size: int | None,
        limit: int,
        what: str,
        cancelled: Callable[[], bool] | None = None,
    ) -> int:
        """The whole object into ``out`` under :func:`~ado.data.remote.read_bounded`'s
        bounds; the bytes written."""
        ...

    def read_range(
        self,
        out: IO[bytes],
        *,
        start: int,
        end: int,
        total: int,
        what: str = "ranged read",
        cancelled: Callable[[], bool] | None = None,
    ) -> None:
        """Bytes ``[start, end)`` into ``out`` under :func:`~ado.data.remote.read_range`'s
        bounds."""
        ...


class _FsspecObject:
    """An object read through fsspec (the functions of :mod:`ado.data.remote`)."""

    client = "fsspec"

    def __init__(
        self, url: str, storage_options: Mapping[str, Any] | None, config: RemoteConfig
    ) -> None:
        self.url = url
        self.config = config
        self.fs, self.path = filesystem(url, storage_options, config)

    def info(self) -> dict[str, Any]:
        return dict(self.fs.info(self.path))

    def read(
        self,
        out: IO[bytes],
        *,
        size: int | None,
        limit: int,
        what: str,
        cancelled: Callable[[], bool] | None = None,
    ) -> int:
        return read_bounded(
            self.fs, self.path, out, self.url, self.config,
            size=size, limit=limit, what=what, cancelled=cancelled,
        )  # fmt: skip

    def read_range(
        self,
        out: IO[bytes],
        *,
        start: int,
        end: int,
        total: int,
        what: str = "ranged read",
        cancelled: Callable[[], bool] | None = None,
    ) -> None:
        read_range(
            self.fs, self.path, out, self.url, self.config,
            start=start, end=end, total=total, what=what, cancelled=cancelled,
        )  # fmt: skip


# -- obstore ----------------------------------------------------------------------------------

#: storage_options keys that only tune fsspec's caches (nothing to translate).
_FSSPEC_ONLY = frozenset(
    {
        "skip_instance_cache",
        "use_listings_cache",
        "listings_expiry_time",
        "max_paths",
        "default_block_size",
        "default_fill_cache",
        "default_cache_type",
        "cache_timeout",
        "asynchronous",
        "loop",
    }
)

#: Environment variables whose values are secrets obstore may read.
_SECRET_ENV = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
)


class _Unsupported(Exception):
    """obstore cannot serve this configuration (the message says why)."""


def _s3_config(options: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """s3fs-style ``options`` as obstore ``S3Config`` values, and whether the endpoint is plain
    http. Raises ``_Unsupported`` for what object_store does not read."""
    out: dict[str, Any] = {}
    for k, v in options.items():
        if k in _FSSPEC_ONLY:
            continue
        if k == "key":
            out["access_key_id"] = v
        elif k == "secret":
            out["secret_access_key"] = v
        elif k == "token":
            out["session_token"] = v
        elif k == "anon":
            if v:
                out["skip_signature"] = True
        elif k == "endpoint_url":
            out["endpoint"] = v
        elif k == "requester_pays":
            out["request_payer"] = bool(v)
        elif k == "client_kwargs" and isinstance(v, Mapping):
            for ck, cv in v.items():
                if ck == "endpoint_url":
                    out["endpoint"] = cv
                elif ck == "region_name":
                    out["region"] = cv
                else:
                    raise _Unsupported(f"storage_options client_kwargs[{ck!r}]")
        else:
            raise _Unsupported(f"storage_options[{k!r}]")
    env = os.environ
    endpoint = out.get("endpoint") or next(
        (env[k] for k in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT") if env.get(k)),
        "",
    )
    if "region" not in out and not (env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")):
        if not endpoint:
            # botocore finds a bucket's region itself; object_store needs it told
            raise _Unsupported("no S3 region (AWS_REGION / AWS_DEFAULT_REGION / region_name)")
        out["region"] = "us-east-1"  # an S3-compatible endpoint: any region signs
    keyed = "access_key_id" in out or out.get("skip_signature") or env.get("AWS_ACCESS_KEY_ID")
    if not keyed and (
        env.get("AWS_PROFILE")
        or env.get("AWS_SHARED_CREDENTIALS_FILE")
        or env.get("AWS_CONFIG_FILE")
        or (Path.home() / ".aws" / "credentials").is_file()
        or (Path.home() / ".aws" / "config").is_file()
    ):
        raise _Unsupported("credentials from an AWS profile or shared file (botocore reads them)")
    return out, endpoint.lower().startswith("http://")


def obstore_config(
    url: str, storage_options: Mapping[str, Any] | None = None
) -> tuple[dict[str, Any], bool] | str:
    """The obstore configuration of ``url`` (an ``s3://`` URL) and whether its
    endpoint is plain http, or why obstore cannot serve it (a string)."""
    try:
        import obstore  # noqa: F401
    except ImportError:
        return "the obstore package is not installed"
    scheme = scheme_of(url)
    try:
        if scheme in ("s3", "s3a"):
            return _s3_config(dict(storage_options or {}))
    except _Unsupported as why:
        return str(why)
    return f"obstore does not read {scheme}:// here"


def remote_object(
    url: str,
    storage_options: Mapping[str, Any] | None,
    config: RemoteConfig,
    helpers: Callable[[], ThreadPoolExecutor] | None = None,
) -> RemoteObject:
    """The object ``url`` through the client :attr:`RemoteConfig.client` picks for it (module
    doc). ``helpers`` gives the threads that run obstore's blocking calls (a node cache's own,
    joined when it closes; default: this process's).

    Raises:
        ShardError: ``client="obstore"`` for an ``s3://`` URL obstore cannot serve
            (names why); a protocol whose package is missing (names the extra).
    """
    scheme = scheme_of(url)
    if config.client != "fsspec" and scheme in ("s3", "s3a") and _forked_after_obstore():
        pass  # obstore's runtime does not survive a fork: this child reads through fsspec
    elif config.client != "fsspec" and scheme in ("s3", "s3a"):
        found = obstore_config(url, storage_options)
        if not isinstance(found, str):
            return _ObstoreObject(url, config, *found, helpers=helpers or _helpers)
        if config.client == "obstore":
            raise ShardError(f"{redact(url)}: client='obstore' cannot read it: {found}")
    return _FsspecObject(url, storage_options, config)


# Stores by (pid, scheme, bucket, configuration, timeout): a store's connections belong to the
# process that made it.
_STORES: dict[tuple[Any, ...], Any] = {}
# The process whose obstore runtime (tokio) has started. obstore (0.12) is not fork-safe: in a
# child forked after that, every obstore call hangs, so such a child reads through fsspec.
_OBSTORE_PID: int | None = None
_STORES_LOCK = threading.Lock()
_HELPERS: tuple[int, ThreadPoolExecutor] | None = None


def _forked_after_obstore() -> bool:
    """Whether this process was forked from one that had used obstore (see ``_OBSTORE_PID``)."""
    if _OBSTORE_PID is None or os.getpid() == _OBSTORE_PID:
        return False
    global _WARNED_FORK
    if not _WARNED_FORK:
        _WARNED_FORK = True
        logger.info(
            "this process was forked after its parent used obstore, whose runtime does not "
            "survive a fork: s3:// objects are read through fsspec here"
        )
    return True


_WARNED_FORK = False


def _timeout_tier(seconds: float) -> int:
    """``seconds`` rounded up to the next power of 1.25 (few stores, at most 25 % longer)."""
    return math.ceil(1.25 ** math.ceil(math.log(max(seconds, 1.0), 1.25)))


def _store(
    scheme: str, bucket: str, cfg: dict[str, Any], plain_http: bool, config: RemoteConfig,
    timeout_s: int,
) -> Any:  # fmt: skip
    key = (
        os.getpid(), scheme, bucket, tuple(sorted((k, repr(v)) for k, v in cfg.items())),
        plain_http, config.connect_timeout_s, config.read_timeout_s, timeout_s,
    )  # fmt: skip
    with _STORES_LOCK:
        store = _STORES.get(key)
        if store is not None:
            return store
        from obstore.store import S3Store

        client: dict[str, Any] = {
            "allow_http": plain_http,
            "connect_timeout": f"{max(1, round(config.connect_timeout_s * 1000))}ms",
            "read_timeout": f"{max(1, round(config.read_timeout_s * 1000))}ms",
            "timeout": f"{timeout_s}s",
        }
        retry = {"max_retries": 0}  # with_retries owns the retry budget
        kind: Any = S3Store
        store = kind(bucket, config=cfg, client_options=client, retry_config=retry)
        global _OBSTORE_PID
        _OBSTORE_PID = os.getpid()
        if os.getpid() != key[0]:  # pragma: no cover - a fork while the lock was held
            return store
        _STORES[key] = store
        return store


def _helpers() -> ThreadPoolExecutor:
    """This process's threads for obstore calls made outside a node cache (a manifest read)."""
    global _HELPERS
    with _STORES_LOCK:
        if _HELPERS is None or _HELPERS[0] != os.getpid():
            _HELPERS = (os.getpid(), ThreadPoolExecutor(64, thread_name_prefix="ado-obstore"))
        return _HELPERS[1]


def _after_fork_in_child() -> None:
    global _STORES_LOCK, _HELPERS
    _STORES_LOCK = threading.Lock()
    _STORES.clear()
    _HELPERS = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class ObjectStoreError(OSError):
    """A failed obstore request; ``status`` is the HTTP status when the store answered one."""

    def __init__(self, text: str, status: int | None) -> None:
        super().__init__(text)
        self.status = status


_STATUS = re.compile(r"status(?: code)?:? (\d{3})\b")
_TRANSIENT_TEXT = (
    "timeout",
    "timed out",
    "error sending request",
    "connection",
    "connect",
    "body error",
    "incomplete",
    "reset",
    "broken pipe",
    "closed",
    "eof",
)


def _translate(err: BaseException, url: str) -> BaseException:
    """An obstore exception as the exception :func:`~ado.data.remote.with_retries` judges:
    ``FileNotFoundError``, ``PermissionError``, ``TransientError``, ``RangeNotServedError`` or
    :class:`ObjectStoreError` (with its status). Only the first line of obstore's text is kept
    (the rest is a debug dump of the request)."""
    from obstore.exceptions import (
        BaseError,
        NotFoundError,
        PermissionDeniedError,
        UnauthenticatedError,
    )

    if not isinstance(err, BaseError | FileNotFoundError):
        return err
    text = str(err).split("\n\nDebug source:", 1)[0].strip()
    if isinstance(err, NotFoundError | FileNotFoundError):
        return FileNotFoundError(errno.ENOENT, "no such object", redact(url))
    if isinstance(err, PermissionDeniedError | UnauthenticatedError):
        return PermissionError(errno.EACCES, text)
    low = text.lower()
    m = _STATUS.search(str(err))
    status = int(m[1]) if m else None
    if "range" in low and ("partial" in low or "invalid" in low):
        return RangeNotServedError(f"{redact(url)}: the store did not serve the range: {text}")
    if status is None and ("TimedOut" in str(err) or "kind: Timeout" in str(err)):
        return TimeoutError(text)
    if status is None and any(t in low for t in _TRANSIENT_TEXT):
        return TransientError(text)
    return ObjectStoreError(text, status)


class _ObstoreObject:
    """An ``s3://``/``gs://`` object read through obstore (module doc)."""

    client = "obstore"

    def __init__(
        self,
        url: str,
        config: RemoteConfig,
        cfg: dict[str, Any],
        plain_http: bool,
        *,
        helpers: Callable[[], ThreadPoolExecutor],
    ) -> None:
        self.helpers = helpers
        install_log_redaction()
        secrets = [str(v) for v in cfg.values() if isinstance(v, str) and len(v) >= 4]
        secrets += [os.environ[k] for k in _SECRET_ENV if len(os.environ.get(k, "")) >= 4]
        _remember([s for s in secrets if s != cfg.get("region") and "://" not in s])
        self.url = url
        self.config = config
        self.scheme = scheme_of(url)
        rest = url.split("://", 1)[1].split("?", 1)[0]
        self.bucket, _, self.path = rest.partition("/")
        if not self.bucket or not self.path:
            raise ShardError(f"{redact(url)}: not an object URL (bucket/key)")
        self.cfg, self.plain_http = cfg, plain_http

    def _store(self, size: int | None) -> Any:
        deadline = self.config.attempt_timeout_s + (size or 0) / self.config.min_bytes_per_s
        return _store(
            self.scheme, self.bucket, self.cfg, self.plain_http, self.config,
            _timeout_tier(deadline),
        )  # fmt: skip

    def _call(
        self, fn: Callable[[], T], deadline: float, cancelled: Callable[[], bool] | None = None
    ) -> T:
        """``fn()`` (a blocking obstore call) on a helper thread, its errors translated, while
        this thread waits: interruptibly (Ctrl-C), until ``deadline`` (``TimeoutError``), and
        until ``cancelled()`` (``TransferCancelledError``), asked every 50 ms. A call given up
        on ends on its own at the client's timeouts."""
        fut: Future[T] = self.helpers().submit(fn)
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    fut.cancel()
                    raise TimeoutError(
                        f"{redact(self.url)}: no answer within the attempt's deadline"
                    )
                try:
                    return fut.result(timeout=min(0.05, left))
                except FutureTimeout:
                    if cancelled is not None and cancelled():
                        fut.cancel()
                        raise TransferCancelledError(f"{redact(self.url)}: cancelled") from None
        except Exception as err:
            translated = _translate(err, self.url)
            if translated is err:
                raise
            raise translated from None

    def info(self) -> dict[str, Any]:
        import obstore

        store = self._store(None)
        meta = self._call(lambda: obstore.head(store, self.path), self.config.deadline(None))
        out: dict[str, Any] = {"size": int(meta["size"])}
        if meta.get("e_tag"):
            out["ETag"] = meta["e_tag"]
        if meta.get("last_modified") is not None:
            out["LastModified"] = meta["last_modified"]
        if meta.get("version"):
            out["VersionId"] = meta["version"]
        return out

    def _get(
        self,
        size: int | None,
        deadline: float,
        options: Any,
        cancelled: Callable[[], bool] | None,
    ) -> Any:
        import obstore

        store = self._store(size)
        get = lambda: obstore.get(store, self.path, options=options)  # noqa: E731
        return self._call(get, deadline, cancelled)

    def _pump(
        self,
        result: Any,
        out: IO[bytes],
        deadline: float,
        *,
        bound: int,
        size: int | None,
        limit: int,
        what: str,
        cancelled: Callable[[], bool] | None,
    ) -> int:
        chunks = _Chunks(self, result.stream(min_chunk_size=1 << 20), deadline, cancelled)
        try:
            return _pump(
                chunks, out, self.url, self.config, 16 << 20, bound, size, limit, what, cancelled
            )
        finally:
            chunks.close()

    def read(
        self,
        out: IO[bytes],
        *,
        size: int | None,
        limit: int,
        what: str,
        cancelled: Callable[[], bool] | None = None,
    ) -> int:
        deadline = self.config.deadline(size)
        result = self._get(size, deadline, None, cancelled)
        announced = int(result.meta["size"])
        bound = min(announced if size is None else size, limit)
        if announced > bound:
            shown = redact(self.url)
            if size is not None and announced > size:
                raise TooLargeError(
                    f"{shown}: {what} announced {announced} bytes, more than the {size} "
                    "expected; refused"
                )
            raise TooLargeError(f"{shown}: {what} is longer than {limit} bytes; refused")
        return self._pump(
            result, out, deadline, bound=bound, size=size if size is not None else announced,
            limit=limit, what=what, cancelled=cancelled,
        )  # fmt: skip

    def read_range(
        self,
        out: IO[bytes],
        *,
        start: int,
        end: int,
        total: int,
        what: str = "ranged read",
        cancelled: Callable[[], bool] | None = None,
    ) -> None:
        want = end - start
        if want <= 0:
            return
        deadline = self.config.deadline(want)
        result = self._get(want, deadline, {"range": (start, end)}, cancelled)
        given = tuple(result.range)
        if given != (start, end):
            raise RangeNotServedError(
                f"{redact(self.url)}: the store answered a ranged GET with bytes "
                f"{given[0]}-{given[1]}, not {start}-{end}"
            )
        got = self._pump(
            result, out, deadline, bound=want, size=want, limit=want, what=what,
            cancelled=cancelled,
        )  # fmt: skip
        if got != want:
            raise TransientError(f"{redact(self.url)}: {what} got {got} bytes of {want}")


class _Chunks:
    """obstore's chunk stream as a file whose ``read(n)`` returns at most ``n`` bytes (each
    blocking step through :meth:`_ObstoreObject._call`)."""

    def __init__(
        self,
        obj: _ObstoreObject,
        stream: Any,
        deadline: float,
        cancelled: Callable[[], bool] | None,
    ) -> None:
        self.obj, self.stream, self.deadline, self.cancelled = obj, stream, deadline, cancelled
        self.buf = b""
        self.done = False

    def _next(self) -> bytes | None:
        try:
            return bytes(next(self.stream))
        except StopIteration:
            return None

    def read(self, n: int) -> bytes:
        if not self.buf and not self.done:
            chunk = self.obj._call(self._next, self.deadline, self.cancelled)
            if chunk is None:
                self.done = True
            else:
                self.buf = chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def close(self) -> None:
        self.buf = b""
        with contextlib.suppress(Exception):
            del self.stream
