"""Remote shards: URLs, their expansion, credentials kept out of sight, and retried transfers.

Shards may live in object stores and behind HTTP: ``s3://`` (and S3-compatible stores through
``AWS_ENDPOINT_URL``), ``gs://``, ``az://``/``abfs://``, ``http(s)://`` and ``file://``. The
protocols are ``fsspec``'s (``s3fs``, ``gcsfs``, ``adlfs`` and ``aiohttp`` come with the extras
``ado[s3]``, ``ado[gcs]``, ``ado[azure]``, ``ado[http]``; ``ado[remote]`` has them all), imported
only when a URL is used. Credentials come the standard way (the providers' environment variables
and config files) plus ``storage_options``; they never appear in logs, errors or states: URLs are
shown by :func:`redact` and error texts are scrubbed of every ``storage_options`` value.
"""

from __future__ import annotations

import errno
import fnmatch
import logging
import random
import re
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any, Literal, TypeVar
from urllib.parse import quote, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field

from ado.data._braces import brace_names
from ado.errors import RetryBudgetError, ShardError, ShardNotFoundError, TooLargeError

__all__ = [
    "REMOTE_SCHEMES",
    "RangeNotServedError",
    "RemoteConfig",
    "TransferCancelledError",
    "expand_remote",
    "filesystem",
    "install_log_redaction",
    "is_remote",
    "read_bounded",
    "read_range",
    "redact",
    "redact_text",
    "with_retries",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: URL schemes read through fsspec (``file://`` is turned into a local path instead).
REMOTE_SCHEMES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "http", "https"})

_EXTRAS = {
    "s3": "s3",
    "s3a": "s3",
    "gs": "gcs",
    "gcs": "gcs",
    "az": "azure",
    "abfs": "azure",
    "abfss": "azure",
    "http": "http",
    "https": "http",
}

_GLOB_CHARS = frozenset("*?[")


