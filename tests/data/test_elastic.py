"""Elastic resume: a checkpoint of N ranks resumes on M != N ranks. Within an epoch no sample
is drawn twice or skipped over all ranks (the old ranks' draws plus the new ranks' shares are
each domain exactly once), the step and weights continue, and a resume on the same number of
ranks (also after an elastic one) stays bitwise."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from ado.data import MixtureLoader, PackConfig
from ado.errors import StateError

SIZES = {"web": 200, "code": 120}
WEIGHTS = [[0.5, 0.5], [0.7, 0.3], [0.3, 0.7]]


@pytest.fixture
def manifest(make_domain: Any) -> dict[str, list[str]]:
    return {
        name: [str(p) for p in make_domain(name, n, per_shard=17, tokens=True)]
        for name, n in SIZES.items()
    }


def _loaders(manifest: Any, world: int, **kw: Any) -> list[MixtureLoader]:
    return [
        MixtureLoader(manifest, 4, seed=3, rank=r, world_size=world, readahead_bytes=0, **kw)
        for r in range(world)
    ]


def _draw(loaders: list[MixtureLoader], steps: int) -> list[list[tuple[int, str]]]:
    """Per rank, the (domain, key) of every row drawn in ``steps`` steps (weights change)."""
    out: list[list[tuple[int, str]]] = [[] for _ in loaders]
    for _ in range(steps):
        for r, loader in enumerate(loaders):
            b = next(loader)
            out[r] += list(zip(b.domain.tolist(), b.keys, strict=True))
            loader.set_weights(WEIGHTS[b.step % len(WEIGHTS)])
    return out


def _share_lengths(remaining: int, world: int) -> list[int]:
    """Rank r of the new world gets the remaining samples r, r + world, ... of one order."""
    return [len(range(r, remaining, world)) for r in range(world)]


def _assert_epoch_covered(before: list[str], after: list[list[tuple[int, str]]], d: int) -> None:
    """The old ranks' draws of domain ``d`` and the first share-length draws of each new rank
    hold every sample of the domain exactly once."""
    name = list(SIZES)[d]
    assert len(set(before)) == len(before), "the old ranks drew a sample twice"
    lengths = _share_lengths(SIZES[name] - len(before), len(after))
    resumed = []
    for rank, n in zip(after, lengths, strict=True):
        mine = [k for dd, k in rank if dd == d]
        assert len(mine) >= n, "run the new ranks long enough to finish their shares"
        resumed += mine[:n]
    counts = Counter(before + resumed)
    assert set(counts) == {f"{name}-{i:05d}" for i in range(SIZES[name])}
    assert max(counts.values()) == 1


@pytest.mark.parametrize(("old", "new"), [(4, 2), (2, 3), (1, 4)])
def test_elastic_resume_covers_the_epoch_exactly(
    manifest: dict[str, list[str]], old: int, new: int
) -> None:
    first = _loaders(manifest, old)
    drawn = _draw(first, 24 // old)
    states = [loader.state_dict() for loader in first]
    weights = first[0].weights
    resumed = _loaders(manifest, new)
    for loader in resumed:
        loader.load_state_dict(states[:1])  # raw samples: any one old rank's state is enough
        assert loader.step == states[0]["step"]
        assert loader.weights == weights
    after = _draw(resumed, 240 // new)
    for d in range(len(SIZES)):
        _assert_epoch_covered([k for rank in drawn for dd, k in rank if dd == d], after, d)
    # After its share, each new rank continues with an epoch of the new world: its own subset
    # (sample numbers = rank mod M), no sample twice.
    for d, name in enumerate(SIZES):
        before = sum(dd == d for rank in drawn for dd, _ in rank)
        lengths = _share_lengths(SIZES[name] - before, new)
        for r, (rank, n) in enumerate(zip(after, lengths, strict=True)):
            rest = [k for dd, k in rank if dd == d][n : n + len(range(r, SIZES[name], new))]
            assert rest, "run the new ranks into their next epoch"
            assert all(int(k[-5:]) % new == r for k in rest)
            assert len(set(rest)) == len(rest)


def test_elastic_resumes_chain_and_same_world_stays_bitwise(
    manifest: dict[str, list[str]],
) -> None:
    """4 -> 2 -> 3 (the second resume while the 2 ranks are still in their shares): the epoch
    is still covered exactly; then 3 -> 3 resumes bit for bit."""
    four = _loaders(manifest, 4)
    a = _draw(four, 5)
    two = _loaders(manifest, 2)
    for loader in two:
        loader.load_state_dict([x.state_dict() for x in four])
    b = _draw(two, 6)
    states = [x.state_dict() for x in two]
    assert states[0]["format_version"] == 3
    assert states[0]["origin"]["world"] == 4
    three = _loaders(manifest, 3)
    for loader in three:
        loader.load_state_dict(states)
    mid = [x.state_dict() for x in three]
    c = _draw(three, 90)
    for d in range(len(SIZES)):
        before = [k for run in (a, b) for rank in run for dd, k in rank if dd == d]
        _assert_epoch_covered(before, c, d)
    again = _loaders(manifest, 3)
    for loader, st in zip(again, mid, strict=True):
        loader.load_state_dict(st)
    assert _draw(again, 90) == c


def test_elastic_packed_rows_need_every_old_rank(manifest: dict[str, list[str]]) -> None:
    pack = PackConfig(seq_len=8, eos_id=0, field="u16")
    two = _loaders(manifest, 2, pack=pack)
    for _ in range(6):
        for loader in two:
            next(loader)
    states = [x.state_dict() for x in two]
    three = _loaders(manifest, 3, pack=pack)
    with pytest.raises(StateError, match=r"needs the loader states of all 2 ranks; missing"):
        three[0].load_state_dict(states[:1])
    for loader in three:
        loader.load_state_dict(states)
    rows = [next(loader).tokens for loader in three for _ in range(3)]
    assert all(r is not None and r.shape == (4, 9) for r in rows)
    with pytest.raises(StateError, match="different checkpoints"):
        three[0].load_state_dict([states[0], three[1].state_dict()])
