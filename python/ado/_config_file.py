"""Reading configuration files (policy YAML, manifests, simulator specs) with bounded cost.

A configuration file is small text. :func:`read_config` refuses anything else before it costs
time or memory: a path that is not a regular file (``/dev/zero``, a FIFO, a directory), a file
over :data:`MAX_CONFIG_BYTES`, YAML nested deeper than :data:`MAX_DEPTH`, and YAML whose aliases
expand to more than :data:`MAX_NODES` nodes (a "billion laughs" file of a few hundred bytes).
Every refusal is a :class:`~ado.errors.ConfigError` naming the file.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import yaml

from ado.errors import ConfigError

__all__ = ["MAX_CONFIG_BYTES", "MAX_DEPTH", "MAX_NODES", "parse_yaml", "read_config"]

#: Largest configuration file read (bytes).
MAX_CONFIG_BYTES = 8 << 20
#: Deepest nesting of mappings and lists.
MAX_DEPTH = 64
#: Most nodes once every alias is expanded (what a consumer walking the data would visit).
MAX_NODES = 1_000_000


class _BoundedLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses nesting deeper than :data:`MAX_DEPTH` while composing."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise ConfigError(f"YAML nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _expanded_size(root: yaml.Node) -> int:
    """Number of nodes of ``root`` with every alias expanded (memoised: linear in the file)."""
    memo: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in memo:
            return memo[key]
        memo[key] = MAX_NODES + 1  # a cycle (a recursive alias) counts as unbounded
        total = 1
        if isinstance(node, yaml.SequenceNode):
            for child in node.value:
                total += size(child)
                if total > MAX_NODES:
                    break
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                total += size(k) + size(v)
                if total > MAX_NODES:
                    break
        memo[key] = total
        return total

    return size(root)


def parse_yaml(text: str, where: str) -> Any:
    """``yaml.safe_load(text)`` within the bounds above.

    Raises:
        ConfigError: invalid YAML, too deep, or too many nodes once aliases are expanded.
    """
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node) > MAX_NODES:
            raise ConfigError(
                f"{where}: YAML aliases expand to more than {MAX_NODES} nodes (an alias bomb?)"
            )
        return loader.construct_document(node)
    except ConfigError as err:
        if str(err).startswith(where):
            raise
        raise ConfigError(f"{where}: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{where}: invalid YAML: {err}") from None
    except RecursionError:
        raise ConfigError(f"{where}: YAML nested too deeply") from None
    finally:
        loader.dispose()


def read_text_bounded(path: str | os.PathLike[str], what: str) -> str:
    """The text of a regular file of at most :data:`MAX_CONFIG_BYTES` bytes.

    Raises:
        ConfigError: missing or unreadable, not a regular file, too large, or not UTF-8.
    """
    path = Path(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused just below.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise ConfigError(f"{path}: cannot read {what}: {err.strerror or err}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{path}: {what} is not a regular file")
        if st.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"{path}: {what} is {st.st_size} bytes; the limit is {MAX_CONFIG_BYTES}"
            )
        data = f.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: {what} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: {what} is not UTF-8 text: {err}") from None


def read_config(path: str | os.PathLike[str], what: str, *, json_suffix: bool = False) -> Any:
    """Parse the YAML (or, with ``json_suffix`` and a ``.json`` name, JSON) file ``path``.

    Raises:
        ConfigError: see :func:`read_text_bounded` and :func:`parse_yaml`.
    """
    text = read_text_bounded(path, what)
    where = str(path)
    if json_suffix and Path(path).suffix == ".json":
        try:
            return json.loads(text)
        except ValueError as err:
            raise ConfigError(f"{where}: invalid JSON: {err}") from None
        except RecursionError:
            raise ConfigError(f"{where}: JSON nested too deeply") from None
    return parse_yaml(text, where)
