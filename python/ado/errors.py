"""The exception tree of ``ado``.

``AdoError`` is the base of every error ``ado`` raises on purpose. Errors about the arguments of a
call (wrong shape, NaN, out of range) are ``InvalidInputError``, which is also a ``ValueError``.
The Rust core raises these same classes. Errors from the operating system keep their kind: a
missing shard is a :class:`ShardNotFoundError`, both a :class:`ShardError` and a
``FileNotFoundError`` (likewise :class:`ShardPermissionError`); an allocation failure is a
``MemoryError``; a broken internal invariant is an :class:`InternalError` (a bug: please report it).
"""

from __future__ import annotations

__all__ = [
    "AdoError",
    "ConfigError",
    "FitError",
    "InternalError",
    "InvalidInputError",
    "MissingDependencyError",
    "RetryBudgetError",
    "RunFailedError",
    "ShardError",
    "ShardNotFoundError",
    "ShardPermissionError",
    "StateError",
    "TooLargeError",
]


class AdoError(Exception):
    """Base class of all ``ado`` errors."""


class InvalidInputError(AdoError, ValueError):
    """An argument is malformed: wrong shape or length, NaN/inf, negative, out of range."""


class ConfigError(AdoError, ValueError):
    """A configuration (YAML preset, overrides) is invalid."""


class FitError(AdoError):
    """A power-law fit could not be computed."""


class StateError(AdoError):
    """A saved state does not match the object it is loaded into (domains, config, manifest)."""


class ShardError(AdoError):
    """A WebDataset shard is missing, unreadable, corrupt or truncated."""


class ShardNotFoundError(ShardError, FileNotFoundError):
    """A shard (or its folder) does not exist. ``errno``, ``strerror`` and ``filename`` are set."""


class ShardPermissionError(ShardError, PermissionError):
    """A shard cannot be opened for lack of permission. ``errno`` etc. are set."""


class RetryBudgetError(ShardError):
    """A remote transfer still failed after every attempt of its retry budget."""


class TooLargeError(ShardError):
    """A remote answer longer than it may be (a sidecar past its bound, a body past its size)."""


class InternalError(AdoError):
    """An internal invariant of ``ado`` does not hold: a bug, not a problem with the input."""


class MissingDependencyError(AdoError, ImportError):
    """An optional dependency is missing; the message names the ``ado`` extra that brings it."""


class RunFailedError(AdoError, RuntimeError):
    """A training run started elsewhere (a ``torchrun`` process group, a Slurm job) failed or
    ended without its result; the message names the run and where its log is."""
