"""``MixtureLoader``: weighted sampling over per-domain WebDataset shards with online weights.

The loader is a thin wrapper over the Rust core (``ado._core.MixtureLoaderCore``). Construction
indexes every shard (or loads its cached sidecar index) and starts no thread; read-ahead threads
start with the first batch. The object pickles to its configuration, so it can be handed to
DataLoader workers (build it, or let it be rebuilt, inside the worker).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from ado._core import MixtureLoaderCore
from ado._io import cache_root
from ado.data.cache import Prefetcher, ShardCache, check_cache_limit
from ado.data.manifest import Manifest
from ado.data.remote import RemoteConfig, is_remote
from ado.errors import InvalidInputError, ShardError, StateError
from ado.stats import normalised

__all__ = ["Batch", "MixtureLoader", "PackConfig", "default_cache_dir"]

logger = logging.getLogger(__name__)

_FORMATS = {"npy": "npy", "u16": "u16", "u32": "u32", "txt": "txt"}


def default_cache_dir() -> Path:
    """Where index sidecars go when they cannot be written next to their shard.

    ``index/`` under :func:`ado._io.cache_root` (``$ADO_CACHE_DIR``, else ``~/.cache/ado``).
    """
    return cache_root() / "index"


class PackConfig(BaseModel):
    """LM packing: documents of one domain, each followed by ``eos_id``, cut into rows of
    ``seq_len + 1`` tokens. Rows never mix domains and no token is dropped.

    Attributes:
        seq_len: Tokens per training sequence; rows hold ``seq_len + 1`` (inputs + shifted target).
        eos_id: Token inserted after every document.
        field: Sample extension holding the tokens; its last part says how they are stored:
            ``npy`` (1-D uint16/uint32 array), ``u16``/``u32`` (raw little-endian) or ``txt``
            (UTF-8 text, needs ``tokenizer``). Examples: ``"tokens.npy"``, ``"u16"``.
        vocab_size: If set, an id ``>= vocab_size`` raises ``InvalidInputError``.
        dtype: ``"int64"`` or ``"int32"`` output.
        tokenizer: ``str -> sequence of int`` for ``txt`` fields. It runs in the thread that
            asks for the batch (read-ahead threads are not used for ``txt`` fields).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    seq_len: int = Field(gt=0)
    eos_id: int = Field(ge=0, lt=2**32)
    field: str = "npy"
    vocab_size: int | None = Field(default=None, gt=0)
    dtype: Literal["int64", "int32"] = "int64"
    tokenizer: Callable[[str], Sequence[int]] | None = None

    @property
    def format(self) -> str:
        """Storage format derived from ``field``: ``npy``, ``u16``, ``u32`` or ``txt``."""
        last = self.field.rsplit(".", 1)[-1]
        if last not in _FORMATS:
            raise InvalidInputError(
                f"pack field {self.field!r} must end in .npy, .u16, .u32 or .txt"
            )
        return _FORMATS[last]


@dataclass(frozen=True, slots=True)
class Batch:
    """One batch of this rank.

    Attributes:
        step: Global step this batch belongs to.
        domain: ``int64[B]`` domain index of each row.
        keys: Sample key of each row (pack mode: the document the row starts in).
        samples: Raw mode: ``{extension: bytes, "__key__": key}`` per row; else ``None``.
        tokens: Pack mode: ``[B, seq_len + 1]`` int64/int32 tokens; else ``None``.
    """

    step: int
    domain: npt.NDArray[np.int64]
    keys: list[str]
    samples: list[dict[str, Any]] | None
    tokens: npt.NDArray[Any] | None


ManifestLike = Manifest | Mapping[str, Any] | str | os.PathLike[str]

# Loaders whose threads must stop before the interpreter finalizes (their read-ahead threads
# call back into Python to fetch remote shards).
_LIVE: weakref.WeakSet[MixtureLoader] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for loader in list(_LIVE):
        loader.close()


def _as_manifest(
    manifest: ManifestLike, storage_options: Mapping[str, Any] | None = None
) -> Manifest:
    if isinstance(manifest, Manifest):
        return manifest
    if isinstance(manifest, Mapping):
        return Manifest.from_dict(manifest)
    return Manifest.load(manifest, storage_options)  # a file, or a URL


