"""Durable, atomic file writes shared by everything that must not leave a torn file.

:func:`atomic_write` writes to a temporary file in the destination's folder, fsyncs it, renames
it over the destination and fsyncs the folder. A crash (SIGKILL, power cut) or a full disk at any
point leaves either the old file or the complete new one, and the temporary file is removed when
the write fails in-process. :func:`write_failed` turns the errors of a failed write into one
``OSError`` that names the file and says that the previous version is untouched.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = [
    "RecordingWriter",
    "atomic_write",
    "atomic_write_text",
    "cache_root",
    "fsync_dir",
    "regular_file",
    "remove_stale_temps",
    "write_failed",
]

logger = logging.getLogger(__name__)


def regular_file(path: str | os.PathLike[str], what: str, max_bytes: int | None = None) -> Path:
    """``path``, checked to be an existing regular file (so ``/dev/zero``, a FIFO or a folder is
    refused before it is read) of at most ``max_bytes`` bytes.

    Raises:
        InvalidInputError: missing, not a regular file, or larger than ``max_bytes``.
    """
    import stat

    from ado.errors import InvalidInputError

    p = Path(path)
    try:
        st = p.stat()
    except OSError as err:
        raise InvalidInputError(f"{p}: cannot read {what}: {err.strerror or err}") from None
    if not stat.S_ISREG(st.st_mode):
        raise InvalidInputError(f"{p}: {what} is not a regular file")
    if max_bytes is not None and st.st_size > max_bytes:
        raise InvalidInputError(f"{p}: {what} is {st.st_size} bytes; the limit is {max_bytes}")
    return p


def cache_root() -> Path:
    """ado's cache folder: ``$ADO_CACHE_DIR`` if set, else ``~/.cache/ado``.

    Its sub-folders: ``index/`` (shard index sidecars that cannot sit beside their shard) and
    ``corpus/`` (the built-in corpus of ``ado compare --corpus builtin``).
    """
    env = os.environ.get("ADO_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "ado"


def fsync_dir(folder: Path) -> None:
    """fsync a folder, so that a rename inside it is durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class RecordingWriter:
    """A binary file wrapper that remembers the first ``OSError`` of a write.

    Serializers such as ``torch.save`` turn ``ENOSPC`` into an opaque ``RuntimeError``; the
    recorded error lets the caller report the real cause.
    """

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        """Write ``data``; an ``OSError`` is recorded, then re-raised."""
        try:
            return self.raw.write(data)
        except OSError as err:
            if self.error is None:
                self.error = err
            raise

    def flush(self) -> None:
        """Flush the wrapped file."""
        try:
            self.raw.flush()
        except OSError as err:
            if self.error is None:
                self.error = err
            raise


_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def write_failed(path: Path, err: BaseException, recorded: OSError | None) -> OSError | None:
    """The error to raise instead of ``err`` when writing ``path`` failed, or ``None`` to re-raise
    ``err`` as it is. An OS error (``recorded`` by a :class:`RecordingWriter`, or ``err`` itself
    when it is a full-disk error) becomes an ``OSError`` with the same errno, naming ``path``."""
    cause = recorded
    if cause is None and isinstance(err, OSError) and err.errno in _FULL:
        cause = err
    if cause is None or cause.errno is None:
        return None
    hint = " (disk full or file size limit)" if cause.errno in _FULL else ""
    return OSError(
        cause.errno,
        f"cannot write {path}: {os.strerror(cause.errno)}{hint}; "
        "files already written are untouched",
        str(path),
    )


def _mode_of(path: Path) -> int:
    """The permission bits of ``path`` if it exists, else 0o666 less the process umask."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        mask = os.umask(0o022)
        os.umask(mask)
        return 0o666 & ~mask


def atomic_write(
    path: str | os.PathLike[str],
    write: Callable[[RecordingWriter], None],
    *,
    overwrite: bool = True,
) -> Path:
    """Atomically replace ``path`` with what ``write`` writes to the file it is given.

    With ``overwrite=False`` the file is put in place with a hard link, which fails with
    ``FileExistsError`` (leaving the existing file alone) if ``path`` exists by then.

    Raises:
        OSError: the write, fsync or rename failed (full disk, quota, permissions); a full disk is
            reported as ``OSError(ENOSPC, "cannot write <path>: No space left on device ...")``.
            In every case ``path`` is left as it was and no temporary file stays.
    """
    path = Path(path)
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    # the writer's pid in the name: a later run can tell a dead writer's debris from a live write
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=folder
    )
    tmp = Path(tmp_name)
    # mkstemp creates 0600; the file gets the mode a plain open() would give (or keeps its own)
    with contextlib.suppress(OSError):
        os.fchmod(fd, _mode_of(path))
    out: RecordingWriter | None = None
    try:
        with os.fdopen(fd, "wb") as f:
            out = RecordingWriter(f)
            write(out)
            out.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # atomic, and fails if path appeared meanwhile
            tmp.unlink()
        fsync_dir(folder)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        clear = write_failed(path, err, out.error if out is not None else None)
        if clear is not None:
            raise clear from err
        raise
    return path


_TEMP = re.compile(r"^\..+\.(\d+)\.[^.]+\.tmp$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process (or a number we cannot test): leave it
    return True


def remove_stale_temps(folder: str | os.PathLike[str], prefix: str = ".") -> list[Path]:
    """Delete the temporary files that :func:`atomic_write` left in ``folder`` when its process
    was killed mid-write (names ``<prefix>...<pid>.<random>.tmp`` whose pid no longer runs).
    Temporary files of live writers are kept. Returns the deleted paths."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP.match(entry.name)
        if m and entry.name.startswith(prefix) and not _alive(int(m.group(1))):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
                logger.info("removed %s, left by a killed write", entry.path)
    return removed


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """:func:`atomic_write` of UTF-8 text."""
    data = text.encode()

    def write(f: RecordingWriter) -> None:
        f.write(data)

    return atomic_write(path, write)
