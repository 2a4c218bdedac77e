"""The loader's options are checked once: ``cache_limit`` by one check with one error class (the
loader's and the node cache's), ``max_open_files``' default declared once (by
``MixtureLoader``; the Rust constructor takes every size as given)."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import pytest
from ado._core import MixtureLoaderCore
from ado.data import MixtureLoader
from ado.data.cache import ShardCache
from ado.errors import InvalidInputError

sys.path.insert(0, str(Path(__file__).parents[1] / "hardening"))
from bad_inputs import write_tar


@pytest.mark.parametrize("limit", [0, -1, True, 1.5])
def test_cache_limit_is_refused_with_one_error_class(tmp_path: Path, limit: object) -> None:
    shard = write_tar(tmp_path / "a.tar", [(f"s{i}.txt", b"x") for i in range(4)])
    with pytest.raises(InvalidInputError, match="cache_limit must be >= 1 byte or None"):
        MixtureLoader({"a": str(shard)}, 2, cache_limit=limit)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="cache_limit must be >= 1 byte or None"):
        ShardCache(tmp_path / "cache", limit)  # type: ignore[arg-type]  # was ShardError


def test_max_open_files_default_is_declared_once() -> None:
    default = inspect.signature(MixtureLoader).parameters["max_open_files"].default
    assert default == 256
    with pytest.raises(TypeError, match="max_open_files"):  # no second default in Rust
        MixtureLoaderCore(
            [], batch_size=1, seed=0, rank=0, world_size=1, mode="iid", weights=None,
            readahead_bytes=0, threads=0, cache_dir=None, index_threads=1, pack=None,
        )  # fmt: skip