class RemoteConfig(BaseModel):
    """How remote shards are fetched and prefetched (local shards ignore all of this).

    Attributes:
        retries: Attempts per transfer (timeouts, 5xx, 429, dropped connections, short or
            corrupt bodies are retried; a missing object or a refused permission is not).
        backoff_s: First back-off; it doubles per attempt, with full jitter.
        backoff_max_s: Cap of one back-off.
        prefetch_shards: Shards downloaded ahead of the readers over all domains, shared out by
            the domains' current weights (each domain with weight > 0 gets at least one).
        prefetch_bytes: Most bytes the prefetch may have downloaded ahead (0: no prefetch).
        prefetch_threads: Background download threads: the GETs in flight at once. A cold
            read runs at about ``prefetch_threads`` x (shard size / time per shard download)
            until it is capped by the link, so the defaults (16 threads, 16 shards ahead) are
            set for object-store latencies (20-100 ms a request) and per-connection rates;
            ``benchmarks/results/remote-peers/`` measures 4 against 16.
        wait_s: How long a reader waits for room in the cache (other processes hold the space)
            before it gives up with a ``ShardError``.
        connect_timeout_s: Most seconds to open a connection.
        read_timeout_s: Most seconds without a byte from the server (headers or body); a
            server that never answers fails after this, and the attempt is retried.
        attempt_timeout_s: Most seconds of one attempt at a transfer, plus one second per
            ``min_bytes_per_s`` of its size: a server that trickles bytes fails after this.
        min_bytes_per_s: The slowest transfer rate the attempt deadline allows for.
        max_index_bytes: Largest sidecar index read (a longer answer is refused while it
            streams, and the shard is indexed instead).
        max_shard_bytes: Largest shard downloaded when neither the store nor an index tells
            its size (``cache_limit`` bounds it too).
        reads: How the reader gets at a shard that is not in the node cache. ``"whole"``: it
            downloads the shard into the cache first. ``"ranged"``: it reads the byte ranges of
            the samples it needs next (its next samples of that shard: up to 64, and up to
            ``readahead_bytes`` / domains within 256 KiB-16 MiB) by few GETs (ranges closer
            than ``range_gap_bytes`` in one), never the whole shard (no prefetch).
            ``"auto"``: ranged reads for shards of at least ``ranged_min_bytes`` whose samples
            average at least ``ranged_min_sample_bytes``, while the prefetch downloads them
            whole (a shard becomes a normal cached shard, read from the cache from then on);
            other shards, or all with no prefetch (``prefetch_bytes=0``), are read whole. A
            server that does not serve ranges is read whole (with a warning). The crossover
            is measured by ``benchmarks/remote_ranged.py``.
        ranged_min_bytes: Smallest shard ``"auto"`` reads by ranges until it is cached.
        ranged_min_sample_bytes: Smallest mean sample size (shard bytes / samples) ``"auto"``
            reads by ranges: smaller samples cost a GET each for little data.
        range_gap_bytes: Ranges of one ranged read at most this far apart are fetched by one
            GET (the bytes between them are fetched and dropped).
        range_threads: GETs of one ranged read in flight at once.
        client: What fetches ``s3://`` objects: ``"obstore"`` (Rust ``object_store``),
            ``"fsspec"`` (s3fs), or ``"auto"``: obstore where it can serve the configuration
            (see :mod:`ado.data.fetch`), else fsspec. Other protocols are always read through
            fsspec, and so are listings and sidecar uploads.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    retries: int = Field(default=5, ge=1, le=100)
    backoff_s: float = Field(default=0.2, ge=0.0, le=60.0)
    backoff_max_s: float = Field(default=10.0, ge=0.0, le=600.0)
    prefetch_shards: int = Field(default=16, ge=0, le=4096)
    prefetch_bytes: int = Field(default=4 << 30, ge=0)
    prefetch_threads: int = Field(default=16, ge=1, le=64)
    wait_s: float = Field(default=600.0, ge=0.0)
    connect_timeout_s: float = Field(default=10.0, gt=0.0)
    read_timeout_s: float = Field(default=30.0, gt=0.0)
    attempt_timeout_s: float = Field(default=120.0, gt=0.0)
    min_bytes_per_s: int = Field(default=1 << 20, ge=1)
    max_index_bytes: int = Field(default=256 << 20, ge=1024)
    max_shard_bytes: int = Field(default=64 << 30, ge=1)
    reads: Literal["auto", "whole", "ranged"] = "auto"
    ranged_min_bytes: int = Field(default=32 << 20, ge=0)
    ranged_min_sample_bytes: int = Field(default=64 << 10, ge=0)
    range_gap_bytes: int = Field(default=64 << 10, ge=0, le=1 << 30)
    range_threads: int = Field(default=16, ge=1, le=64)
    client: Literal["auto", "obstore", "fsspec"] = "auto"

    def deadline(self, size: int | None) -> float:
        """The ``time.monotonic()`` by which one attempt at a transfer of ``size`` bytes
        must be done."""
        return time.monotonic() + self.attempt_timeout_s + (size or 0) / self.min_bytes_per_s


def scheme_of(url: str) -> str:
    """The lower-cased scheme of ``url`` ('' for a plain path)."""
    head, sep, _ = url.partition("://")
    return head.lower() if sep and head.isascii() and head.replace("+", "").isalnum() else ""


def is_remote(url: str) -> bool:
    """Whether ``url`` names a remote shard (a scheme of :data:`REMOTE_SCHEMES`)."""
    return scheme_of(url) in REMOTE_SCHEMES


_HOST = re.compile(r"(?:[A-Za-z0-9._~%-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]*)?")


def _split_userinfo(rest: str) -> tuple[str | None, str]:
    """``(user-info, host and the rest)`` of a URL's part after ``scheme://``.

    A password may hold unescaped ``/``, ``?``, ``#`` and ``@``, so the user-info runs to the
    last ``@`` that is followed by something shaped like a host. A path with an ``@`` in a URL
    without user-info is taken for user-info only when the part before its first ``/`` has a
    ``:`` (``user:pass``): ``s3://bucket/a@b.tar`` keeps its path. Ambiguous cases hide more."""
    for i in range(len(rest) - 1, -1, -1):
        if rest[i] != "@":
            continue
        host = re.split(r"[/?#]", rest[i + 1 :], maxsplit=1)[0]
        if not _HOST.fullmatch(host):
            continue
        info = rest[:i]
        if "/" in info and ":" not in info.split("/", 1)[0]:
            continue
        return info, rest[i + 1 :]
    return None, rest


