"""Validation of restored states: pydantic models of every ``state_dict`` layout.

A state comes back from a checkpoint that anyone may have edited, so every field is checked
before anything is restored: exact types (``step: "12"`` and ``True`` are not integers), finite
numbers, non-negative counts, one entry per domain, distributions that are distributions. A
state that fails is a :class:`~ado.errors.StateError` naming the field.

The per-domain length comes from the validation context (``{"k": K}``).
"""

from __future__ import annotations

import base64
import binascii
import math
import zlib
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

import numpy as np
import numpy.typing as npt
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    ValidationInfo,
)

from ado.errors import StateError

__all__ = [
    "Count",
    "Distribution",
    "FiniteFloat",
    "NonNegVector",
    "StateModel",
    "Step",
    "Vector",
    "decode_array",
    "encode_array",
    "parse_state",
]

#: Largest integer a state may hold (steps and counters are int64 in Rust and numpy).
MAX_INT = 2**63 - 1

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Count = Annotated[StrictInt, Field(ge=0, le=MAX_INT)]
Step = Annotated[StrictInt, Field(ge=-1, le=MAX_INT)]


def _per_domain(value: list[float], info: ValidationInfo) -> list[float]:
    k = (info.context or {}).get("k")
    if k is not None and len(value) != k:
        raise ValueError(f"has {len(value)} entries; expected one per domain ({k})")
    return value


def _non_negative(value: list[float]) -> list[float]:
    if any(v < 0.0 for v in value):
        raise ValueError(f"must be >= 0, got {_short(value)}")
    return value


def _distribution(value: list[float]) -> list[float]:
    try:
        total = math.fsum(value)
    except OverflowError:  # (fsum raises on an intermediate overflow)
        total = math.inf
    if not abs(total - 1.0) <= 1e-6:
        raise ValueError(f"must sum to 1 (a distribution), sums to {total!r}")
    return value


def _short(value: list[float]) -> str:
    return str(value if len(value) <= 8 else [*value[:8], "..."])


#: One finite value per domain.
Vector = Annotated[list[FiniteFloat], AfterValidator(_per_domain)]
#: One finite value >= 0 per domain.
NonNegVector = Annotated[Vector, AfterValidator(_non_negative)]
#: A distribution over the domains: finite, >= 0, summing to 1.
Distribution = Annotated[NonNegVector, AfterValidator(_distribution)]


class StateModel(BaseModel):
    """Base of state models: strict types, no unknown or missing fields."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


M = TypeVar("M", bound=BaseModel)


def describe(err: ValidationError, limit: int = 3) -> str:
    """The first ``limit`` problems of ``err``, each as ``field.path: message``."""
    parts = []
    for e in err.errors()[:limit]:
        loc = ".".join(str(x) for x in e["loc"]) or "(state)"
        parts.append(f"{loc}: {e['msg']}")
    more = err.error_count() - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def parse_state(model: type[M], data: Any, where: str, k: int | None = None) -> M:
    """``data`` validated as ``model`` (per-domain vectors of length ``k``).

    Raises:
        StateError: ``data`` is not a mapping, or a field is missing, unknown or invalid (the
            message names it, prefixed by ``where``).
    """
    if not isinstance(data, Mapping):
        raise StateError(f"{where} must be a mapping, got {type(data).__name__}")
    try:
        return model.model_validate(dict(data), strict=True, context={"k": k})
    except ValidationError as err:
        raise StateError(f"{where} is invalid: {describe(err)}") from None


def encode_array(arr: npt.NDArray[Any]) -> str:
    """A numeric array as compact JSON-safe text: its little-endian bytes, zlib-compressed and
    base64-encoded (exact: :func:`decode_array` gives the same bits back). About 11 bytes per
    float64 before compression, against ~20 for a JSON number; repeated values (the same x-axis
    in every domain) compress to almost nothing."""
    raw = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
    return base64.b64encode(zlib.compress(raw, 1)).decode("ascii")


def decode_array(text: str, dtype: npt.DTypeLike, count: int, where: str) -> npt.NDArray[Any]:
    """:func:`encode_array` output holding exactly ``count`` values of ``dtype`` (a 1-D array),
    read with bounded memory: decompression stops past ``count`` values.

    Raises:
        StateError: not base64 of a complete zlib stream, or another number of values (the
            message names ``where``).
    """
    kind = np.dtype(dtype).newbyteorder("<")
    want = count * kind.itemsize
    try:
        packed = base64.b64decode(text.encode("ascii"), validate=True)
        inflater = zlib.decompressobj()
        raw = inflater.decompress(packed, want + 1)
    except (binascii.Error, UnicodeEncodeError, zlib.error) as err:
        raise StateError(f"{where} is not an encoded array: {err}") from None
    if len(raw) > want or inflater.unconsumed_tail:
        raise StateError(f"{where} holds more than the {count} values ({want} bytes) expected")
    if len(raw) != want or not inflater.eof:
        raise StateError(
            f"{where} holds {len(raw)} bytes where {count} values ({want} bytes) were expected"
        )
    out: npt.NDArray[Any] = np.frombuffer(raw, dtype=kind).astype(np.dtype(dtype).newbyteorder("="))
    return out
