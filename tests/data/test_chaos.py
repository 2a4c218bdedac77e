"""Crash safety of the node cache: two processes share one cache while their children are
SIGKILLed at random moments (download, rename, eviction, index write). Afterwards no partial
file is in the cache, the temp files of the dead are reclaimed, the byte budget holds, and the
next run's batches equal those read from the local files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ado.data import MixtureLoader, PackConfig
from ado.data.cache import ShardCache, _close_fd, _key

sys.path.insert(0, str(Path(__file__).parent))
from servers import ShardHTTPServer

HERE = Path(__file__).parent
PACK = PackConfig(seq_len=64, eos_id=0, field="u16")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """Two domains of ~100 KB shards on a local HTTP server (a little latency, so that kills
    land inside transfers too)."""
    import webdataset as wds  # type: ignore[import-untyped]

    root = tmp_path / "corpus"
    rng = np.random.default_rng(0)
    for name, n in (("web", 6), ("code", 4)):
        (root / name).mkdir(parents=True)
        pattern = str(root / name / "s-%03d.tar")
        with wds.ShardWriter(pattern, maxcount=40, verbose=0, mtime=0.0) as sink:
            for i in range(40 * n):
                toks = rng.integers(1, 1000, size=1200, dtype=np.uint16)
                sink.write({"__key__": f"{name}-{i:05d}", "u16": toks.tobytes()})
    server = ShardHTTPServer(root).start()
    server.faults.latency_s = 0.005
    server._httpd.handle_error = lambda request, address: None  # type: ignore[method-assign]
    yield root, server.url("").rstrip("/")
    server.stop()


def _manifest(base: str) -> dict[str, str]:
    return {"web": f"{base}/web/s-{{000..005}}.tar", "code": f"{base}/code/s-{{000..003}}.tar"}


def _chaos(served: tuple[Path, str], tmp_path: Path, kills: int) -> dict[str, Any]:
    root, base = served
    cache = tmp_path / "cache"
    sizes = sorted(p.stat().st_size for p in root.rglob("*.tar"))
    limit = sum(sizes[-6:]) + 1  # six of the ten shards: evictions all the time
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(_manifest(base)))
    cmd = [sys.executable, str(HERE / "chaos_worker.py"), str(manifest), str(cache), str(limit)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [*cmd, "--kills", str(kills // 2), "--seed", str(s)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for s in (1, 2)
    ]
    outs = [p.communicate(timeout=60 + kills * 3) for p in procs]
    orphans = 0  # temp files a killed child left behind (reclaimed by the next process)
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
        assert out.count("kill ") == kills // 2
        orphans += sum(int(line.rsplit(" ", 1)[1]) for line in out.splitlines())
    sc = ShardCache(cache, limit)  # opening the cache reclaims the dead's temp files
    sc._used()  # a budget check: the dead's reservations go too
    assert sorted((cache / "tmp").iterdir()) == []
    assert sc.used_bytes() <= limit
    # No partial or foreign file in the cache: every cached shard is byte-identical to its source.
    by_key = {_key(f"{base}/{p.relative_to(root)}"): p for p in root.rglob("*.tar")}
    for entry in (cache / "shards").iterdir():
        assert entry.read_bytes() == by_key[entry.name.split("-", 1)[0]].read_bytes()
    # The next run reads exactly what the local files give.
    on_disk = {k: str(root / v.split(base + "/")[1]) for k, v in _manifest(base).items()}
    local = MixtureLoader(on_disk, 4, seed=9, pack=PACK)
    remote = MixtureLoader(
        _manifest(base), 4, seed=9, pack=PACK, cache_dir=cache, cache_limit=limit
    )
    with local, remote:
        for _ in range(40):
            assert next(remote).tokens.tobytes() == next(local).tokens.tobytes()  # type: ignore[union-attr]
    assert sc.used_bytes() <= limit
    return {"orphans": orphans}


def test_sigkill_chaos_keeps_the_cache_sound(served: tuple[Path, str], tmp_path: Path) -> None:
    seen = _chaos(served, tmp_path, kills=20)
    print(f"20 SIGKILLs: {seen['orphans']} temp files of killed processes reclaimed")


@pytest.mark.slow
def test_sigkill_chaos_100_kills(served: tuple[Path, str], tmp_path: Path) -> None:
    seen = _chaos(served, tmp_path, kills=100)
    print(f"100 SIGKILLs: {seen['orphans']} temp files of killed processes reclaimed")
    assert seen["orphans"] > 0, "no kill landed inside a download: nothing was tested"


def test_temp_files_of_dead_processes_are_reclaimed_live_ones_kept(tmp_path: Path) -> None:
    cache = ShardCache(tmp_path / "c")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    orphan = tmp_path / "c" / "tmp" / f".dl-{dead.stdout.strip()}-0123"
    orphan.write_bytes(b"x" * 5000)
    fd, mine = cache._private_tmp(".dl-")
    try:
        assert cache.reclaim_orphans() == 5000
        assert not orphan.exists()
        assert Path(mine).exists()  # ours (alive, locked) stays
    finally:
        _close_fd(fd)