def _as_weights(weights: Any, names: list[str]) -> list[float] | None:
    if weights is None:
        return None
    if isinstance(weights, Mapping):
        unknown = set(weights) - set(names)
        if unknown:
            raise InvalidInputError(f"weights name unknown domains {sorted(unknown)}")
        missing = [n for n in names if n not in weights]
        if missing:  # silently zeroing them would drop domains by a typo
            raise InvalidInputError(
                f"weights must name every domain; missing {missing} (give 0 to drop one)"
            )
        weights = [weights[n] for n in names]
    raw = np.asarray(weights)
    if raw.dtype.kind not in "iuf":
        raise InvalidInputError(f"weights must be numbers, got {weights!r:.200}")
    arr = raw.astype(np.float64)
    with np.errstate(over="ignore"):
        overflows = bool(np.isinf(arr.sum()) and np.isfinite(arr).all() and arr.min() >= 0)
    if overflows:  # finite weights whose sum overflows: scale them (as ado.stats.normalised)
        arr = normalised(arr)
    if arr.ndim != 1:
        raise InvalidInputError(f"weights must be 1-D, got shape {arr.shape}")
    return [float(x) for x in arr]


class MixtureLoader:
    """Weighted mixture of WebDataset domains; yields one :class:`Batch` per step, forever.

    Args:
        manifest: A :class:`Manifest`, a dict ``{domain: pattern(s)}``, or the path or URL of a
            manifest file.
        batch_size: Rows per batch on this rank.
        seed: Seed of every random choice (composition, permutations).
        rank: This rank.
        world_size: Number of ranks; each draws the same global batch of
            ``batch_size * world_size`` slots and materialises its own slice.
        weights: Initial weights (sequence in domain order, or ``{name: weight}`` naming every
            domain); default the manifest's prior weights, else uniform.
        mode: ``"iid"`` (multinomial per slot) or ``"deficit"`` (low-discrepancy counts).
        pack: ``None`` for raw samples, or a :class:`PackConfig` for packed token rows.
        readahead_bytes: Read-ahead budget in bytes over all domains (0: no read-ahead).
        readahead_threads: Read-ahead threads, started at the first batch.
        cache_dir: Fallback folder for index sidecars of local shards (default
            :func:`default_cache_dir`), and the node-local cache of remote shards (default
            ``remote/`` beside it), shared by every rank and process on the node.
        index_threads: Threads used to index shards at construction (joined before returning).
        max_open_files: Most shard files kept open at once over all domains; the least recently
            used is closed first, so descriptors stay bounded with any number of shards/domains.
        cache_limit: Byte budget of the remote-shard cache (``None``: unbounded). Least recently
            used shards are evicted, never one a reader on the node holds.
        storage_options: fsspec options for remote shards (endpoint, credentials, ...); on top
            of the providers' environment variables and config files. Never logged or shown.
        remote: Retries, prefetch depth and bytes for remote shards (:class:`RemoteConfig`).

    Raises:
        ShardError: A shard is missing, compressed, corrupt or truncated.
        InvalidInputError: Bad arguments, or a domain without samples.
    """

    def __init__(
        self,
        manifest: ManifestLike,
        batch_size: int,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        weights: Sequence[float] | Mapping[str, float] | npt.ArrayLike | None = None,
        mode: Literal["iid", "deficit"] = "iid",
        pack: PackConfig | None = None,
        readahead_bytes: int = 64 << 20,
        readahead_threads: int = 2,
        cache_dir: str | os.PathLike[str] | None = None,
        index_threads: int = 2,
        max_open_files: int = 256,
        cache_limit: int | None = None,
        storage_options: Mapping[str, Any] | None = None,
        remote: RemoteConfig | Mapping[str, Any] | None = None,
    ) -> None:
        self.manifest = _as_manifest(manifest, storage_options)
        names = self.manifest.names
        sizes = {
            "batch_size": batch_size,
            "seed": seed,
            "rank": rank,
            "world_size": world_size,
            "readahead_bytes": readahead_bytes,
            "readahead_threads": readahead_threads,
            "index_threads": index_threads,
            "max_open_files": max_open_files,
        }
        for key, value in sizes.items():  # bounds on the sizes themselves live in the Rust core
            if isinstance(value, bool) or not isinstance(value, int) or not -1 < value < 2**63:
                raise InvalidInputError(f"{key} must be an integer in [0, 2**63), got {value!r}")
        if min(batch_size, world_size) < 1 or not 0 <= rank < world_size or seed < 0:
            raise InvalidInputError(
                f"need batch_size >= 1, world_size >= 1, 0 <= rank < world_size and seed >= 0; "
                f"got batch_size={batch_size}, rank={rank}, world_size={world_size}, seed={seed}"
            )
        if readahead_bytes < 0 or readahead_threads < 0 or min(index_threads, max_open_files) < 1:
            raise InvalidInputError(
                "readahead_bytes/readahead_threads must be >= 0, index_threads and "
                "max_open_files >= 1"
            )
        init = _as_weights(weights, names)
        if init is None:
            init = self.manifest.prior_weights()
        self._config: dict[str, Any] = {
            "manifest": self.manifest,
            "batch_size": batch_size,
            "seed": seed,
            "rank": rank,
            "world_size": world_size,
            "mode": mode,
            "pack": pack,
            "readahead_bytes": readahead_bytes,
            "readahead_threads": readahead_threads,
            "cache_dir": cache_dir,
            "index_threads": index_threads,
            "max_open_files": max_open_files,
            "cache_limit": cache_limit,
            "storage_options": storage_options,
            "remote": remote,
        }
        pack_args = None
        if pack is not None:
            pack_args = (
                pack.seq_len,
                pack.eos_id,
                pack.field,
                pack.format,
                pack.vocab_size,
                pack.tokenizer,
                pack.dtype == "int64",
            )
        check_cache_limit(cache_limit)
        remote_cfg = remote if isinstance(remote, RemoteConfig) else RemoteConfig(**(remote or {}))
        sources = self.manifest.sources(storage_options)
        self.cache: ShardCache | None = None
        self._prefetch: Prefetcher | None = None
        remote_urls = [u for n in names for u in sources[n] if is_remote(u)]
        shard_names: dict[str, list[str]] = {n: list(sources[n]) for n in names}
        indexes: dict[str, bytes] | None = None
        if remote_urls:
            root = (
                Path(cache_dir) if cache_dir is not None else default_cache_dir().parent / "remote"
            )
            self.cache = ShardCache(root, cache_limit, storage_options, remote_cfg)
            by_url = self.cache.indexes(sorted(set(remote_urls)), threads=max(index_threads, 4))
            indexes = {}
            for n in names:
                shard_names[n] = [self.cache.name_for(u) if is_remote(u) else u for u in sources[n]]
                for u, short in zip(sources[n], shard_names[n], strict=True):
                    if is_remote(u):
                        indexes[short] = by_url[u]
        self._core = MixtureLoaderCore(
            [(n, shard_names[n]) for n in names],
            batch_size=batch_size,
            seed=seed,
            rank=rank,
            world_size=world_size,
            mode=mode,
            weights=init,
            readahead_bytes=readahead_bytes,
            threads=readahead_threads,
            cache_dir=str(cache_dir if cache_dir is not None else default_cache_dir()),
            index_threads=index_threads,
            pack=pack_args,
            max_open_files=max_open_files,
            remote=indexes,
            fetcher=self.cache,
        )
        for shard in self._core.rejected_sidecars:
            logger.warning(
                "%s: its sidecar index carries the file's identity but does not describe it "
                "(samples left out); not trusted: the shard was indexed again",
                shard,
            )
        if self.cache is not None and remote_cfg.prefetch_bytes > 0:
            self._prefetch = self._make_prefetcher(sources, names)
        if self.cache is not None:
            _LIVE.add(self)
        small = [n for n, c in zip(names, self._core.num_samples, strict=True) if c < world_size]
        if small:
            logger.warning(
                "domains %s have fewer samples than ranks (%d); their samples repeat across ranks",
                small,
                world_size,
            )

    def _make_prefetcher(self, sources: Mapping[str, list[str]], names: list[str]) -> Prefetcher:
        assert self.cache is not None
        urls: list[list[str | None]] = []
        sizes: list[list[int]] = []
        for n in names:
            urls.append([u if is_remote(u) else None for u in sources[n]])
            sizes.append([self.cache.expected_size(u) if is_remote(u) else 0 for u in sources[n]])
        return Prefetcher(self.cache, urls, sizes)

    def _schedule_prefetch(self) -> None:
        if self._prefetch is None:
            return
        depths = self._prefetch.depths(self._core.weights)
        self._prefetch.schedule(self._core.upcoming_shards(depths))

    def close(self) -> None:
        """Stop read-ahead and prefetch threads and release the cached shards this loader
        holds. Iterating again restarts them (from the same position)."""
        self._core.shutdown()
        if self._prefetch is not None:
            self._prefetch.close()
        if self.cache is not None:
            self.cache.close()

    def __enter__(self) -> MixtureLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- configuration and pickling -------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """Pickle to configuration plus current weights (no threads, no open files)."""
        return {"config": self._config, "weights": self.weights}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Rebuild from :meth:`__getstate__` (indexes come from the sidecar caches)."""
        cfg = dict(state["config"])
        self.__init__(cfg.pop("manifest"), cfg.pop("batch_size"), weights=state["weights"], **cfg)  # type: ignore[misc]

    @property
    def domains(self) -> list[str]:
        """Domain names, in index order (``batch.domain`` indexes this list)."""
        return self.manifest.names

    @property
    def rank(self) -> int:
        """This loader's rank."""
        return int(self._config["rank"])

    @property
    def world_size(self) -> int:
        """Number of ranks sharing the global batch."""
        return int(self._config["world_size"])

    @property
    def batch_size(self) -> int:
        """Rows per batch on this rank."""
        return int(self._config["batch_size"])

    @property
    def pack(self) -> PackConfig | None:
        """The packing configuration (``None``: raw samples)."""
        pack: PackConfig | None = self._config["pack"]
        return pack

    @property
    def num_samples(self) -> list[int]:
        """Samples per domain (all ranks)."""
        return list(self._core.num_samples)

    @property
    def fingerprint(self) -> str:
        """Content fingerprint: names, shard sizes, sample counts and header hashes."""
        return self._core.fingerprint

    @property
    def step(self) -> int:
        """The step of the next batch."""
        return self._core.step

    @property
    def weights(self) -> list[float]:
        """Current weights (as set, not renormalised)."""
        return list(self._core.weights)

    @property
    def open_files(self) -> tuple[int, int]:
        """(shard files open now, files opened so far) on the read path of this loader."""
        open_now, opened = self._core.file_stats()
        return int(open_now), int(opened)

    @property
    def epochs(self) -> list[int]:
        """Completed epochs of this rank's stream, per domain (repetition indicator)."""
        return list(self._core.epochs())

    def set_weights(self, weights: Sequence[float] | Mapping[str, float] | npt.ArrayLike) -> None:
        """Set the weights used from the very next batch on (staleness 0): a sequence in domain
        order, or a mapping naming every domain (0 drops one).

        Raises:
            InvalidInputError: Wrong length, a mapping that misses or adds a domain, ``None``,
                non-numbers, negative/NaN entries or a zero sum.
        """
        if weights is None:
            raise InvalidInputError("set_weights needs weights, got None")
        w = _as_weights(weights, self.domains)
        if w is not None:
            self._core.set_weights(w)

    # -- iteration ------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Batch]:
        """The loader is its own (infinite) iterator."""
        return self

    def __next__(self) -> Batch:
        """The next batch of this rank."""
        if self._prefetch is not None and not self._prefetch.started:
            self._schedule_prefetch()
        try:
            step, domain, keys, samples, tokens = self._core.next_batch()
        except KeyboardInterrupt:
            # Ctrl-C while the batch waited for read-ahead threads: the core stopped them and
            # left them to a reaper; their downloads are cancelled. Nothing was committed: the
            # next call yields this batch.
            self._interrupted()
            raise
        except ShardError:
            if self.cache is not None and self.cache.interrupted:
                self.cache.interrupted = False
                self._interrupted()
                raise KeyboardInterrupt from None  # Ctrl-C while a shard was fetched
            raise
        self._schedule_prefetch()
        return Batch(step=step, domain=domain, keys=keys, samples=samples, tokens=tokens)

    def _interrupted(self) -> None:
        if self.cache is not None:
            cancelled = self.cache.cancel_downloads()
            if cancelled:
                logger.info("loader interrupted: %d download(s) in flight cancelled", cancelled)

    # -- state ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """JSON-safe state: seed, step, weights, deficit credits, per-domain ordinals and epochs,
        pack cursors and the manifest fingerprint."""
        state: dict[str, Any] = json.loads(self._core.state_json())
        return state

    def load_state_dict(self, state: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> None:
        """Resume from :meth:`state_dict`; the following batches equal the uninterrupted run.

        Elastic resume: a checkpoint saved with another ``world_size`` resumes too. Give the
        states of all its ranks (a list; raw samples need only one, since each holds every
        rank's position). The step, weights and deficit credits continue; the samples the old
        ranks had not drawn in their current epochs are shared out to the new ranks, who draw
        them first, so within an epoch no sample is drawn twice or skipped over all ranks. Then
        each rank continues with epochs of the new world. Packed rows: a document an old rank
        had started counts as drawn (the rest of its tokens is not seen in that epoch).

        Raises:
            StateError: The state belongs to another manifest, seed, batch size or mode, or
                (same world size) another rank; states of different checkpoints; an elastic
                resume of packed rows without every old rank's state.
        """
        if isinstance(state, Mapping):
            self._core.load_state_json(json.dumps(dict(state)))
            return
        if isinstance(state, (str, bytes)) or not isinstance(state, Sequence):
            raise StateError(
                f"state must be a mapping or a list of mappings, got {type(state).__name__}"
            )
        if not state or not all(isinstance(s, Mapping) for s in state):
            raise StateError("a list of loader states must be non-empty and hold mappings")
        self._core.load_state_json(json.dumps([dict(s) for s in state]))
