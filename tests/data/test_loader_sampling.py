"""Determinism, staleness 0, rank slices and exact resume of ``MixtureLoader``."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ado.data import Manifest, MixtureLoader
from ado.errors import InvalidInputError, StateError


@pytest.fixture
def manifest(make_domain: Any, tmp_path: Path) -> Manifest:
    make_domain("web", 120, per_shard=16)
    make_domain("code", 45, per_shard=10)
    make_domain("math", 7, per_shard=3)  # smaller than some world sizes below
    return Manifest.from_dict(
        {"web": "web/*.tar", "code": "code/*.tar", "math": "math/*.tar"}, base_dir=str(tmp_path)
    )


def _stream(
    loader: MixtureLoader, steps: int, weights: list[list[float]] | None = None
) -> list[Any]:
    out = []
    for t in range(steps):
        if weights is not None:
            loader.set_weights(weights[t % len(weights)])
        b = next(loader)
        out.append((b.step, list(zip(b.keys, b.domain.tolist(), strict=True))))
    return out


def _random_weights(n: int, k: int = 3, seed: int = 0) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    w = rng.dirichlet(np.ones(k), size=n)
    w[::5, 0] = 0.0  # zero weights happen too
    return [list(map(float, row)) for row in w]


@pytest.mark.parametrize("mode", ["iid", "deficit"])
def test_deterministic_across_runs_and_readahead(manifest: Manifest, mode: str) -> None:
    ws = _random_weights(12)
    runs = [
        _stream(MixtureLoader(manifest, 8, seed=5, mode=mode, **kw), 30, ws)  # type: ignore[arg-type]
        for kw in (
            {},
            {"readahead_bytes": 0},
            {"readahead_threads": 1, "readahead_bytes": 1},
            {"readahead_threads": 4, "readahead_bytes": 1 << 30},
        )
    ]
    assert all(r == runs[0] for r in runs[1:])
    other = _stream(MixtureLoader(manifest, 8, seed=6, mode=mode), 30, ws)  # type: ignore[arg-type]
    assert other != runs[0]


@pytest.mark.parametrize("mode", ["iid", "deficit"])
def test_weights_apply_to_the_very_next_batch(manifest: Manifest, mode: str) -> None:
    loader = MixtureLoader(manifest, 16, seed=1, mode=mode)  # type: ignore[arg-type]
    for t in range(40):
        d = t % 3
        w = [0.0, 0.0, 0.0]
        w[d] = 1.0
        loader.set_weights(w)
        assert set(next(loader).domain.tolist()) == {d}  # staleness 0, every step


def test_deficit_tracks_targets(manifest: Manifest) -> None:
    loader = MixtureLoader(manifest, 10, weights=[0.5, 0.3, 0.2], mode="deficit")
    counts = np.zeros(3)
    for _ in range(20):
        counts += np.bincount(next(loader).domain, minlength=3)
        assert np.abs(counts - counts.sum() * np.array([0.5, 0.3, 0.2])).max() <= 1.0 + 1e-9


def test_iid_follows_weights(manifest: Manifest) -> None:
    loader = MixtureLoader(manifest, 50, weights=[0.6, 0.3, 0.1], seed=2)
    counts = np.sum([np.bincount(next(loader).domain, minlength=3) for _ in range(40)], axis=0)
    frac = counts / counts.sum()
    assert np.allclose(frac, [0.6, 0.3, 0.1], atol=0.03)


@pytest.mark.parametrize("world", [2, 3, 8])
def test_rank_slices_are_disjoint_and_every_rank_yields(manifest: Manifest, world: int) -> None:
    ws = _random_weights(7, seed=world)
    loaders = [
        MixtureLoader(manifest, 4, seed=9, rank=r, world_size=world, mode="deficit")
        for r in range(world)
    ]
    full = MixtureLoader(manifest, 4 * world, seed=9, world_size=1, mode="deficit")
    per_rank: list[set[str]] = [set() for _ in range(world)]
    for t in range(25):
        for lo in loaders:
            lo.set_weights(ws[t % len(ws)])
        full.set_weights(ws[t % len(ws)])
        batches = [next(lo) for lo in loaders]
        assert all(b.step == t and len(b.keys) == 4 for b in batches)
        # Every rank draws the same global composition and takes its own slice.
        composition = np.concatenate([b.domain for b in batches])
        assert composition.tolist() == next(full).domain.tolist()
        for r, b in enumerate(batches):
            per_rank[r] |= {k for k, d in zip(b.keys, b.domain, strict=True) if d in (0, 1)}
    # Domains with at least `world` samples are partitioned: no sample is ever read by two ranks.
    for r in range(world):
        for q in range(r + 1, world):
            assert not per_rank[r] & per_rank[q]
    # The 7-sample domain still yields on every rank (one batch per step, no hang).
    assert all(sum(lo.state_dict()["ordinals"][2]) > 0 for lo in loaders)


@pytest.mark.parametrize("mode", ["iid", "deficit"])
def test_exact_resume_with_changing_weights(manifest: Manifest, mode: str) -> None:
    ws = _random_weights(50, seed=3)
    ref = MixtureLoader(manifest, 6, seed=4, mode=mode)  # type: ignore[arg-type]
    full = _stream(ref, 50, ws)
    for k in (0, 1, 17, 33):
        first = MixtureLoader(manifest, 6, seed=4, mode=mode)  # type: ignore[arg-type]
        head = _stream(first, k, ws)
        state = json.loads(json.dumps(first.state_dict()))  # JSON-safe
        resumed = MixtureLoader(manifest, 6, seed=4, mode=mode, readahead_bytes=0)  # type: ignore[arg-type]
        resumed.load_state_dict(state)
        tail = _stream(resumed, 50 - k, ws[k:] + ws[:k])
        assert head + tail == full, k
    assert ref.epochs[2] > 0  # the tiny domain went round more than once


def test_state_contents_and_mismatches(
    manifest: Manifest, make_domain: Any, tmp_path: Path
) -> None:
    loader = MixtureLoader(manifest, 4, seed=1, mode="deficit")
    _stream(loader, 3)
    st = loader.state_dict()
    for key in ("seed", "step", "ordinals", "epochs", "credits", "weights", "manifest_fingerprint"):
        assert key in st
    assert st["step"] == 3
    assert sum(map(sum, st["ordinals"])) == 12
    other_manifest = Manifest.from_dict(
        {"web": "web/*.tar", "code": "code/*.tar"}, base_dir=str(tmp_path)
    )
    with pytest.raises(StateError, match="different manifest"):
        MixtureLoader(other_manifest, 4, seed=1, mode="deficit").load_state_dict(st)
    with pytest.raises(StateError, match="seed"):
        MixtureLoader(manifest, 4, seed=2, mode="deficit").load_state_dict(st)
    with pytest.raises(StateError, match="batch_size"):
        MixtureLoader(manifest, 5, seed=1, mode="deficit").load_state_dict(st)
    with pytest.raises(StateError, match="malformed"):
        loader.load_state_dict({"step": 1})


def test_bad_weights_and_arguments(manifest: Manifest) -> None:
    loader = MixtureLoader(manifest, 4)
    for bad in ([1.0, 2.0], [1.0, float("nan"), 1.0], [0.0, 0.0, 0.0], [-1.0, 1.0, 1.0]):
        with pytest.raises(InvalidInputError):
            loader.set_weights(bad)
    with pytest.raises(InvalidInputError, match="unknown"):
        loader.set_weights({"nope": 1.0})
    with pytest.raises(InvalidInputError, match="must name every domain"):
        loader.set_weights({"code": 1.0})  # the others are not silently zeroed
    with pytest.raises(InvalidInputError, match="None"):
        loader.set_weights(None)  # type: ignore[arg-type]
    loader.set_weights({name: float(name == "code") for name in loader.domains})
    assert set(next(loader).domain.tolist()) == {1}
    for key, value in (("batch_size", True), ("world_size", 2.0), ("seed", "1")):
        with pytest.raises(InvalidInputError, match=key):
            MixtureLoader(manifest, **{"batch_size": 4, key: value})  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="batch_size \\* world_size must be <="):
        MixtureLoader(manifest, 2**40)  # refused before anything is allocated
    with pytest.raises(InvalidInputError, match="world_size"):
        MixtureLoader(manifest, 1, world_size=2**40)
    with pytest.raises(InvalidInputError):
        MixtureLoader(manifest, 4, rank=2, world_size=2)
    with pytest.raises(InvalidInputError, match="mode"):
        MixtureLoader(manifest, 4, mode="nope")  # type: ignore[arg-type]


def test_pickles_to_configuration(manifest: Manifest) -> None:
    loader = MixtureLoader(manifest, 4, seed=3, weights=[1.0, 2.0, 3.0])
    clone = pickle.loads(pickle.dumps(loader))
    assert clone.weights == [1.0, 2.0, 3.0]
    assert _stream(clone, 5) == _stream(loader, 5)
    next(loader)  # threads running: still picklable
    assert pickle.loads(pickle.dumps(loader)).step == 0


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_fork_after_iteration_continues_deterministically(manifest: Manifest) -> None:
    import multiprocessing as mp

    ref = _stream(MixtureLoader(manifest, 8, seed=3), 6)
    loader = MixtureLoader(manifest, 8, seed=3, readahead_threads=2)
    assert _stream(loader, 3) == ref[:3]  # read-ahead threads are running now
    ctx = mp.get_context("fork")
    queue = ctx.Queue()

    def child() -> None:
        queue.put(_stream(loader, 3))

    proc = ctx.Process(target=child)
    proc.start()
    got = queue.get(timeout=60)
    proc.join(timeout=60)
    assert got == ref[3:]
    assert _stream(loader, 3) == ref[3:]  # the parent is unaffected


def test_same_stream_in_a_fresh_interpreter(manifest: Manifest, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    manifest.save(tmp_path / "m.json")
    code = (
        "import json, sys\n"
        "from ado.data import MixtureLoader\n"
        f"lo = MixtureLoader({str(tmp_path / 'm.json')!r}, 8, seed=4, mode='deficit')\n"
        "lo.set_weights([0.2, 0.5, 0.3])\n"
        "print(json.dumps([next(lo).keys for _ in range(5)]))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    here = MixtureLoader(tmp_path / "m.json", 8, seed=4, mode="deficit")
    here.set_weights([0.2, 0.5, 0.3])
    assert json.loads(out.stdout) == [next(here).keys for _ in range(5)]


def test_manifest_prior_weights_are_the_default(make_domain: Any, tmp_path: Path) -> None:
    make_domain("x", 10, per_shard=5)
    make_domain("y", 10, per_shard=5)
    m = Manifest.from_dict(
        {"x": {"shards": ["x/*.tar"], "weight": 0.0}, "y": {"shards": ["y/*.tar"], "weight": 2.0}},
        base_dir=str(tmp_path),
    )
    loader = MixtureLoader(m, 6)
    assert loader.weights == [0.0, 2.0]
    assert set(next(loader).domain.tolist()) == {1}
