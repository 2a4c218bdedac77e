"""Brace expansion of shard patterns (``shard-{000..099}.tar``), bounded."""

from __future__ import annotations

import itertools

import braceexpand

from ado.errors import ConfigError

__all__ = ["MAX_EXPANSION", "brace_names"]

#: Most names one shard pattern may expand to (``s{0..999999}{0..999999}.tar`` is 10^12).
MAX_EXPANSION = 1 << 20


def brace_names(pattern: str, shown: str | None = None) -> list[str]:
    """The names ``pattern`` expands to, without listing anything.

    Args:
        pattern: the pattern.
        shown: how to name the pattern in errors (e.g. with credentials redacted).

    Raises:
        ConfigError: more than :data:`MAX_EXPANSION` names.
    """
    names = list(itertools.islice(braceexpand.braceexpand(pattern), MAX_EXPANSION + 1))
    if len(names) > MAX_EXPANSION:
        raise ConfigError(
            f"{shown or pattern}: brace expansion gives more than {MAX_EXPANSION} names; "
            "split the domain or use a glob"
        )
    return names
