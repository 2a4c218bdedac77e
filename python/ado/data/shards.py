"""Shard indexing helpers (the Rust header walk and its sidecar cache)."""

from __future__ import annotations

import os
from typing import Any

from ado._core import index_shard as _index_shard

__all__ = ["index_shard"]


def index_shard(
    path: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Index one uncompressed tar shard, or load its still-valid sidecar index.

    The sidecar ``<shard>.adoidx`` is written atomically next to the shard, or under
    ``cache_dir`` when that is not possible; a foreign file at that path is never overwritten.

    Args:
        path: The shard.
        cache_dir: Fallback folder for the sidecar.

    Returns:
        ``{"samples", "members", "file_size", "bytes_read", "header_hash", "source", "exts",
        "tokens"}`` (``tokens``: per raw ``.u16``/``.u32`` field, its token count),
        where ``source`` is ``"cache"``, ``"built"`` or ``"uncached"``.

    Raises:
        ShardError: Missing, compressed, corrupt or truncated shard.
    """
    return dict(_index_shard(str(path), None if cache_dir is None else str(cache_dir)))
