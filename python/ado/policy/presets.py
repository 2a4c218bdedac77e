"""The policy presets shipped with the package, and the one function that resolves a policy.

The YAML files live in ``ado/presets/`` inside the package (the repository's top-level
``policies/`` is that folder), so a wheel installed anywhere finds them by name::

    load_policy("ado", domains=names)          # the shipped preset
    load_policy("my/ado-variant.yaml", ...)    # a file of your own
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from ado.errors import ConfigError

__all__ = ["preset_dir", "presets", "resolve_policy"]


def preset_dir() -> Path:
    """The folder of the shipped presets."""
    return Path(str(resources.files("ado") / "presets"))


def presets() -> dict[str, Path]:
    """Preset name → its YAML file, sorted by name (``natural``, ``ado``, ...)."""
    return {p.stem: p for p in sorted(preset_dir().glob("*.yaml"))}


def resolve_policy(source: str | os.PathLike[str]) -> Path:
    """A policy given by path or by preset name → its YAML file.

    An existing file wins; otherwise ``source`` must be a preset name (``ado``, not ``ado.yaml``).

    Raises:
        ConfigError: neither an existing file nor a preset name.
    """
    path = Path(source)
    if path.is_file() or (path.exists() and str(source) not in presets()):
        return path  # an existing non-regular file is refused, with that reason, when read
    found = presets().get(str(source))
    if found is not None:
        return found
    if path.suffix or len(path.parts) > 1:  # meant as a file
        raise ConfigError(f"{source}: cannot read policy config: no such file")
    raise ConfigError(
        f"policy {str(source)!r} is neither a file nor a preset name; "
        f"presets: {', '.join(presets())}"
    )
