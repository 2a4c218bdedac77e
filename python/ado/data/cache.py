"""The node-local cache of remote shards, and the schedule-aware prefetch that fills it.

Layout under the cache root (one per node, shared by every rank and process on it)::

    shards/<h>-<name>    whole shards, checked against their index (size, xxh3) before use
    index/<h>.adoidx     the index of each remote shard (its sidecar, or one indexing pass)
    locks/<h>.lock       one lock file per shard (flock: exclusive to download, shared in use)
    tmp/                 downloads and index writes in progress (``.dl-<pid>-<random>``,
                         ``.idx-<pid>-<random>``, flock'd by their owner, renamed into place)
                         and byte reservations (``<h>.res``); a dead process's are reclaimed

``<h>`` is a hash of the shard's URL. A shard is downloaded by one process while the others wait
on its lock, then read by all. With ``cache_limit`` set, the least recently used shards are
evicted to make room, but never one that a reader holds (a shared lock): eviction takes the
lock exclusively without waiting and skips what it cannot take.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import io
import json
import logging
import os
import queue
import re
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ado._core import check_tiling, decode_index, file_hash, index_file
from ado.data.fetch import RemoteObject, remote_object
from ado.data.remote import (
    RangeNotServedError,
    RemoteConfig,
    TransferCancelledError,
    TransientError,
    filesystem,
    redact,
    scrub,
    with_retries,
)
from ado.errors import InvalidInputError, RetryBudgetError, ShardError, ShardNotFoundError

__all__ = ["CacheStats", "Prefetcher", "ShardCache", "check_cache_limit", "coalesce"]

logger = logging.getLogger(__name__)

_SIDECAR = ".adoidx"


def _store_md5(info: Mapping[str, Any]) -> str | None:
    """The MD5 (hex) a store reports for an object, if it reports one."""
    content_md5 = info.get("Content-MD5")
    if isinstance(content_md5, str):
        with contextlib.suppress(ValueError):
            raw = base64.b64decode(content_md5, validate=True)
            if len(raw) == 16:
                return raw.hex()
    for key in ("ETag", "etag", "ETAG"):
        etag = info.get(key)
        if isinstance(etag, str):
            tag = etag.removeprefix("W/").strip('"').lower()
            if re.fullmatch(r"[0-9a-f]{32}", tag):
                return tag
    return None


# What a store says about an object that changes when the object is replaced (s3fs, fsspec's
# HTTP, gcsfs, adlfs spell them their own way).
_IDENTITY_KEYS = (
    "size",
    "ETag",
    "etag",
    "VersionId",
    "version_id",
    "generation",
    "Last-Modified",
    "LastModified",
    "last_modified",
    "updated",
    "mtime",
)

# Fields of an index summary that a sidecar must share with the index of the shard itself.
_SUMMARY_KEYS = (
    "samples",
    "members",
    "file_size",
    "bytes_read",
    "header_hash",
    "content_hash",
    "exts",
)


def _identity(info: Mapping[str, Any]) -> dict[str, str]:
    """The parts of a store's answer about an object that change when it is replaced."""
    return {k: str(info[k]) for k in _IDENTITY_KEYS if info.get(k) is not None}


def _md5_file(path: str) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# Lock descriptors (flock) open in this process. A forked child inherits them, and a flock lives
# as long as any copy of its descriptor: the child would pin shards (and reservations) its parent
# released. So the child closes its copies at once (the parent keeps its locks), and forks wait
# while a descriptor is being opened or closed so that none escapes the registry.
# The locks here are re-entrant: any allocation may run the garbage collector, which may free a
# loader, whose core then releases its shards (``ShardCache.release``) in the same thread.
_FDS: set[int] = set()
_FDS_LOCK = threading.RLock()
_CACHES: weakref.WeakSet[ShardCache] = weakref.WeakSet()