def redact(url: str) -> str:
    """``url`` without what may be a secret: the user-info part and the query (presigned URLs
    carry their signature there) are replaced by ``***``, a fragment is dropped. Works on
    malformed URLs too (a password with an unescaped ``/``, ``?``, ``#`` or ``@``)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    info, rest = _split_userinfo(rest)
    rest, qsep, _ = rest.partition("?")
    rest = rest.partition("#")[0]
    return f"{scheme}://" + ("***@" if info is not None else "") + rest + ("?***" if qsep else "")


def _url_secrets(url: str) -> list[str]:
    """The parts of ``url`` that may be secrets (user-info, password, query values)."""
    rest = url.partition("://")[2]
    info, rest = _split_userinfo(rest)
    query = rest.partition("?")[2]
    parts: list[tuple[str, int]] = []
    if info is not None:
        parts += [(info, 4), (info.partition(":")[2], 4)]
    if query:
        # query values shorter than 6 characters (flags, counts) are not taken for secrets
        parts += [(query, 6)] + [(kv.partition("=")[2], 6) for kv in query.split("&")]
    out: set[str] = set()
    for part, shortest in parts:
        for form in (part, unquote(part), quote(unquote(part), safe="")):
            if len(form) >= shortest:
                out.add(form)
    return sorted(out, key=len, reverse=True)


def _secret_values(storage_options: Mapping[str, Any] | None) -> list[str]:
    out: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str) and len(value) >= 4:
            out.append(value)
        elif isinstance(value, Mapping):
            for v in value.values():
                walk(v)
        elif isinstance(value, list | tuple):
            for v in value:
                walk(v)

    walk(dict(storage_options or {}))
    return sorted(out, key=len, reverse=True)


_SECRETS: set[str] = set()
_SECRETS_LOCK = threading.Lock()


def _remember(secrets: Sequence[str]) -> None:
    """Add ``secrets`` to what :func:`redact_text` masks in every log line of this process."""
    with _SECRETS_LOCK:
        _SECRETS.update(secrets)


def scrub(
    text: str, urls: Sequence[str] = (), storage_options: Mapping[str, Any] | None = None
) -> str:
    """``text`` with each of ``urls`` redacted, every secret-bearing part of them (user-info,
    query values, in any quoting) and every ``storage_options`` value masked, then bounded to
    500 characters (an error of a protocol library can quote a whole response body)."""
    for url in urls:
        if not url:
            continue
        text = text.replace(url, redact(url))
        for form in _url_secrets(url):
            text = text.replace(form, "***")
    for secret in _secret_values(storage_options):
        text = text.replace(secret, "***")
    text = redact_text(text)
    return text if len(text) <= 500 else text[:500] + f"… ({len(text) - 500} more characters)"


# Query parameters and header fields that carry credentials (AWS and GCS presigned URLs, Azure
# SAS, OAuth tokens, botocore's signed request headers).
_QUERY_SECRET = re.compile(
    r"(?i)([?&;](?:x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature|"
    r"x-goog-credential|signature|sig|token|access_token|id_token|awsaccesskeyid|api_key|"
    r"apikey|key|password|secret|code)=)[^&\s#'\"]*"
)
_HEADER_SECRET = re.compile(
    r"(?i)((?:authorization|x-amz-security-token|x-goog-api-key|x-api-key|cookie)['\"]?\s*[:=]"
    r"\s*b?['\"]?)[^'\"\n]*"
)
_SIGV4 = re.compile(r"(?i)((?:credential|signature)=)[^,\s'\"&]+")
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^\s'\"<>]*@")
# S3's error documents quote the signature and what was signed (SignatureDoesNotMatch)
_XML_SECRET = re.compile(
    r"(?i)(<(SignatureProvided|StringToSign|StringToSignBytes|CanonicalRequest|"
    r"CanonicalRequestBytes|AWSAccessKeyId)>)[^<]*(</\2>)"
)


def redact_text(text: str) -> str:
    """``text`` with every secret this process knows of (the user-info and query values of the
    URLs it opened, their ``storage_options`` values) and every credential-shaped part (a URL's
    user-info, presigned query values, ``Authorization`` headers, SigV4 fields) masked."""
    with _SECRETS_LOCK:
        secrets = sorted(_SECRETS, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "***")
    text = _USERINFO.sub(r"\1***@", text)
    text = _QUERY_SECRET.sub(r"\1***", text)
    text = _HEADER_SECRET.sub(r"\1***", text)
    text = _XML_SECRET.sub(r"\1***\3", text)
    return _SIGV4.sub(r"\1***", text)


#: Loggers of the protocol libraries; their records are redacted (their DEBUG lines show URLs,
#: request headers and signatures).
PROTOCOL_LOGGERS = (
    "ado",
    "aiohttp",
    "aiobotocore",
    "botocore",
    "boto3",
    "s3fs",
    "gcsfs",
    "adlfs",
    "azure",
    "fsspec",
    "urllib3",
    "google",
    "obstore",
)


class _RedactingFactory:
    """A log-record factory that masks credentials in the records of :data:`PROTOCOL_LOGGERS`
    (and their children) as they are made, so every handler and level sees them masked."""

    def __init__(self, inner: Callable[..., logging.LogRecord]) -> None:
        self.inner = inner

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.inner(*args, **kwargs)
        name = record.name
        if any(name == p or name.startswith(p + ".") for p in PROTOCOL_LOGGERS):
            try:
                message = record.getMessage()
            except Exception:  # a bad format string is the logging module's to report
                return record
            record.msg, record.args = redact_text(message), ()
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
        return record


def install_log_redaction() -> None:
    """Mask credentials in every log record of the protocol libraries (idempotent; done when
    the first remote URL is opened and by ``ado -v``)."""
    factory = logging.getLogRecordFactory()
    if not isinstance(factory, _RedactingFactory):
        logging.setLogRecordFactory(_RedactingFactory(factory))


def _with_timeouts(
    scheme: str, options: dict[str, Any], config: RemoteConfig | None
) -> dict[str, Any]:
    """``options`` plus the connect and read timeouts of ``config`` in the protocol's own
    terms, where the user set none (the libraries' defaults wait minutes or forever)."""
    if config is None:
        return options
    out = dict(options)
    # aiohttp sessions: fsspec's HTTP (client_kwargs) and gcsfs (session_kwargs)
    session_key = {"http": "client_kwargs", "https": "client_kwargs", "gs": "session_kwargs"}
    session_key["gcs"] = "session_kwargs"
    if scheme in session_key:
        import aiohttp

        session = dict(out.get(session_key[scheme]) or {})
        session.setdefault(
            "timeout",
            aiohttp.ClientTimeout(
                total=None,
                connect=config.connect_timeout_s,
                sock_connect=config.connect_timeout_s,
                sock_read=config.read_timeout_s,
            ),
        )
        out[session_key[scheme]] = session
    elif scheme in ("s3", "s3a"):
        cfg = dict(out.get("config_kwargs") or {})
        cfg.setdefault("connect_timeout", config.connect_timeout_s)
        cfg.setdefault("read_timeout", config.read_timeout_s)
        out["config_kwargs"] = cfg
    return out


def filesystem(
    url: str,
    storage_options: Mapping[str, Any] | None = None,
    config: RemoteConfig | None = None,
) -> tuple[Any, str]:
    """The fsspec file system of ``url`` and the path inside it, with the connect and read
    timeouts of ``config`` (where ``storage_options`` sets none). The secrets of ``url`` and of
    ``storage_options`` are remembered and masked in every log line from then on.

    Raises:
        ShardError: The protocol's package is not installed (names the extra to install).
    """
    install_log_redaction()
    _remember(_url_secrets(url) + _secret_values(storage_options))
    try:
        from fsspec.core import url_to_fs  # type: ignore[import-untyped]
    except ImportError as err:  # pragma: no cover - fsspec is a dependency of the extras
        raise ShardError(
            f"{redact(url)}: reading remote shards needs fsspec: pip install 'ado[remote]'"
        ) from err
    try:
        options = _with_timeouts(scheme_of(url), dict(storage_options or {}), config)
        return url_to_fs(url, **options)  # type: ignore[no-any-return]
    except ImportError as err:
        extra = _EXTRAS.get(scheme_of(url), "remote")
        raise ShardError(
            f"{redact(url)}: the {scheme_of(url)}:// protocol needs its package: "
            f"pip install 'ado[{extra}]' ({type(err).__name__})"
        ) from None
    except (ValueError, TypeError) as err:
        raise ShardError(
            f"{redact(url)}: cannot use this URL: {scrub(str(err), [url], storage_options)}"
        ) from None


def read_bounded(
    fs: Any,
    path: str,
    out: IO[bytes],
    url: str,
    config: RemoteConfig,
    *,
    size: int | None,
    limit: int,
    what: str,
    cancelled: Callable[[], bool] | None = None,
) -> int:
    """Stream ``path`` into ``out`` and return the bytes written: at most ``limit`` bytes (one
    more is refused: ``TooLargeError``, nothing past the bound is kept), each read bounded by
    ``config.read_timeout_s`` (the protocol's socket timeout) and the whole attempt by
    :meth:`RemoteConfig.deadline` (a server that trickles bytes: ``TimeoutError``).

    ``size`` is the size the store announced (``None``: unknown); a body that runs past it is
    refused the same way. ``cancelled`` is asked after each read: ``True`` stops the transfer
    (``TransferCancelledError``). Never puts body bytes in an error."""
    bound = limit if size is None else min(size, limit)
    if scheme_of(url) in ("http", "https"):
        # one streaming GET, read as it arrives (a ranged read per block would re-request)
        chunk = 1 << 20
        f = fs.open(path, "rb", block_size=0)
    else:
        # object stores: one ranged GET per read, so large reads (a round trip per 16 MiB)
        chunk = 16 << 20
        f = fs.open(path, "rb", block_size=chunk, cache_type="none")
    with f:
        return _pump(f, out, url, config, chunk, bound, size, limit, what, cancelled)


def _pump(
    f: Any,
    out: IO[bytes],
    url: str,
    config: RemoteConfig,
    chunk: int,
    bound: int,
    size: int | None,
    limit: int,
    what: str,
    cancelled: Callable[[], bool] | None,
) -> int:
    """Copy ``f`` into ``out`` under the bounds of :func:`read_bounded` (``bound`` bytes at
    most: one byte more is asked for, to refuse a body that runs on; ``size``: announced,
    ``limit``: the caller's bound, for the messages)."""
    deadline = config.deadline(size)
    got = 0
    while True:
        data = f.read(min(chunk, bound + 1 - got))
        if not data:
            return got
        got += len(data)
        if got > bound:
            shown = redact(url)
            if size is not None and got > size:
                raise TooLargeError(
                    f"{shown}: {what} sent more than the {size} bytes announced; refused"
                )
            raise TooLargeError(f"{shown}: {what} is longer than {limit} bytes; refused")
        out.write(data)
        if cancelled is not None and cancelled():
            raise TransferCancelledError(f"{redact(url)}: {what} cancelled")
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{redact(url)}: {what} not done after {config.attempt_timeout_s:.1f} s "
                f"(+{config.min_bytes_per_s} B/s of its size): {got} bytes so far"
            )


