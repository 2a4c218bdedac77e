"""Helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import re
from typing import Any

from ado._config_file import parse_yaml
from ado.errors import ConfigError

__all__ = ["add_override_arg", "non_negative_int", "parse_overrides", "plain", "positive_int"]


def plain(doc: str | None) -> str:
    """A module docstring as plain help text: reST literals unquoted, ``Example::`` → ``Example:``
    (print it with ``argparse.RawDescriptionHelpFormatter`` to keep its lines and lists)."""
    text = re.sub(r"``(.+?)``", r"\1", doc or "", flags=re.S)
    return re.sub(r"::$", ":", text, flags=re.M)


def add_override_arg(p: argparse.ArgumentParser) -> None:
    """Add ``--set KEY=VALUE`` (repeatable) for policy-config overrides."""
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a policy-config field (dotted keys for nested fields; VALUE is YAML), "
        "e.g. --set update_interval=200",
    )


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["a=1", "b.c=x"]`` → ``{"a": 1, "b.c": "x"}`` (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip()] = parse_yaml(value, f"--set {key.strip()}")
    return out


def _int_at_least(low: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value < 2**63:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


#: argparse ``type`` of an integer >= 1 (steps, jobs, threads, sizes).
positive_int = _int_at_least(1)
#: argparse ``type`` of an integer >= 0 (seeds).
non_negative_int = _int_at_least(0)