def _open_fd(path: Path, flags: int, mode: int = 0o644) -> int:
    """``os.open`` of a lock or reservation file, registered (closed in forked children)."""
    name = os.fspath(path)  # outside the lock: as little as possible runs under it
    with _FDS_LOCK:
        fd = os.open(name, flags | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
        _FDS.add(fd)
    return fd


def _close_fd(fd: int) -> None:
    """Close a descriptor of :func:`_open_fd`."""
    with _FDS_LOCK:
        _FDS.discard(fd)
        os.close(fd)


def _flock(fd: int, op: int, wait: bool) -> bool:
    """``flock(fd, op)``; without ``wait``, ``False`` at once when the lock is taken."""
    if wait:
        fcntl.flock(fd, op)
        return True
    try:
        fcntl.flock(fd, op | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _after_fork_in_child() -> None:
    global _FDS_LOCK
    _FDS_LOCK = threading.RLock()
    for fd in _FDS:
        with contextlib.suppress(OSError):
            os.close(fd)
    _FDS.clear()
    for cache in list(_CACHES):
        cache._forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=lambda: _FDS_LOCK.acquire(),
        after_in_parent=lambda: _FDS_LOCK.release(),
        after_in_child=_after_fork_in_child,
    )


_TMP_PREFIXES = (".dl-", ".idx-")


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (on this node)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _key(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:24]


def _safe_name(url: str) -> str:
    base = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return re.sub(r"[^A-Za-z0-9._-]", "_", base)[-80:] or "shard"


class CacheStats:
    """Counters of one :class:`ShardCache` (this process): downloads, bytes, hits, evictions."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.downloads = 0
        self.bytes_downloaded = 0
        self.hits = 0
        self.evictions = 0
        self.retried = 0
        self.range_gets = 0

    def as_dict(self) -> dict[str, int]:
        """A snapshot."""
        with self.lock:
            return {
                "downloads": self.downloads,
                "bytes_downloaded": self.bytes_downloaded,
                "hits": self.hits,
                "evictions": self.evictions,
                "retried": self.retried,
                "range_gets": self.range_gets,
            }


def check_cache_limit(limit: int | None) -> None:
    """The one check of ``cache_limit`` (the loader's and the cache's).

    Raises:
        InvalidInputError: not ``None`` and not an integer >= 1.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InvalidInputError(f"cache_limit must be >= 1 byte or None, got {limit!r}")


class ShardCache:
    """Whole remote shards in a node-local folder with a byte budget.

    Args:
        root: The cache folder (created).
        limit: Byte budget of ``shards/`` (``None``: unbounded).
        storage_options: Passed to fsspec (credentials, endpoints); never logged or shown.
        config: Retry, prefetch and waiting settings.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        limit: int | None = None,
        storage_options: Mapping[str, Any] | None = None,
        config: RemoteConfig | None = None,
    ) -> None:
        check_cache_limit(limit)
        self.root = Path(root)
        self.limit = limit
        self.storage_options = dict(storage_options or {})
        self.config = config or RemoteConfig()
        for sub in ("shards", "index", "locks", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.reclaim_orphans()
        self.stats = CacheStats()
        # url -> (size, content hash) from its index; url -> lock fds held by readers
        self._expect: dict[str, tuple[int, str]] = {}
        self._held: dict[str, list[int]] = {}
        self._mutex = threading.RLock()  # re-entrant: see _FDS_LOCK
        # Short names handed to the core (no credentials) -> real URLs.
        self._real: dict[str, str] = {}
        # url -> what the store said about it at loader build (stat answer)
        self._info: dict[str, dict[str, Any]] = {}
        # url -> index summary taken from a sidecar, not yet checked against the shard itself
        self._unverified: dict[str, dict[str, object]] = {}
        # urls whose cached copy this process has checked against its index's hash
        self._checked: set[str] = set()
        #: Set when Ctrl-C interrupted :meth:`acquire` (the core reports it as a ShardError).
        self.interrupted = False
        # threads in a download -> whether it was cancelled (see cancel_downloads)
        self._downloading: dict[int, bool] = {}
        # urls whose server answered a ranged GET with the whole object (read whole from then)
        self._no_ranges: set[str] = set()
        self._samples: dict[str, int] = {}  # url -> samples, by its index
        self._range_pool: ThreadPoolExecutor | None = None
        self._range_pid = 0
        self._ob_pool: ThreadPoolExecutor | None = None
        self._ob_pid = 0
        _CACHES.add(self)

    # -- names ------------------------------------------------------------------------------
    def entry(self, url: str) -> Path:
        """Where the cached copy of ``url`` lives."""
        return self.root / "shards" / f"{_key(url)}-{_safe_name(url)}"

    def _lock_path(self, url: str, kind: str = "") -> Path:
        return self.root / "locks" / f"{_key(url)}{kind}.lock"

    def name_for(self, url: str) -> str:
        """The credential-free name of ``url`` used in the core and in messages."""
        name = redact(url)
        with self._mutex:
            base, n = name, 1
            while self._real.get(name, url) != url:
                n += 1
                name = f"{base}#{n}"
            self._real[name] = url
        return name

    def real_url(self, name: str) -> str:
        """The URL behind a name from :meth:`name_for`."""
        return self._real.get(name, name)

    # -- locks --------------------------------------------------------------------------------
    def _open_lock(self, path: Path) -> int:
        return _open_fd(path, os.O_RDWR | os.O_CREAT)

    def _forked(self) -> None:
        """In a forked child: the inherited holds are gone (closed by the fork handler)."""
        self._held = {}
        self._mutex = threading.RLock()  # re-entrant: see _FDS_LOCK
        self.stats.lock = threading.Lock()
        self._range_pool = None  # the parent's threads are not here
        self._ob_pool = None

    @contextlib.contextmanager
    def _exclusive(self, path: Path) -> Any:
        fd = self._open_lock(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd
        finally:
            _close_fd(fd)

    # -- private temp files -----------------------------------------------------------------
    def _private_tmp(self, prefix: str) -> tuple[int, str]:
        """A new file ``tmp/<prefix><pid>-<random>``, flock'd by this process until the returned
        descriptor is closed: a process killed mid-download leaves a temp file whose lock is
        free and whose owner is gone, and the next process reclaims it."""
        while True:
            path = self.root / "tmp" / f"{prefix}{os.getpid()}-{secrets.token_hex(8)}"
            try:
                fd = _open_fd(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue
            fcntl.flock(fd, fcntl.LOCK_EX)
            return fd, str(path)

    def reclaim_orphans(self) -> int:
        """Delete the temp files (downloads, index writes) of processes that died: their lock is
        free and their owner's pid is gone. Returns the bytes reclaimed. Runs when a cache is
        opened and before every budget check, so orphans never outlive the next download."""
        freed = 0
        for p in (self.root / "tmp").iterdir():
            prefix = next((x for x in _TMP_PREFIXES if p.name.startswith(x)), None)
            if prefix is None:
                continue
            owner = p.name[len(prefix) :].split("-", 1)[0]
            if not owner.isdigit() or _alive(int(owner)):
                continue  # not ours to judge, or a live owner (this spares our own files too)
            try:
                fd = _open_fd(p, os.O_RDONLY)
            except (FileNotFoundError, PermissionError):
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                size = os.fstat(fd).st_size
                p.unlink()
                freed += size
                logger.debug("cache: reclaimed %s (%d bytes) of a dead process", p.name, size)
            except (BlockingIOError, FileNotFoundError):
                pass
            finally:
                _close_fd(fd)
        return freed

    # -- budget -------------------------------------------------------------------------------
    def used_bytes(self) -> int:
        """Bytes of complete shards in the cache (every process's)."""
        total = 0
        for p in (self.root / "shards").iterdir():
            with contextlib.suppress(FileNotFoundError):
                total += p.stat().st_size
        return total

    def _used(self) -> tuple[int, list[tuple[int, int, Path]]]:
        """Bytes of complete shards plus live reservations, and the shards (mtime, size, path).
        A reservation whose owner died (its lock is free) is removed.

        Reservations are counted before the shards: a download renames its shard into place
        and only then drops its reservation, without the budget lock, so counted in this order
        it is seen at least once (twice at worst, which only delays another download); counted
        the other way round it could slip between the two listings and the budget overshoot."""
        used = 0
        for res in (self.root / "tmp").glob("*.res"):
            try:
                fd = _open_fd(res, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                used += os.fstat(fd).st_size  # a download in progress
            else:
                with contextlib.suppress(FileNotFoundError):
                    res.unlink()  # left by a process that died
            finally:
                _close_fd(fd)
        entries = []
        for p in (self.root / "shards").iterdir():
            with contextlib.suppress(FileNotFoundError):
                st = p.stat()
                entries.append((st.st_mtime_ns, st.st_size, p))
        return used + sum(e[1] for e in entries), entries

    def _reserve(self, url: str, need: int, *, wait: bool) -> int | None:
        """Reserve ``need`` bytes of the budget for a download of ``url``, evicting least
        recently used shards no reader holds. Returns the reservation's fd (-1: no budget),
        or ``None`` when ``wait`` is false and there is no room now. Accounting and eviction
        happen under one node-wide lock, so concurrent downloads never overshoot the budget."""
        if self.limit is None:
            return -1
        if need > self.limit:
            raise ShardError(
                f"cache_limit {self.limit} bytes cannot hold one shard of {need} bytes"
            )
        deadline = time.monotonic() + (self.config.wait_s if wait else 0.0)
        while True:
            with self._exclusive(self.root / "locks" / "budget.lock"):
                self.reclaim_orphans()  # the dead's temp files go before anything is counted
                used, entries = self._used()
                for _, size, p in sorted(entries):
                    if used + need <= self.limit:
                        break
                    if self._evict(p):
                        used -= size
                if used + need <= self.limit:
                    res = self.root / "tmp" / f"{_key(url)}.res"
                    with contextlib.suppress(FileNotFoundError):
                        res.unlink()  # ours from an attempt that failed (we hold the url lock)
                    fd = _open_fd(res, os.O_RDWR | os.O_CREAT | os.O_EXCL)
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    os.ftruncate(fd, need)  # sparse: counts in the budget, takes no space
                    return fd
            if time.monotonic() >= deadline:
                if not wait:
                    return None
                raise ShardError(
                    f"cache_limit {self.limit} bytes cannot hold {need} more: {used} bytes are "
                    f"held by readers; raise cache_limit or lower prefetch_bytes"
                )
            time.sleep(0.05)

    def _unreserve(self, url: str, fd: int) -> None:
        if fd >= 0:
            with contextlib.suppress(FileNotFoundError):
                (self.root / "tmp" / f"{_key(url)}.res").unlink()
            _close_fd(fd)

    def _evict(self, p: Path) -> bool:
        """Delete one cached shard unless a reader holds it (or it is being downloaded)."""
        url_key = p.name.split("-", 1)[0]
        fd = self._open_lock(self.root / "locks" / f"{url_key}.lock")
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # in use: never evicted
            try:
                p.unlink()
            except FileNotFoundError:
                return False
            with self.stats.lock:
                self.stats.evictions += 1
            logger.debug("cache: evicted %s", p.name)
            return True
        finally:
            _close_fd(fd)

    # -- downloads ----------------------------------------------------------------------------
    def _stat(self, url: str) -> dict[str, Any]:
        """What the store says about ``url`` (size, ETag, version...), asked once (retried)."""
        info = self._info.get(url)
        if info is None:
            obj = self.remote(url)
            info = with_retries(obj.info, url, "stat", self.config, self.storage_options)
            self._info[url] = info
        return info

    def remote(self, url: str) -> RemoteObject:
        """``url`` through the client ``config.client`` picks (:mod:`ado.data.fetch`)."""
        return remote_object(url, self.storage_options, self.config, self._obstore_pool)

    def _download(self, url: str, size: int | None, digest: str | None, *, wait: bool) -> bool:
        """Download ``url`` into its entry (caller holds its lock exclusively). The copy is
        checked against ``size`` and ``digest`` (when known); a copy that disagrees is discarded
        and fetched again, never served. The transfer is bounded: by the size (a body longer
        than announced is refused as it streams), by ``cache_limit`` and by the timeouts of
        :class:`RemoteConfig`."""
        obj = self.remote(url)
        md5: str | None = None
        if size is None or digest is None:
            # No index yet (the indexing pass): the store's own MD5 (an S3 single-part ETag,
            # an HTTP Content-MD5 or MD5 ETag) is what a copy can be checked against.
            info = self._stat(url)
            size = size or int(info.get("size") or 0) or None
            md5 = _store_md5(info)
        reservation = self._reserve(url, size or 0, wait=wait)
        if reservation is None:
            return False
        name = redact(url)
        limit = min(self.config.max_shard_bytes, self.limit or self.config.max_shard_bytes)
        cancelled = self._cancel_flag()

        def attempt() -> None:
            if cancelled():
                raise TransferCancelledError(f"{name}: download cancelled")
            fd, tmp = self._private_tmp(".dl-")
            try:
                with open(fd, "wb", closefd=False) as out:  # fd keeps the temp file's lock
                    obj.read(out, size=size, limit=limit, what="download", cancelled=cancelled)
                got, h = file_hash(tmp)
                if size is not None and got != size:
                    raise TransientError(f"{name}: got {got} bytes, expected {size}")
                if digest is not None and h != digest:
                    raise TransientError(
                        f"{name}: content hash {h} disagrees with its index ({digest})"
                    )
                if digest is None and md5 is not None and _md5_file(tmp) != md5:
                    raise TransientError(f"{name}: MD5 disagrees with the store's checksum")
                if url in self._unverified:
                    self._verify_sidecar(url, tmp)
                os.replace(tmp, self.entry(url))
                self._checked.add(url)
                with self.stats.lock:
                    self.stats.downloads += 1
                    self.stats.bytes_downloaded += got
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                with self.stats.lock:
                    self.stats.retried += 1
                raise
            finally:
                _close_fd(fd)  # its lock marked the temp file as ours while it existed

        try:
            with self._transfer():
                with_retries(attempt, url, "download", self.config, self.storage_options)
        finally:
            self._unreserve(url, reservation)
        return True

    def _cancel_flag(self) -> Callable[[], bool]:
        """Whether this thread's transfer was cancelled (:meth:`cancel_downloads`)."""
        me = threading.get_ident()

        def cancelled() -> bool:
            with self._mutex:
                return self._downloading.get(me, False)

        return cancelled

    @contextlib.contextmanager
    def _transfer(self) -> Iterator[None]:
        """This thread runs a transfer that :meth:`cancel_downloads` may cancel."""
        me = threading.get_ident()
        with self._mutex:
            self._downloading[me] = False
        try:
            yield
        finally:
            with self._mutex:
                self._downloading.pop(me, None)

    def cancel_downloads(self) -> int:
        """Cancel the downloads other threads of this process are running now (the loader
        calls it on Ctrl-C, for the read-ahead threads it no longer waits for): each stops at
        its next read or before its next attempt (a read blocked in the network ends at its
        read timeout) with ``TransferCancelledError``, releasing the shard's lock, so the
        resumed loader downloads the shard afresh. Returns how many were cancelled."""
        me = threading.get_ident()
        with self._mutex:
            others = [t for t in self._downloading if t != me]
            for t in others:
                self._downloading[t] = True
        return len(others)

    def _verify_sidecar(self, url: str, copy: str) -> None:
        """Check the index taken from ``url``'s sidecar against the downloaded shard itself
        (sample and member counts, header hash, extensions). A sidecar that does not describe
        the shard (it lists some samples only, or was built from another object) is not
        trusted: the node's copy of the index is rebuilt from the shard, and this run, planned
        on the wrong index, stops with a ``ShardError``."""
        claimed = self._unverified[url]
        data = index_file(copy)
        actual = decode_index(data, redact(url))
        diff = [k for k in _SUMMARY_KEYS if claimed.get(k) != actual.get(k)]
        if not diff:
            del self._unverified[url]
            return
        self._store_index(url, data)
        raise ShardError(
            f"{redact(url)}: its sidecar index does not describe the shard ("
            + ", ".join(f"{k}: sidecar {claimed.get(k)!r}, shard {actual.get(k)!r}" for k in diff)
            + "); it is not trusted: this node now uses an index built from the shard. "
            "Restart the loader, and rebuild the sidecar with `ado shards index --force`"
        )

    def _valid(self, url: str) -> bool:
        """Whether the cached copy of ``url`` is there and of its index's size; the first time
        in this process also whether its bytes hash to the index (a copy damaged on disk is
        then fetched again instead of failing every run)."""
        expect = self._expect.get(url)
        try:
            st = self.entry(url).stat()
        except FileNotFoundError:
            return False
        if expect is None:
            return True
        if st.st_size != expect[0]:
            return False
        if url not in self._checked:
            try:
                _, h = file_hash(str(self.entry(url)))
            except ShardError:
                return False
            if h != expect[1]:
                logger.warning("cache: %s does not match its index; fetching it again", redact(url))
                return False
            self._checked.add(url)
        return True

    def ensure(self, url: str, *, hold: bool = False, wait: bool = True) -> bool:
        """Make sure the checked copy of ``url`` is in the cache (downloading it once per node;
        concurrent callers wait). With ``hold``, keep a shared lock (see :meth:`acquire`).

        Returns ``False`` only when ``wait`` is false and the cache has no room now, or the
        shard's lock is taken (a reader holds it, or another thread or process is fetching it):
        a prefetch never waits, so no background thread can block (or keep a process from
        exiting) on a lock whose holder needs that process to move on.
        """
        lock = self._lock_path(url)
        fd = self._open_lock(lock)
        try:
            while True:
                if not _flock(fd, fcntl.LOCK_SH, wait):
                    _close_fd(fd)
                    return False
                if self._valid(url):
                    with contextlib.suppress(FileNotFoundError):
                        os.utime(self.entry(url))  # least recently used = oldest mtime
                    with self.stats.lock:
                        self.stats.hits += 1
                    break
                if not _flock(fd, fcntl.LOCK_EX, wait):
                    _close_fd(fd)
                    return False
                if self._valid(url):
                    continue
                size, digest = self._expect.get(url, (None, None))
                if not self._download(url, size, digest, wait=wait):
                    _close_fd(fd)
                    return False
                # downgrade and re-check: an evictor may slip in between (then loop)
        except BaseException:
            _close_fd(fd)
            raise
        if hold:
            with self._mutex:
                self._held.setdefault(url, []).append(fd)
        else:
            _close_fd(fd)
        return True

    def acquire(self, name: str) -> str:
        """The local path of a remote shard, downloaded if needed, held (never evicted) until
        :meth:`release`. Called by the loader core from its read threads."""
        url = self.real_url(name)
        try:
            self.ensure(url, hold=True)
        except KeyboardInterrupt:
            # the core turns every error of this call into a ShardError: leave a mark so the
            # loader raises KeyboardInterrupt again (see MixtureLoader.__next__)
            self.interrupted = True
            raise
        return str(self.entry(url))

    def release(self, name: str) -> None:
        """Drop one hold of :meth:`acquire`."""
        url = self.real_url(name)
        with self._mutex:
            fds = self._held.get(url)
            fd = fds.pop() if fds else None
        if fd is not None:
            _close_fd(fd)

    # -- ranged reads --------------------------------------------------------------------------
    def read_ranges(self, name: str, ranges: Sequence[tuple[int, int]]) -> list[bytes] | None:
        """The bytes of ``ranges`` (``[start, end)``) of a remote shard, by ranged GETs, or
        ``None`` when the reader should read the whole shard instead (:meth:`acquire`): with
        ``reads="whole"``, when a whole copy is in the cache, when ``reads="auto"`` and the
        shard is small or nothing downloads it whole (no prefetch), or when its server does not
        serve ranges. Called by the loader core from its read threads (the samples a stream
        reads next), with no lock of the core held.

        Ranges closer than ``range_gap_bytes`` are fetched by one GET; the GETs run
        ``range_threads`` at a time, each with the timeouts, size bound and retry budget of a
        download (:func:`~ado.data.remote.read_range`). Nothing is written to the cache: the
        reader checks each sample against its index's hashes."""
        url = self.real_url(name)
        cfg = self.config
        expect = self._expect.get(url)
        if cfg.reads == "whole" or expect is None or url in self._no_ranges:
            return None
        size = expect[0]
        if cfg.reads == "auto" and not self.ranged_pays(url):
            return None
        try:
            if self.entry(url).stat().st_size == size:
                return None  # cached whole: read from the cache
        except FileNotFoundError:
            pass
        for start, end in ranges:
            if not 0 <= start <= end <= size:
                raise ShardError(f"{redact(url)}: range {start}-{end} outside its {size} bytes")
        try:
            if url in self._unverified and not self._tiles(url, size):
                return None  # the whole shard is read, and the sidecar checked against it
            return self._read_ranges(url, ranges, size)
        except RangeNotServedError as err:
            logger.warning("%s; reading it whole", self.describe(str(err)))
            self._no_ranges.add(url)
            return None
        except KeyboardInterrupt:
            self.interrupted = True  # see acquire
            raise

    def ranged_pays(self, url: str) -> bool:
        """Whether ``reads="auto"`` reads ``url`` by ranges while it is not cached (after
        :meth:`index`): a shard of at least ``ranged_min_bytes`` whose samples average at least
        ``ranged_min_sample_bytes`` (a GET per sample must carry enough to pay for itself),
        with a prefetch that downloads it whole meanwhile."""
        cfg = self.config
        size, samples = self._expect[url][0], self._samples.get(url, 0)
        return (
            cfg.prefetch_bytes > 0
            and size >= cfg.ranged_min_bytes
            and size >= cfg.ranged_min_sample_bytes * max(1, samples)
        )

    def _tiles(self, url: str, size: int) -> bool:
        """Whether the sidecar index of ``url`` (not checked against the shard: it was never
        downloaded whole) tiles the archive, read by ranged GETs (a plain ustar shard: the
        tar header after its last member). Each sample a ranged read yields is checked against
        the index's hashes; this check adds that no sample was left out of the index. ``True``:
        the index is trusted from now on in this process."""
        data = self._index_path(url).read_bytes()
        start, body, gets = 0, b"", 0  # the last bytes read, where they start; GETs so far

        def read(offset: int, length: int) -> bytes:
            nonlocal start, body, gets
            if not start <= offset <= offset + length <= start + len(body):
                end = min(size, offset + max(length, 1 << 20))
                if offset >= end:
                    return b""
                gets += 1
                if gets > _TILING_GETS:
                    raise _TooManyGets
                start, body = offset, self._read_ranges(url, [(offset, end)], size)[0]
            return body[offset - start : offset - start + length]

        try:
            why = check_tiling(data, redact(url), read)
        except _TooManyGets:
            logger.info(
                "%s: checking its sidecar by ranged reads takes more than %d GETs (records "
                "between its members); reading it whole",
                redact(url),
                _TILING_GETS,
            )
            return False
        if why is None:
            self._unverified.pop(url, None)
            return True
        logger.warning(
            "%s: its sidecar index does not describe the shard (%s); reading it whole",
            redact(url),
            why,
        )
        return False

    def _read_ranges(self, url: str, ranges: Sequence[tuple[int, int]], size: int) -> list[bytes]:
        groups = coalesce(ranges, self.config.range_gap_bytes)
        obj = self.remote(url)

        def get(lo: int, hi: int) -> bytes:
            cancelled = self._cancel_flag()

            def attempt() -> bytes:
                if cancelled():
                    raise TransferCancelledError(f"{redact(url)}: ranged read cancelled")
                buf = io.BytesIO()
                obj.read_range(buf, start=lo, end=hi, total=size, cancelled=cancelled)
                with self.stats.lock:
                    self.stats.range_gets += 1
                    self.stats.bytes_downloaded += hi - lo
                return buf.getvalue()

            with self._transfer():
                return with_retries(attempt, url, "ranged read", self.config, self.storage_options)

        if len(groups) == 1:
            bodies = [get(groups[0][0], groups[0][1])]
        else:
            pool = self._ranges_pool()
            futures = [pool.submit(get, lo, hi) for lo, hi, _ in groups]
            bodies = [f.result() for f in futures]
        out: list[bytes] = [b""] * len(ranges)
        for (lo, _, members), body in zip(groups, bodies, strict=True):
            view = memoryview(body)
            for i in members:
                out[i] = bytes(view[ranges[i][0] - lo : ranges[i][1] - lo])
        return out

    def _ranges_pool(self) -> ThreadPoolExecutor:
        """The threads of ranged GETs (made in this process at first use; closed by close())."""
        with self._mutex:
            if self._range_pool is None or self._range_pid != os.getpid():
                self._range_pool = ThreadPoolExecutor(
                    max_workers=self.config.range_threads, thread_name_prefix="ado-range"
                )
                self._range_pid = os.getpid()
            return self._range_pool

    def _obstore_pool(self) -> ThreadPoolExecutor:
        """The threads that run obstore's blocking calls for this cache (made in this process
        at first use; closed by close())."""
        with self._mutex:
            if self._ob_pool is None or self._ob_pid != os.getpid():
                self._ob_pool = ThreadPoolExecutor(
                    max_workers=64, thread_name_prefix="ado-obstore"
                )
                self._ob_pid = os.getpid()
            return self._ob_pool

    def close(self) -> None:
        """Drop every hold of this process and stop the threads of ranged reads and obstore
        calls (a call a waiter gave up on ends at the client's timeouts first)."""
        with self._mutex:
            pool, self._range_pool = self._range_pool, None
            ob_pool, self._ob_pool = self._ob_pool, None
        if pool is not None and self._range_pid == os.getpid():
            pool.shutdown(wait=True, cancel_futures=True)
        if ob_pool is not None and self._ob_pid == os.getpid():
            ob_pool.shutdown(wait=True, cancel_futures=True)
        with self._mutex:
            held, self._held = self._held, {}
        for fds in held.values():
            for fd in fds:
                with contextlib.suppress(OSError):
                    _close_fd(fd)

    # -- indexes ------------------------------------------------------------------------------
    def index(self, url: str) -> bytes:
        """The encoded index of ``url``: the node's copy, else its sidecar ``URL.adoidx``, else
        one indexing pass over the downloaded shard (one process per node does it; the others
        wait and read its result).

        The store is asked what the object is now (one stat: size, ETag, version); a node copy
        recorded for another answer is stale (the object was replaced), so it and the cached
        shard are dropped and the object is indexed again. A sidecar whose size is not the
        object's is ignored; one that agrees is checked against the shard when it is fetched.
        """
        node_copy = self._index_path(url)
        ident_path = node_copy.with_suffix(".ident")
        name = redact(url)
        with self._exclusive(self._lock_path(url, ".idx")):
            ident = _identity(self._stat(url))
            data: bytes | None = None
            recorded: dict[str, Any] = {}
            with contextlib.suppress(FileNotFoundError, ValueError):
                recorded = json.loads(ident_path.read_text())
            if node_copy.is_file():
                if recorded.get("identity") != ident:
                    logger.info("%s changed on the store since it was cached; re-indexing", name)
                    self._drop(url)
                else:
                    data = node_copy.read_bytes()
                    if not self._check(data, name):
                        data = None
            verified = data is not None and bool(recorded.get("verified"))
            if data is None:
                data = self._fetch_sidecar(url)
                verified = False
            if data is None:
                data = self._index_download(url)
                verified = True
            info = decode_index(data, name)
            size = int(str(info["file_size"]))
            store_size = self._info[url].get("size")
            if not verified and store_size is not None and int(store_size) != size:
                logger.warning(
                    "%s: its sidecar index is of %d bytes but the object has %s; indexing the "
                    "shard instead",
                    name,
                    size,
                    store_size,
                )
                data = self._index_download(url)
                info = decode_index(data, name)
                verified = True
            self._expect[url] = (int(str(info["file_size"])), str(info["content_hash"]))
            self._samples[url] = int(str(info["samples"]))
            if verified:
                self._unverified.pop(url, None)
            else:
                self._unverified[url] = dict(info)
            if (
                not node_copy.is_file()
                or node_copy.read_bytes() != data
                or recorded.get("identity") != ident
                or bool(recorded.get("verified")) != verified
            ):
                self._store_index(url, data, verified=verified)
        return data

    def _index_path(self, url: str) -> Path:
        return self.root / "index" / f"{_key(url)}{_SIDECAR}"

    def _store_index(self, url: str, data: bytes, *, verified: bool = True) -> None:
        """Write the node's copy of ``url``'s index, with what the store said about the object
        when it was made (its identity) and whether it was built from (or checked against) the
        shard itself."""
        record = {"identity": _identity(self._info.get(url, {})), "verified": verified}
        for path, payload in (
            (self._index_path(url), data),
            (self._index_path(url).with_suffix(".ident"), json.dumps(record).encode()),
        ):
            fd, tmp = self._private_tmp(".idx-")
            try:
                with open(fd, "wb", closefd=False) as f:
                    f.write(payload)
                os.replace(tmp, path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                _close_fd(fd)

    def _drop(self, url: str) -> None:
        """Delete the cached copy of ``url`` (the object was replaced), waiting up to
        ``wait_s`` for readers on the node to let go of the old one."""
        fd = self._open_lock(self._lock_path(url))
        try:
            deadline = time.monotonic() + self.config.wait_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise ShardError(
                            f"{redact(url)} changed on the store, and another process on this "
                            "node still reads the old copy; try again when it is done"
                        ) from None
                    time.sleep(0.05)
            with contextlib.suppress(FileNotFoundError):
                self.entry(url).unlink()
            self._checked.discard(url)
        finally:
            _close_fd(fd)

    def _index_download(self, url: str) -> bytes:
        """Download ``url`` and index it; a copy that is not a valid tar is fetched again."""
        for attempt in range(1, self.config.retries + 1):
            self.ensure(url)
            try:
                return index_file(str(self.entry(url)))
            except ShardError:
                if attempt == self.config.retries:
                    raise
                with (
                    self._exclusive(self._lock_path(url)),
                    contextlib.suppress(FileNotFoundError),
                ):
                    self.entry(url).unlink()
        raise AssertionError("unreachable")

    def expected_size(self, url: str) -> int:
        """The size of ``url`` by its index (after :meth:`index`)."""
        return self._expect[url][0]

    def _check(self, data: bytes, name: str) -> bool:
        try:
            decode_index(data, name)
        except ShardError:
            return False
        return True

    def _fetch_sidecar(self, url: str) -> bytes | None:
        """The sidecar ``URL.adoidx`` of ``url`` if it can be read and is a valid index
        (``None``: index the shard). The read is bounded (``max_index_bytes``, the timeouts);
        a sidecar that is missing, refused (a presigned URL signs the shard only) or too long
        is skipped; a store that fails beyond the retry budget raises."""
        side = url.split("?", 1)[0] + _SIDECAR
        shown = redact(side)
        obj = self.remote(side)

        def read() -> bytes:
            buf = io.BytesIO()
            obj.read(buf, size=None, limit=self.config.max_index_bytes, what="sidecar read")
            return buf.getvalue()

        try:
            data: bytes = with_retries(
                read, side, "sidecar read", self.config, self.storage_options
            )
        except ShardNotFoundError:
            return None
        except RetryBudgetError:
            raise
        except ShardError as err:
            logger.warning("%s; indexing the shard instead", self.describe(str(err)))
            return None
        if not self._check(data, shown):
            logger.warning("%s: not a valid ado index; indexing the shard instead", shown)
            return None
        return data

    def write_sidecar(self, url: str, *, force: bool = False) -> dict[str, object]:
        """Store the index of ``url`` beside it as ``URL.adoidx`` (what ``ado shards index``
        does for remote shards): kept when a valid sidecar of the object's size is there
        (``source="cache"``), else built from one download and uploaded (``"built"``). On a
        store that refuses the upload (read-only, an HTTP server) the index is kept in this
        node cache instead (``"local"``), where a loader given this ``cache_dir`` finds it.
        Every built index is also kept in the node cache."""
        name = redact(url)
        side = url.split("?", 1)[0] + _SIDECAR
        size = int(self._stat(url).get("size") or 0)
        if not force:
            data = self._fetch_sidecar(url)
            if data is not None:
                summary = decode_index(data, name)
                if int(str(summary["file_size"])) == size:
                    return {**summary, "source": "cache"}
        with self._exclusive(self._lock_path(url, ".idx")):
            self.ensure(url)
            data = index_file(str(self.entry(url)))
            summary = decode_index(data, name)
            if int(str(summary["file_size"])) != size:
                raise ShardError(f"{name}: changed while it was indexed; run the command again")
            self._store_index(url, data)
        side_fs, side_path = filesystem(side, self.storage_options, self.config)
        try:
            with_retries(
                lambda: side_fs.pipe_file(side_path, data),
                side,
                "sidecar upload",
                self.config,
                self.storage_options,
            )
        except RetryBudgetError:
            raise
        except ShardError as err:
            logger.info("%s; the index is kept in the node cache", self.describe(str(err)))
            return {**summary, "source": "local", "sidecar": str(self._index_path(url))}
        return {**summary, "source": "built"}

    def indexes(self, urls: Sequence[str], threads: int = 4) -> dict[str, bytes]:
        """:meth:`index` of many URLs, ``threads`` at a time (results by URL). The threads are
        daemons and the wait is interruptible: Ctrl-C stops it at once (a transfer in flight
        ends at its timeout, without holding the process up)."""
        if not urls:
            return {}
        todo: queue.Queue[str] = queue.Queue()
        for url in urls:
            todo.put(url)
        done: queue.Queue[tuple[str, bytes | None, BaseException | None]] = queue.Queue()
        stop = threading.Event()

        def work() -> None:
            while not stop.is_set():
                try:
                    url = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    done.put((url, self.index(url), None))
                except BaseException as err:  # handed to the caller
                    done.put((url, None, err))

        for i in range(max(1, min(threads, len(urls)))):
            threading.Thread(target=work, name=f"ado-index-{i}", daemon=True).start()
        out: dict[str, bytes] = {}
        try:
            while len(out) < len(urls):
                url, data, err = done.get()
                if err is not None:
                    raise err
                assert data is not None
                out[url] = data
        finally:
            stop.set()
        return {url: out[url] for url in urls}

    def describe(self, text: str) -> str:
        """``text`` scrubbed of every URL this cache knows and of ``storage_options``."""
        return scrub(text, list(self._real.values()), self.storage_options)


#: Most GETs the check of a sidecar by ranged reads may take (a shard with records between its
#: members, PAX or long names, needs one per 1 MiB holding some); beyond, the shard is read whole.
_TILING_GETS = 8


class _TooManyGets(Exception):
    """The check of a sidecar by ranged reads would take too many GETs."""


def coalesce(ranges: Sequence[tuple[int, int]], gap: int) -> list[tuple[int, int, list[int]]]:
    """``ranges`` (``[start, end)``) grouped into GETs: ``(start, end, [positions in
    ranges])``, by offset, ranges at most ``gap`` bytes apart (or overlapping) in one."""
    groups: list[tuple[int, int, list[int]]] = []
    for i in sorted(range(len(ranges)), key=lambda k: ranges[k]):
        start, end = ranges[i]
        if groups and start <= groups[-1][1] + gap:
            lo, hi, members = groups[-1]
            groups[-1] = (lo, max(hi, end), [*members, i])
        else:
            groups.append((start, end, [i]))
    return groups


class Prefetcher:
    """Downloads the shards each domain reads next, in background threads.

    Each domain's shard order is a pure function of (seed, epoch), so the loader knows which
    shards come next; only how fast a domain advances depends on the weights. So depth follows
    the current weight: ``prefetch_shards`` slots are shared out in proportion to the weights
    (each domain with weight > 0 gets at least one beyond the shard it reads now), nearest
    first, within ``prefetch_bytes``. A weight change never invalidates what was prefetched.
    Threads start at the first :meth:`schedule` (never before a fork); downloads that find no
    room in the cache are skipped (the reader fetches on demand).
    """

    def __init__(
        self,
        cache: ShardCache,
        urls: Sequence[Sequence[str | None]],
        sizes: Sequence[Sequence[int]],
    ) -> None:
        self.cache = cache
        self.urls = [list(u) for u in urls]
        self.sizes = [list(s) for s in sizes]
        self.config = cache.config
        self._pool: ThreadPoolExecutor | None = None
        self._pid = 0
        self._inflight: dict[str, Future[bool]] = {}
        self._last: list[list[int]] | None = None
        # batches since the plan was last computed, while every planned shard was cached
        self._idle = -1  # -1: the last plan is not known to be met
        self._met = False  # whether every shard of the last plan was cached

    #: Batches between two plans while every planned shard is cached and nothing is in flight
    #: (a domain reads a shard over many batches; the plan reaches 2+ shards ahead).
    IDLE_EVERY = 8

    def due(self) -> bool:
        """Whether the loader should compute the plan now (:meth:`schedule`): at every batch
        while a download is in flight or a planned shard is missing, else every
        :attr:`IDLE_EVERY` batches (computing it costs more than a warm batch's reading)."""
        if self._idle < 0:
            return True
        self._idle += 1
        if self._idle >= self.IDLE_EVERY:
            self._idle = -1
            return True
        return False

    def wake(self) -> None:
        """Compute the plan at the next batch (the weights changed)."""
        self._idle = -1

    def depths(self, weights: Sequence[float]) -> list[int]:
        """Shards to keep ready per domain (the current one included)."""
        total = float(sum(max(0.0, w) for w in weights))
        n = self.config.prefetch_shards
        if total <= 0 or n == 0:
            return [0] * len(weights)
        return [0 if w <= 0 else 1 + max(1, round(n * w / total)) for w in weights]

    def plan(self, upcoming: Sequence[Sequence[int]]) -> list[str]:
        """URLs to have ready, nearest first across domains, within ``prefetch_bytes``."""
        out: list[str] = []
        budget = self.config.prefetch_bytes
        depth = max((len(u) for u in upcoming), default=0)
        for j in range(depth):
            for d, shards in enumerate(upcoming):
                if j >= len(shards):
                    continue
                url = self.urls[d][shards[j]]
                if url is None or url in out:
                    continue
                size = self.sizes[d][shards[j]]
                if j > 0 and size > budget:
                    return out
                budget -= size if j > 0 else 0
                out.append(url)
        return out

    @property
    def started(self) -> bool:
        """Whether this process has scheduled downloads yet."""
        return self._pool is not None and self._pid == os.getpid()

    def schedule(self, upcoming: Sequence[Sequence[int]]) -> None:
        """Start downloads of the planned shards that are neither cached nor in flight."""
        if self.config.prefetch_bytes == 0:
            return
        plan = [list(u) for u in upcoming]
        if (
            plan == self._last
            and self.started
            and not any(f.done() for f in self._inflight.values())
        ):
            # nothing moved since the last call: the common case, kept cheap
            self._idle = 0 if self._met and not self._inflight else -1
            return
        self._last = plan
        if self._pool is None or self._pid != os.getpid():
            self._pool = ThreadPoolExecutor(
                max_workers=self.config.prefetch_threads, thread_name_prefix="ado-prefetch"
            )
            self._pid = os.getpid()
            self._inflight = {}
        for url, fut in list(self._inflight.items()):
            if fut.done():
                del self._inflight[url]
                err = fut.exception()
                if err is not None:
                    logger.warning(
                        "prefetch of %s failed (the reader will retry): %s",
                        redact(url),
                        self.cache.describe(str(err)),
                    )
        met = True
        for url in self.plan(upcoming):
            if url in self._inflight or self.cache.entry(url).exists():
                continue
            met = False
            self._inflight[url] = self._pool.submit(self.cache.ensure, url, wait=False)
        self._met = met
        self._idle = 0 if met and not self._inflight else -1

    def wait(self) -> None:
        """Block until the downloads in flight are done (tests, benchmarks)."""
        for fut in list(self._inflight.values()):
            with contextlib.suppress(Exception):
                fut.result()

    def close(self) -> None:
        """Stop the threads (downloads in flight finish)."""
        if self._pool is not None and self._pid == os.getpid():
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool = None
        self._idle = -1