class RangeNotServedError(ShardError):
    """A server answered a ranged GET with something else than the range asked for (it
    ignores ``Range`` and sends the whole object); never retried: read the whole object."""


_CONTENT_RANGE = re.compile(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)


def read_range(
    fs: Any,
    path: str,
    out: IO[bytes],
    url: str,
    config: RemoteConfig,
    *,
    start: int,
    end: int,
    total: int,
    what: str = "ranged read",
    cancelled: Callable[[], bool] | None = None,
) -> None:
    """Bytes ``[start, end)`` of the object ``path`` (of ``total`` bytes) into ``out``, by one
    ranged GET per 16 MiB (object stores) or one ranged streaming GET (HTTP), under the bounds
    of :func:`read_bounded`: the timeouts (HTTP: also the attempt deadline), ``end - start``
    bytes at most (a longer body is refused, on HTTP as it streams), a short body is a
    ``TransientError`` (retried by the caller).

    Raises:
        RangeNotServedError: The HTTP server answered with another status than 206 or another
            range (it sent the whole object): nothing past the first read is taken.
    """
    want = end - start
    if want <= 0:
        return
    if scheme_of(url) in ("http", "https"):
        headers = {**dict(getattr(fs, "kwargs", {}).get("headers") or {})}
        headers["Range"] = f"bytes={start}-{end - 1}"
        f = fs.open(path, "rb", block_size=0, size=total, headers=headers)
        response = getattr(f, "r", None)
        status = getattr(response, "status", None)
        given = getattr(response, "headers", {}).get("Content-Range", "")
        m = _CONTENT_RANGE.match(given or "")
        if status != 206 or m is None or (int(m[1]), int(m[2])) != (start, end - 1):
            f.close()
            raise RangeNotServedError(
                f"{redact(url)}: the server answered a ranged GET with status {status} "
                f"and Content-Range {given[:60]!r}, not bytes {start}-{end - 1}: it does not "
                "serve ranges"
            )
        with f:
            got = _pump(f, out, url, config, 1 << 20, want, want, want, what, cancelled)
    else:
        # object stores: one GET with a Range header (a store answers with the range only; the
        # body is checked against its length). Opening a file object instead costs a HEAD.
        got = 0
        for lo in range(start, end, 16 << 20):
            hi = min(end, lo + (16 << 20))
            data = fs.cat_file(path, start=lo, end=hi)
            if len(data) > hi - lo:
                raise TooLargeError(
                    f"{redact(url)}: {what} sent more than the {hi - lo} bytes asked for; refused"
                )
            out.write(data)
            got += len(data)
            if len(data) < hi - lo:
                break
            if cancelled is not None and cancelled():
                raise TransferCancelledError(f"{redact(url)}: {what} cancelled")
    if got != want:
        raise TransientError(f"{redact(url)}: {what} got {got} bytes of {want}")


