"""Shard indexing helpers (the Rust header walk and its sidecar cache)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ado._core import index_shard as _index_shard

if TYPE_CHECKING:
    from ado.data.manifest import Manifest
    from ado.data.remote import RemoteConfig

__all__ = ["index_shard", "shard_summaries"]


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


def shard_summaries(
    manifest: Manifest,
    *,
    storage_options: Mapping[str, Any] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    remote: RemoteConfig | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Domain name → the :func:`index_shard` summary of each of its shards, local or remote.

    Remote shards are indexed as :class:`~ado.data.MixtureLoader` indexes them, through the same
    node cache (``cache_dir``, default ``remote/`` beside the default sidecar folder): from their
    sidecars when they have them, else by one download, which the loader then reuses.
    """
    from ado._core import decode_index
    from ado.data.cache import ShardCache
    from ado.data.loader import default_cache_dir
    from ado.data.remote import is_remote, redact

    sources = manifest.sources(storage_options)
    urls = sorted({u for paths in sources.values() for u in paths if is_remote(u)})
    indexes: dict[str, bytes] = {}
    if urls:
        root = cache_dir if cache_dir is not None else default_cache_dir().parent / "remote"
        cache = ShardCache(root, storage_options=storage_options, config=remote)
        indexes = cache.indexes(urls)
    return {
        name: [
            dict(decode_index(indexes[p], redact(p))) if is_remote(p) else index_shard(p)
            for p in paths
        ]
        for name, paths in sources.items()
    }
