"""Helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import re
from typing import Any

import yaml

from ado.errors import ConfigError

__all__ = ["add_override_arg", "parse_overrides", "plain"]


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
        out[key.strip()] = yaml.safe_load(value)
    return out