def _status(err: BaseException) -> int | None:
    """An HTTP status carried by ``err`` or its causes (aiohttp, botocore, fsspec)."""
    seen: set[int] = set()
    cur: BaseException | None = err
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        for attr in ("status", "status_code", "code"):
            with warnings.catch_warnings():  # aiohttp deprecates ``code``
                warnings.simplefilter("ignore", DeprecationWarning)
                value = getattr(cur, attr, None)
            if isinstance(value, int) and 100 <= value < 600:
                return value
        response = getattr(cur, "response", None)
        if isinstance(response, Mapping):
            meta = response.get("ResponseMetadata", {})
            code = meta.get("HTTPStatusCode") if isinstance(meta, Mapping) else None
            if isinstance(code, int):
                return code
        cur = cur.__cause__ or cur.__context__
    return None


def _not_found_cause(err: FileNotFoundError) -> BaseException | None:
    """What really failed behind a ``FileNotFoundError`` (``None``: the object is missing).

    fsspec's HTTP file system reports any failed stat as ``FileNotFoundError`` (a 503, a
    redirect loop, a timeout): the cause decides, and only a 404/410 (or no cause) is a
    missing object."""
    seen: set[int] = set()
    cur: BaseException | None = err.__cause__ or err.__context__
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if not isinstance(cur, FileNotFoundError):
            status = _status(cur)
            return None if status in (404, 410) else cur
        cur = cur.__cause__ or cur.__context__
    return None


