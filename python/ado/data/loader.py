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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ado._core import MixtureLoaderCore, wait_for_reapers
from ado.data.cache import Prefetcher, ShardCache
from ado.data.config import LoaderConfig, PackConfig, default_cache_dir
from ado.data.manifest import Manifest
from ado.data.remote import is_remote
from ado.errors import InvalidInputError, ShardError, StateError
from ado.stats import normalised

__all__ = ["Batch", "LoaderConfig", "MixtureLoader", "PackConfig", "default_cache_dir"]

logger = logging.getLogger(__name__)

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
# may call back into Python: the fetcher of remote shards, a Python tokenizer).
_LIVE: weakref.WeakSet[MixtureLoader] = weakref.WeakSet()

#: How long the interpreter's exit waits for the threads stopping loaders the garbage collector
#: freed (each waits at most for its read-ahead threads' current fetch).
_EXIT_WAIT_S = 60.0


@atexit.register
def _close_all() -> None:
    for loader in list(_LIVE):
        loader.close()
    # A loader the collector freed is stopped by a reaper thread, whose read-ahead threads may
    # be inside Python (a fetch): a thread still in Python when the interpreter finalizes is
    # killed by a forced unwind through Rust frames, which aborts the process.
    if not wait_for_reapers(_EXIT_WAIT_S):
        logger.warning(
            "a loader freed by the garbage collector still had threads fetching after %.0f s; "
            "exiting anyway (close loaders, or use them as context managers)",
            _EXIT_WAIT_S,
        )


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

    ``MixtureLoader(manifest, batch_size, **options)`` is ``LoaderConfig(batch_size=batch_size,
    **options).build(manifest)``: every option, its default and its bounds are those of
    :class:`~ado.data.LoaderConfig` (``seed``, ``rank``, ``world_size``, ``mode``, ``pack``,
    ``readahead_bytes``, ``readahead_threads``, ``index_threads``, ``max_open_files``,
    ``cache_dir``, ``cache_limit``, ``remote``, ``storage_options``).

    Args:
        manifest: A :class:`Manifest`, a dict ``{domain: pattern(s)}``, or the path or URL of a
            manifest file.
        batch_size: Rows per batch on this rank (or give ``config``).
        weights: Initial weights (sequence in domain order, or ``{name: weight}`` naming every
            domain); default the manifest's prior weights, else uniform.
        config: The whole configuration (then no ``batch_size`` and no ``options``).
        **options: The other fields of :class:`~ado.data.LoaderConfig`.

    Attributes:
        config: The loader's :class:`~ado.data.LoaderConfig`.

    Raises:
        ShardError: A shard is missing, compressed, corrupt or truncated.
        InvalidInputError: Bad arguments (an unknown option, a value out of its bounds: the
            message names it), or a domain without samples.
    """

    def __init__(
        self,
        manifest: ManifestLike,
        batch_size: int | None = None,
        *,
        weights: Sequence[float] | Mapping[str, float] | npt.ArrayLike | None = None,
        config: LoaderConfig | None = None,
        **options: Any,
    ) -> None:
        if config is None:
            given = {} if batch_size is None else {"batch_size": batch_size}
            config = LoaderConfig(**given, **options)
        elif batch_size is not None or options:
            raise InvalidInputError("give a LoaderConfig or its fields, not both")
        elif not isinstance(config, LoaderConfig):
            raise InvalidInputError(f"config must be a LoaderConfig, got {type(config).__name__}")
        self.config = config
        storage_options = config.storage_options
        self.manifest = _as_manifest(manifest, storage_options)
        names = self.manifest.names
        init = _as_weights(weights, names)
        if init is None:
            init = self.manifest.prior_weights()
        sources = self.manifest.sources(storage_options)
        self.cache: ShardCache | None = None
        self._prefetch: Prefetcher | None = None
        remote_urls = [u for n in names for u in sources[n] if is_remote(u)]
        shard_names: dict[str, list[str]] = {n: list(sources[n]) for n in names}
        indexes: dict[str, bytes] | None = None
        if remote_urls:
            self.cache = ShardCache(
                config.remote_cache_dir, config.cache_limit, storage_options, config.remote
            )
            # each shard's index costs a stat and a sidecar GET: round trips, not CPU
            threads = max(config.index_threads, min(16, len(set(remote_urls))))
            by_url = self.cache.indexes(sorted(set(remote_urls)), threads=threads)
            indexes = {}
            for n in names:
                shard_names[n] = [self.cache.name_for(u) if is_remote(u) else u for u in sources[n]]
                for u, short in zip(sources[n], shard_names[n], strict=True):
                    if is_remote(u):
                        indexes[short] = by_url[u]
        self._core = MixtureLoaderCore(
            [(n, shard_names[n]) for n in names],
            config,
            init,
            remote=indexes,
            fetcher=self.cache,
        )
        for shard in self._core.rejected_sidecars:
            logger.warning(
                "%s: its sidecar index carries the file's identity but does not describe it "
                "(samples left out or sizes misstated); not trusted: the shard was indexed again",
                shard,
            )
        if (
            self.cache is not None
            and config.remote.prefetch_bytes > 0
            and config.remote.reads != "ranged"  # ranged: nothing is downloaded whole
        ):
            self._prefetch = self._make_prefetcher(sources, names)
        # reads="auto" over large shards: the first batch is read by ranged GETs, which must not
        # queue behind whole downloads: the prefetch starts after it
        self._defer_prefetch = (
            self._prefetch is not None
            and self.cache is not None
            and config.remote.reads == "auto"
            and any(self.cache.ranged_pays(u) for u in set(remote_urls))
        )
        _LIVE.add(self)
        world_size = config.world_size
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
        if self._prefetch is None or not self._prefetch.due():
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
        """Pickle to manifest, configuration (``storage_options`` included) and current weights
        (no threads, no open files)."""
        return {"manifest": self.manifest, "config": self.config, "weights": self.weights}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Rebuild from :meth:`__getstate__` (indexes come from the sidecar caches)."""
        self.__init__(state["manifest"], weights=state["weights"], config=state["config"])  # type: ignore[misc]

    @property
    def domains(self) -> list[str]:
        """Domain names, in index order (``batch.domain`` indexes this list)."""
        return self.manifest.names

    @property
    def rank(self) -> int:
        """This loader's rank."""
        return self.config.rank

    @property
    def world_size(self) -> int:
        """Number of ranks sharing the global batch."""
        return self.config.world_size

    @property
    def batch_size(self) -> int:
        """Rows per batch on this rank."""
        return self.config.batch_size

    @property
    def pack(self) -> PackConfig | None:
        """The packing configuration (``None``: raw samples)."""
        return self.config.pack

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
            if self._prefetch is not None:
                self._prefetch.wake()  # the depths follow the weights

    def prefetch(self) -> bool:
        """Start downloading the remote shards this rank reads first, now, in background threads,
        instead of at the first batch: call it once the loader is built (after any fork) and
        before the model's setup, so the downloads overlap that setup. The same plan as the
        first batch's (``RemoteConfig.prefetch_shards`` shared out by the current weights,
        within ``prefetch_bytes``); with ranged first reads (``reads="auto"`` over large
        shards) the whole downloads then start before the first batch's ranged GETs.

        Returns:
            Whether a prefetch runs (False: no remote shard, or ``prefetch_bytes=0``).
        """
        if self._prefetch is None:
            return False
        self._prefetch.wake()
        self._schedule_prefetch()
        return True

    # -- iteration ------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Batch]:
        """The loader is its own (infinite) iterator."""
        return self

    def __next__(self) -> Batch:
        """The next batch of this rank."""
        if self._prefetch is not None and not self._prefetch.started and not self._defer_prefetch:
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
