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
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field

from ado.data._braces import brace_names
from ado.errors import ShardError, ShardNotFoundError

__all__ = [
    "REMOTE_SCHEMES",
    "RemoteConfig",
    "expand_remote",
    "filesystem",
    "is_remote",
    "redact",
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
        prefetch_threads: Background download threads.
        wait_s: How long a reader waits for room in the cache (other processes hold the space)
            before it gives up with a ``ShardError``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    retries: int = Field(default=5, ge=1, le=100)
    backoff_s: float = Field(default=0.2, ge=0.0, le=60.0)
    backoff_max_s: float = Field(default=10.0, ge=0.0, le=600.0)
    prefetch_shards: int = Field(default=8, ge=0, le=4096)
    prefetch_bytes: int = Field(default=4 << 30, ge=0)
    prefetch_threads: int = Field(default=4, ge=1, le=64)
    wait_s: float = Field(default=600.0, ge=0.0)


def scheme_of(url: str) -> str:
    """The lower-cased scheme of ``url`` ('' for a plain path)."""
    head, sep, _ = url.partition("://")
    return head.lower() if sep and head.isascii() and head.replace("+", "").isalnum() else ""


def is_remote(url: str) -> bool:
    """Whether ``url`` names a remote shard (a scheme of :data:`REMOTE_SCHEMES`)."""
    return scheme_of(url) in REMOTE_SCHEMES


def redact(url: str) -> str:
    """``url`` without what may be a secret: the user-info part and the query (presigned URLs
    carry their signature there) are replaced by ``***``. Works on malformed URLs too (a
    password with an unescaped ``/`` or ``@``): everything before the last ``@`` of the part
    ahead of the query counts as user-info."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    rest, qsep, _ = rest.partition("?")
    rest = rest.partition("#")[0]
    if "@" in rest:
        rest = "***@" + rest.rsplit("@", 1)[1]
    return f"{scheme}://{rest}" + ("?***" if qsep else "")


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


def scrub(
    text: str, urls: Sequence[str] = (), storage_options: Mapping[str, Any] | None = None
) -> str:
    """``text`` with each of ``urls`` redacted and every ``storage_options`` value masked."""
    for url in urls:
        if not url:
            continue
        text = text.replace(url, redact(url))
        # Libraries quote URLs their own way (without the user-info, re-encoded): mask the
        # secret-bearing parts wherever they appear.
        rest = url.partition("://")[2]
        rest, _, query = rest.partition("?")
        userinfo = rest.rsplit("@", 1)[0] if "@" in rest else ""
        for part in (query.partition("#")[0], userinfo):
            for form in {part, unquote(part)}:
                if len(form) >= 4:
                    text = text.replace(form, "***")
    for secret in _secret_values(storage_options):
        text = text.replace(secret, "***")
    return text


def filesystem(url: str, storage_options: Mapping[str, Any] | None = None) -> tuple[Any, str]:
    """The fsspec file system of ``url`` and the path inside it.

    Raises:
        ShardError: The protocol's package is not installed (names the extra to install).
    """
    try:
        from fsspec.core import url_to_fs  # type: ignore[import-untyped]
    except ImportError as err:  # pragma: no cover - fsspec is a dependency of the extras
        raise ShardError(
            f"{redact(url)}: reading remote shards needs fsspec: pip install 'ado[remote]'"
        ) from err
    try:
        return url_to_fs(url, **dict(storage_options or {}))  # type: ignore[no-any-return]
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


def _status(err: BaseException) -> int | None:
    """An HTTP status carried by ``err`` or its causes (aiohttp, botocore, fsspec)."""
    seen: set[int] = set()
    cur: BaseException | None = err
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        for attr in ("status", "status_code", "code"):
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
    return status is not None and (status in (408, 429) or status >= 500)


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
        except FileNotFoundError:
            raise ShardNotFoundError(
                errno.ENOENT, f"{what} failed: no such object", redact(url)
            ) from None
        except Exception as err:
            last = err
            if not is_transient(err):
                raise ShardError(
                    f"{redact(url)}: {what} failed: {type(err).__name__}: "
                    f"{scrub(str(err), [url], storage_options)}"
                ) from None
            if attempt == config.retries:
                break
            delay = rng.uniform(
                0.0, min(config.backoff_max_s, config.backoff_s * 2 ** (attempt - 1))
            )
            logger.info(
                "%s: %s failed (attempt %d of %d: %s); retrying in %.2f s",
                redact(url),
                what,
                attempt,
                config.retries,
                type(err).__name__,
                delay,
            )
            sleep(delay)
    assert last is not None
    raise ShardError(
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
