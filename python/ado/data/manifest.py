"""Manifests: which WebDataset shards make up each domain.

A manifest maps each domain name to shard patterns (brace expansion as in webdataset,
``dir/shard-{000..099}.tar``, and shell globs), with an optional prior weight and token budget.
It is stored as YAML or JSON::

    domains:
      web: {shards: ["web/shard-{000..015}.tar"], weight: 0.7}
      code: {shards: ["code/*.tar"], weight: 0.3, token_budget: 1000000000}

Relative patterns are resolved against ``base_dir`` (the manifest file's directory when loaded
from a file). A manifest may itself live in an object store or behind HTTP
(``Manifest.load("s3://bucket/corpus/manifest.yaml")``): its relative patterns then name objects
beside it.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ado._config_file import read_config
from ado._io import atomic_write_text
from ado.data._braces import brace_names
from ado.data.remote import RemoteConfig, expand_remote, is_remote, redact, scheme_of
from ado.errors import ConfigError, ShardError

__all__ = ["DomainSpec", "Manifest", "expand_patterns", "expand_sources"]

_GLOB_CHARS = frozenset("*?[")


def expand_patterns(
    patterns: Sequence[str], base_dir: str | os.PathLike[str] | None = None
) -> list[Path]:
    """Expand shard patterns into paths (brace expansion, then globbing), in order.

    Args:
        patterns: Shard patterns such as ``"dir/shard-{000..099}.tar"`` or ``"dir/*.tar"``.
        base_dir: Directory that relative patterns are resolved against (default: cwd).

    Returns:
        The expanded paths. Brace-expanded names are returned whether or not they exist (a missing
        shard is reported when it is indexed); a glob that matches nothing is an error.

    Raises:
        ShardError: For ``pipe:`` commands, URLs and globs that match nothing.
        ConfigError: A pattern expanding to more than :data:`MAX_EXPANSION` names.
    """
    out: list[Path] = []
    for pattern in patterns:
        if pattern.startswith("pipe:"):
            raise ShardError(
                f"{pattern}: only local (or mounted) shards can be read by offset; "
                "pipe: commands and URLs are not supported"
            )
        if "://" in pattern:
            raise ShardError(
                f"{redact(pattern)}: a URL, not a local path; expand it with expand_sources "
                "(MixtureLoader and Manifest.sources read s3://, gs://, az://, http(s)://)"
            )
        for name in brace_names(pattern):
            path = Path(name).expanduser()
            if base_dir is not None and not path.is_absolute():
                path = Path(base_dir) / path
            if _GLOB_CHARS & set(str(path)):
                matches = sorted(glob.glob(str(path)))
                if not matches:
                    raise ShardError(f"{name}: no file matches this pattern")
                out.extend(Path(m) for m in matches)
            else:
                out.append(path)
    return out


def expand_sources(
    patterns: Sequence[str],
    base_dir: str | os.PathLike[str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    config: RemoteConfig | None = None,
) -> list[str]:
    """Expand local and remote shard patterns, in order: remote ones by
    :func:`ado.data.remote.expand_remote` (braces without listing, a glob lists its prefix
    once), local ones by :func:`expand_patterns`; ``file://`` URLs are local paths."""
    out: list[str] = []
    for pattern in patterns:
        if base_dir is not None and is_remote(str(base_dir)) and "://" not in pattern:
            if pattern.startswith(("/", "~")):
                raise ShardError(
                    f"{pattern}: a manifest at {redact(str(base_dir))} names shards beside it "
                    "(relative patterns) or by URL, not by a local absolute path"
                )
            pattern = str(base_dir).rstrip("/") + "/" + pattern
        if is_remote(pattern):
            out.extend(expand_remote(pattern, storage_options, config))
            continue
        if scheme_of(pattern) == "file":
            parts = urlsplit(pattern)
            if parts.netloc not in ("", "localhost"):
                raise ShardError(f"{redact(pattern)}: file:// URLs must name a local path")
            pattern = unquote(parts.path)
        elif "://" in pattern:
            raise ShardError(
                f"{redact(pattern)}: unsupported URL scheme {scheme_of(pattern) or '?'}:// "
                "(s3, gs, az, abfs, http, https and file are)"
            )
        out.extend(str(p) for p in expand_patterns([pattern], base_dir))
    return out


def _read_remote_config(
    url: str, storage_options: Mapping[str, Any] | None, config: RemoteConfig
) -> Any:
    """Parse the YAML (or ``.json``) file at ``url``, read with the bounds of a local one."""
    import io

    from ado._config_file import MAX_CONFIG_BYTES, parse_yaml
    from ado.data.fetch import remote_object
    from ado.data.remote import with_retries

    obj = remote_object(url, storage_options, config)

    def read() -> bytes:
        buf = io.BytesIO()
        obj.read(buf, size=None, limit=MAX_CONFIG_BYTES, what="manifest read")
        return buf.getvalue()

    raw = with_retries(read, url, "manifest read", config, storage_options)
    where = redact(url)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{where}: not UTF-8 text ({err.reason})") from None
    if url.split("?", 1)[0].endswith(".json"):
        try:
            return json.loads(text)
        except (ValueError, RecursionError) as err:
            raise ConfigError(f"{where}: invalid JSON: {type(err).__name__}") from None
    return parse_yaml(text, where)


