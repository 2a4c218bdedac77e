"""The loader's configuration: :class:`LoaderConfig` (every option of a
:class:`~ado.data.MixtureLoader`, its default and its bounds, declared here once) and
:class:`PackConfig` (LM packing).

Both are frozen pydantic models. A ``LoaderConfig`` is validated whole when it is made (a bad
value is an :class:`~ado.errors.InvalidInputError` naming the field), travels whole: into the
Rust core (which reads its fields and declares no default of its own), into
:class:`~ado.torch.TrainConfig` and the trainer adapters, and through pickling; its JSON form
(``model_dump(mode="json")``) builds the same loader again.

Example::

    from ado.data import LoaderConfig, PackConfig

    config = LoaderConfig(batch_size=8, seed=1, pack=PackConfig(seq_len=128, eos_id=0))
    loader = config.build({"web": "web/*.tar", "code": "code/*.tar"})
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy.typing as npt
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ado._io import cache_root
from ado.data.cache import check_cache_limit
from ado.data.remote import RemoteConfig
from ado.errors import ConfigError, InvalidInputError

if TYPE_CHECKING:
    from ado.data.loader import ManifestLike, MixtureLoader

__all__ = ["LoaderConfig", "PackConfig", "default_cache_dir"]

_FORMATS = ("npy", "u16", "u32", "txt")
#: Sizes, counts and seeds are int64-safe (the Rust core's ``u64``/``usize`` and numpy's int64).
_INT = 2**63


def default_cache_dir() -> Path:
    """Where index sidecars go when they cannot be written next to their shard.

    ``index/`` under :func:`ado._io.cache_root` (``$ADO_CACHE_DIR``, else ``~/.cache/ado``).
    """
    return cache_root() / "index"


def _describe(err: ValidationError, limit: int = 3) -> str:
    """The first ``limit`` problems of ``err``, each as ``field: message, got value`` (never the
    value of ``storage_options``, which holds credentials)."""
    parts = []
    for e in err.errors()[:limit]:
        loc = ".".join(str(x) for x in e["loc"])
        if e["type"] == "value_error":  # a check of ours: its message says what it got
            parts.append(f"{loc}: {e['ctx']['error']}" if loc else str(e["ctx"]["error"]))
            continue
        shown = loc.split(".")[0] != "storage_options" and e["type"] != "missing"
        parts.append(f"{loc}: {e['msg']}" + (f", got {e['input']!r:.80}" if shown else ""))
    more = err.error_count() - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


class _Checked(BaseModel):
    """A configuration whose construction errors are :class:`~ado.errors.InvalidInputError`s
    naming the field (validated as part of an enclosing model, the enclosing one reports)."""

    _what: ClassVar[str]

    def __init__(self, **options: Any) -> None:
        try:
            super().__init__(**options)
        except ValidationError as err:
            raise InvalidInputError(f"invalid {self._what}: {_describe(err)}") from None


class PackConfig(_Checked):
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
            asks for the batch (read-ahead threads are not used for ``txt`` fields). A function
            is not data: it is left out of the JSON form (and kept by pickling).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)
    _what = "pack config"

    seq_len: int = Field(gt=0, lt=_INT)
    eos_id: int = Field(ge=0, lt=2**32)
    field: str = "npy"
    vocab_size: int | None = Field(default=None, gt=0, lt=_INT)
    dtype: Literal["int64", "int32"] = "int64"
    tokenizer: Callable[[str], Sequence[int]] | None = Field(default=None, exclude=True)

    @field_validator("field")
    @classmethod
    def _known_format(cls, field: str) -> str:
        if field.rsplit(".", 1)[-1] not in _FORMATS:
            raise ValueError(f"pack field {field!r} must end in .npy, .u16, .u32 or .txt")
        return field

    @property
    def format(self) -> str:
        """Storage format derived from ``field``: ``npy``, ``u16``, ``u32`` or ``txt``."""
        return self.field.rsplit(".", 1)[-1]


class LoaderConfig(_Checked):
    """Every option of a :class:`~ado.data.MixtureLoader` (all but the manifest and the initial
    weights, which depend on the data); :meth:`build` makes the loader.

    Attributes:
        batch_size: Rows per batch on this rank.
        seed: Seed of every random choice (composition, permutations).
        rank: This rank.
        world_size: Number of ranks; each draws the same global batch of
            ``batch_size * world_size`` slots and materialises its own slice.
        mode: ``"iid"`` (multinomial per slot) or ``"deficit"`` (low-discrepancy counts).
        pack: ``None`` for raw samples, or a :class:`PackConfig` for packed token rows.
        readahead_bytes: Read-ahead budget in bytes over all domains (0: no read-ahead).
        readahead_threads: Read-ahead threads, started at the first batch.
        index_threads: Threads used to index shards at construction (joined before returning).
        max_open_files: Most shard files kept open at once over all domains; the least recently
            used is closed first, so descriptors stay bounded with any number of shards/domains.
        cache_dir: Fallback folder for index sidecars of local shards (default
            :func:`default_cache_dir`), and the node-local cache of remote shards (default
            ``remote/`` beside it), shared by every rank and process on the node.
        cache_limit: Byte budget of the remote-shard cache (``None``: unbounded). Least recently
            used shards are evicted, never one a reader on the node holds.
        remote: Retries, prefetch depth and bytes for remote shards (:class:`RemoteConfig`).
        storage_options: fsspec options for remote shards (endpoint, credentials, ...); on top
            of the providers' environment variables and config files. Never logged or shown: it
            is left out of the repr and of the JSON form (``model_dump``), kept by pickling.

    Raises:
        InvalidInputError: A value of the wrong type or out of its bounds, an unknown option, or
            ``rank >= world_size``; the message names the field.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    _what = "loader config"

    batch_size: int = Field(ge=1, lt=_INT, strict=True)
    seed: int = Field(default=0, ge=0, lt=_INT, strict=True)
    rank: int = Field(default=0, ge=0, lt=_INT, strict=True)
    world_size: int = Field(default=1, ge=1, lt=_INT, strict=True)
    mode: Literal["iid", "deficit"] = "iid"
    pack: PackConfig | None = None
    readahead_bytes: int = Field(default=64 << 20, ge=0, lt=_INT, strict=True)
    readahead_threads: int = Field(default=2, ge=0, lt=_INT, strict=True)
    index_threads: int = Field(default=2, ge=1, lt=_INT, strict=True)
    max_open_files: int = Field(default=256, ge=1, lt=_INT, strict=True)
    cache_dir: str | None = None
    cache_limit: int | None = None
    remote: RemoteConfig = Field(default_factory=RemoteConfig)
    storage_options: dict[str, Any] | None = Field(default=None, repr=False, exclude=True)

    @field_validator("cache_dir", mode="before")
    @classmethod
    def _path(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @field_validator("remote", mode="before")
    @classmethod
    def _remote(cls, value: Any) -> Any:
        return RemoteConfig() if value is None else value  # (as MixtureLoader took it)

    @field_validator("cache_limit", mode="before")
    @classmethod
    def _cache_limit(cls, value: Any) -> Any:
        check_cache_limit(value)  # the one check (the node cache's too)
        return value

    @model_validator(mode="after")
    def _rank_in_world(self) -> LoaderConfig:
        if self.rank >= self.world_size:
            raise ValueError(
                f"rank must be < world_size, got rank={self.rank}, world_size={self.world_size}"
            )
        return self

    @property
    def index_dir(self) -> str:
        """The folder of index sidecars that cannot go beside their shard: ``cache_dir``, else
        :func:`default_cache_dir` (resolved now)."""
        return self.cache_dir if self.cache_dir is not None else str(default_cache_dir())

    @property
    def remote_cache_dir(self) -> Path:
        """The node-local cache of remote shards: ``cache_dir``, else ``remote/`` beside
        :func:`default_cache_dir`."""
        return Path(self.cache_dir) if self.cache_dir is not None else cache_root() / "remote"

    def replace(self, **changes: Any) -> LoaderConfig:
        """A copy with ``changes`` (validated like a new config; ``storage_options`` kept)."""
        return LoaderConfig(**{**dict(self), **changes})

    def for_rank(self, rank: int, world_size: int) -> LoaderConfig:
        """This configuration for ``rank`` of ``world_size`` (what a launcher knows, not the
        user). A configuration left at rank 0 of 1 takes any rank; one made for another rank or
        world size is refused.

        Raises:
            ConfigError: the configuration names another rank or world size.
        """
        if (self.rank, self.world_size) not in ((0, 1), (rank, world_size)):
            raise ConfigError(
                f"the loader config is for rank {self.rank} of {self.world_size} but this "
                f"process is rank {rank} of {world_size}; leave rank and world_size unset: the "
                "launcher sets them"
            )
        return self.replace(rank=rank, world_size=world_size)

    def build(
        self,
        manifest: ManifestLike,
        weights: Sequence[float] | Mapping[str, float] | npt.ArrayLike | None = None,
    ) -> MixtureLoader:
        """The loader of ``manifest`` under this configuration.

        Args:
            manifest: A :class:`~ado.data.Manifest`, a dict ``{domain: pattern(s)}``, or the path
                or URL of a manifest file.
            weights: Initial weights (sequence in domain order, or ``{name: weight}`` naming
                every domain); default the manifest's prior weights, else uniform.
        """
        from ado.data.loader import MixtureLoader

        return MixtureLoader(manifest, weights=weights, config=self)
