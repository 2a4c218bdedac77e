"""Bounded resources: the loader's shard files are capped by ``max_open_files`` (an LRU), with
batches identical to an uncapped loader. (Memory and scale are measured, not asserted, in
``benchmarks/hardening_scale.py``.)"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from ado.data import MixtureLoader
from ado.errors import InvalidInputError
from bad_inputs import write_tar


def _manifest(root: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for d in range(3):
        paths = []
        for s in range(10):
            members = [(f"d{d}s{s}-{i}.txt", b"x" * 10) for i in range(4)]
            paths.append(str(write_tar(root / f"d{d}-{s:02d}.tar", members)))
        out[f"d{d}"] = paths
    return out


def test_open_files_capped(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    kw = {"cache_dir": tmp_path / "cache", "seed": 3}
    wide = MixtureLoader(manifest, 8, **kw)  # type: ignore[arg-type]
    tight = MixtureLoader(manifest, 8, max_open_files=2, **kw)  # type: ignore[arg-type]
    rng = np.random.default_rng(0)
    for _ in range(60):
        w = rng.dirichlet(np.ones(3))
        wide.set_weights(w)
        tight.set_weights(w)
        a, b = next(wide), next(tight)
        assert a.keys == b.keys
        assert tight.open_files[0] <= 2
    assert wide.open_files[0] == 30  # every shard was visited and stays open
    assert tight.open_files[1] > 30  # re-opened after eviction
    # The capped loader holds 2 shard descriptors (and a read in flight may hold one more per
    # loader), the wide one 30. Only this test's shards are counted: other descriptors of the
    # process (a server or loader of an earlier test, closed by a reaper thread) come and go.
    assert len(_open_shards(tmp_path)) <= 30 + 2 + 2


def _open_shards(root: Path) -> list[str]:
    """The descriptors of this process open on a ``.tar`` under ``root``."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith(str(root)) and target.endswith(".tar"):
            out.append(target)
    return out


def test_max_open_files_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="max_open_files"):
        MixtureLoader(_manifest(tmp_path), 8, max_open_files=0, cache_dir=tmp_path / "c")
