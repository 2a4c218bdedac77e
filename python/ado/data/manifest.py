"""Manifests: which WebDataset shards make up each domain.

A manifest maps each domain name to shard patterns (brace expansion as in webdataset,
``dir/shard-{000..099}.tar``, and shell globs), with an optional prior weight and token budget.
It is stored as YAML or JSON::

    domains:
      web: {shards: ["web/shard-{000..015}.tar"], weight: 0.7}
      code: {shards: ["code/*.tar"], weight: 0.3, token_budget: 1000000000}

Relative patterns are resolved against ``base_dir`` (the manifest file's directory when loaded
from a file).
"""

from __future__ import annotations

import glob
import itertools
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import braceexpand
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ado._config_file import read_config
from ado._io import atomic_write_text
from ado.errors import ConfigError, ShardError

__all__ = ["DomainSpec", "Manifest", "expand_patterns"]

_GLOB_CHARS = frozenset("*?[")
#: Most names one shard pattern may expand to (``s{0..999999}{0..999999}.tar`` is 10^12).
MAX_EXPANSION = 1 << 20


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
        if pattern.startswith("pipe:") or "://" in pattern:
            raise ShardError(
                f"{pattern}: only local (or mounted) shards can be read by offset; "
                "pipe: commands and URLs are not supported"
            )
        names = list(itertools.islice(braceexpand.braceexpand(pattern), MAX_EXPANSION + 1))
        if len(names) > MAX_EXPANSION:
            raise ConfigError(
                f"{pattern}: brace expansion gives more than {MAX_EXPANSION} names; "
                "split the domain or use a glob"
            )
        for name in names:
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
    def load(cls, path: str | os.PathLike[str]) -> Manifest:
        """Read a YAML (``.yaml``/``.yml``) or JSON manifest; ``base_dir`` defaults to its folder.

        Raises:
            ConfigError: If the file cannot be parsed or does not describe a manifest.
        """
        path = Path(path)
        data = read_config(path, "manifest", json_suffix=True)  # bounded size, depth, aliases
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a manifest is a mapping with a 'domains' key")
        data.setdefault("base_dir", str(path.parent.resolve()))
        try:
            return cls.model_validate(data)
        except ValueError as err:
            raise ConfigError(f"{path}: {err}") from err

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
        text = json.dumps(data, indent=2) if path.suffix == ".json" else yaml.safe_dump(data)
        atomic_write_text(path, text)

    @property
    def names(self) -> list[str]:
        """Domain names, in manifest order."""
        return list(self.domains)

    def resolve(self) -> dict[str, list[Path]]:
        """Domain name → shard paths."""
        return {n: expand_patterns(d.shards, self.base_dir) for n, d in self.domains.items()}

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