_TRANSIENT_NAMES = (
    "Timeout",
    "Connection",
    "Disconnected",
    "Payload",
    "IncompleteRead",
    "ResponseStreaming",
    "ProtocolError",
    "Reset",
    "BrokenPipe",
)


class TransferCancelledError(ShardError):
    """A transfer stopped because its reader gave up on it (Ctrl-C in the loader); never
    retried."""


class TransientError(OSError):
    """A transfer that may succeed when tried again (short body, checksum mismatch)."""


def is_transient(err: BaseException) -> bool:
    """Whether a failed transfer is worth retrying: timeouts, 5xx, 429, dropped connections,
    short or corrupt bodies. A missing object or a refused permission is not."""
    if isinstance(err, FileNotFoundError | PermissionError | IsADirectoryError | ShardError):
        return False
    if isinstance(err, TransientError | TimeoutError | ConnectionError | EOFError):
        return True
    names = [c.__name__ for c in type(err).__mro__]
    if any(t in n for n in names for t in _TRANSIENT_NAMES):
        return True
    status = _status(err)
    return status is not None and (status in (408, 429) or (status >= 500 and status != 501))


def with_retries(
    action: Callable[[], T],
    url: str,
    what: str,
    config: RemoteConfig,
    storage_options: Mapping[str, Any] | None = None,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``action`` until it succeeds, retrying transient failures with exponential back-off
    and full jitter, at most ``config.retries`` attempts.

    Raises:
        ShardError: Attempts exhausted, or a permanent failure; names the (redacted) URL, the
            attempts and the last error, never a credential.
        ShardNotFoundError: The object does not exist (also a ``FileNotFoundError``).
    """
    rng = random.Random()
    last: BaseException | None = None
    for attempt in range(1, config.retries + 1):
        try:
            return action()
        except FileNotFoundError as err:
            cause = _not_found_cause(err)
            if cause is None:
                raise ShardNotFoundError(
                    errno.ENOENT, f"{what} failed: no such object", redact(url)
                ) from None
            # fsspec's HTTP stat turns every failure into FileNotFoundError: judge the cause
            last = cause
            if not is_transient(cause):
                raise ShardError(
                    f"{redact(url)}: {what} failed: {type(cause).__name__}: "
                    f"{scrub(str(cause), [url], storage_options)}"
                ) from None
        except ShardError:
            raise
        except Exception as err:
            last = err
            if not is_transient(err):
                raise ShardError(
                    f"{redact(url)}: {what} failed: {type(err).__name__}: "
                    f"{scrub(str(err), [url], storage_options)}"
                ) from None
        if attempt == config.retries:
            break
        delay = rng.uniform(0.0, min(config.backoff_max_s, config.backoff_s * 2 ** (attempt - 1)))
        logger.info(
            "%s: %s failed (attempt %d of %d: %s); retrying in %.2f s",
            redact(url),
            what,
            attempt,
            config.retries,
            type(last).__name__,
            delay,
        )
        sleep(delay)
    assert last is not None
    raise RetryBudgetError(
        f"{redact(url)}: {what} failed after {config.retries} attempts; last error: "
        f"{type(last).__name__}: {scrub(str(last), [url], storage_options)}"
    ) from None


def expand_remote(
    pattern: str,
    storage_options: Mapping[str, Any] | None = None,
    config: RemoteConfig | None = None,
) -> list[str]:
    """Expand a remote shard pattern: braces without any listing; globs by listing each prefix
    once (one ``find`` per distinct folder before the first glob character).

    Raises:
        ShardError: A glob that matches nothing, or a glob on a store that cannot list (HTTP).
    """
    config = config or RemoteConfig()
    names = brace_names(pattern, redact(pattern))
    out: list[str] = []
    listings: dict[str, list[str]] = {}
    for name in names:
        if not (_GLOB_CHARS & set(urlsplit(name).path)):
            out.append(name)
            continue
        scheme = scheme_of(name)
        if scheme in ("http", "https"):
            raise ShardError(
                f"{redact(name)}: HTTP cannot list a folder; name the shards with a brace "
                "pattern (shard-{000..099}.tar)"
            )
        cut = min(name.find(c) for c in _GLOB_CHARS if c in name)
        prefix = name[: name.rfind("/", 0, cut) + 1]
        if prefix not in listings:
            fs, root = filesystem(prefix, storage_options)

            def find(fs: Any = fs, root: str = root) -> list[str]:
                return list(fs.find(root))

            found = with_retries(find, prefix, "listing", config, storage_options)
            protocol = scheme + "://"
            listings[prefix] = sorted(
                p if p.startswith(protocol) else protocol + p.lstrip("/") for p in found
            )
        matches = [p for p in listings[prefix] if fnmatch.fnmatchcase(p, name)]
        if not matches:
            raise ShardError(f"{redact(name)}: no object matches this pattern")
        out.extend(matches)
    return out