class DomainSpec(BaseModel):
    """One domain of a manifest.

    Attributes:
        shards: Shard patterns (brace expansion and globs).
        weight: Optional prior sampling weight (>= 0).
        token_budget: Optional token budget (>= 0), for policies that cap repetition.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    shards: list[str] = Field(min_length=1)
    weight: float | None = Field(default=None, ge=0.0, allow_inf_nan=False)
    token_budget: int | None = Field(default=None, ge=0)


class Manifest(BaseModel):
    """Domains and their shards.

    Attributes:
        domains: Domain name → :class:`DomainSpec` (a bare pattern or list of patterns is accepted).
        base_dir: Directory that relative patterns are resolved against.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    domains: dict[str, DomainSpec] = Field(min_length=1)
    base_dir: str | None = None

    @field_validator("domains", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        out: dict[str, Any] = {}
        for name, spec in value.items():
            if isinstance(spec, str):
                spec = {"shards": [spec]}
            elif isinstance(spec, Sequence):
                spec = {"shards": list(spec)}
            out[name] = spec
        return out

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any], base_dir: str | None = None) -> Manifest:
        """Build from ``{domain: pattern | [patterns] | {shards, weight, token_budget}}``."""
        return cls(domains=dict(mapping), base_dir=base_dir)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        storage_options: Mapping[str, Any] | None = None,
        config: RemoteConfig | None = None,
    ) -> Manifest:
        """Read a YAML (``.yaml``/``.yml``) or JSON manifest; ``base_dir`` defaults to its folder.
        ``path`` may be a URL (``s3://``, ``gs://``, ``az://``, ``http(s)://``): the file is read
        through the node's protocol layer (bounded size, timeouts, retries) and its relative
        patterns name objects beside it.

        Raises:
            ConfigError: If the file cannot be parsed or does not describe a manifest.
            ShardError: A remote manifest cannot be read.
        """
        if isinstance(path, str) and is_remote(path):
            data = _read_remote_config(path, storage_options, config or RemoteConfig())
            where = redact(path)
            base = path.split("?", 1)[0].rsplit("/", 1)[0]
        else:
            path = Path(path)
            data = read_config(path, "manifest", json_suffix=True)  # bounded size, depth
            where, base = str(path), str(path.parent.resolve())
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: a manifest is a mapping with a 'domains' key")
        data.setdefault("base_dir", base)
        try:
            return cls.model_validate(data)
        except ValueError as err:
            raise ConfigError(f"{where}: {err}") from err

    @classmethod
    def from_dir(cls, root: str | os.PathLike[str], pattern: str = "*.tar") -> Manifest:
        """One domain per sub-directory of ``root`` holding files that match ``pattern``.

        Raises:
            ConfigError: If no sub-directory holds a matching shard.
        """
        root = Path(root)
        domains = {
            sub.name: DomainSpec(shards=[f"{sub.name}/{pattern}"])
            for sub in sorted(p for p in root.iterdir() if p.is_dir())
            if any(sub.glob(pattern))
        }
        if not domains:
            raise ConfigError(f"{root}: no sub-directory holds files matching {pattern!r}")
        return cls(domains=domains, base_dir=str(root.resolve()))

    def save(self, path: str | os.PathLike[str], *, relative: bool = True) -> None:
        """Write as YAML or JSON (by suffix). With ``relative``, ``base_dir`` is left out when
        it is the file's own folder, so the directory can be moved."""
        path = Path(path)
        data = self.model_dump(exclude_none=True)
        if relative and self.base_dir is not None and Path(self.base_dir) == path.parent.resolve():
            data.pop("base_dir")
        # domain order is the order of the weights: never sorted
        text = (
            json.dumps(data, indent=2)
            if path.suffix == ".json"
            else yaml.safe_dump(data, sort_keys=False)
        )
        atomic_write_text(path, text)

    @property
    def names(self) -> list[str]:
        """Domain names, in manifest order."""
        return list(self.domains)

    def resolve(self) -> dict[str, list[Path]]:
        """Domain name → shard paths (local shards only; see :meth:`sources` for URLs)."""
        return {n: expand_patterns(d.shards, self.base_dir) for n, d in self.domains.items()}

    def sources(self, storage_options: Mapping[str, Any] | None = None) -> dict[str, list[str]]:
        """Domain name → shards: local paths and remote URLs (``s3://``, ``gs://``, ``az://``,
        ``http(s)://``; ``file://`` becomes a local path). Braces expand without listing; a
        glob on a remote prefix lists it once."""
        return {
            n: expand_sources(d.shards, self.base_dir, storage_options)
            for n, d in self.domains.items()
        }

    def prior_weights(self) -> list[float] | None:
        """Prior weights when every domain has one, ``None`` when none has.

        Raises:
            ConfigError: If only some domains have a weight.
        """
        ws = [d.weight for d in self.domains.values()]
        if all(w is None for w in ws):
            return None
        if any(w is None for w in ws):
            raise ConfigError("give a prior weight for every domain or for none")
        return [float(w) for w in ws if w is not None]
