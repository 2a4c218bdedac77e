"""A zygote for the cache chaos test: imports everything once, then ``--kills`` times forks a
child that opens the shared node cache and reads remote shards (downloads, renames, evictions,
index writes) and SIGKILLs it after a random delay. Prints one line per kill.

    python tests/data/chaos_worker.py MANIFEST.json CACHE LIMIT --kills 50 --seed 1
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import time
from pathlib import Path


def child(manifest: dict[str, str], cache: Path, limit: int, rng: random.Random) -> None:
    from ado.data import MixtureLoader, PackConfig

    index = cache / "index"
    if index.is_dir() and rng.random() < 0.3:  # make some children write the node's index again
        for p in rng.sample(sorted(index.iterdir()), k=min(2, len(list(index.iterdir())))):
            p.unlink(missing_ok=True)
    loader = MixtureLoader(
        manifest,
        16,
        seed=rng.randrange(1000),
        pack=PackConfig(seq_len=64, eos_id=0, field="u16"),
        cache_dir=cache,
        cache_limit=limit,
        remote={"retries": 20, "backoff_s": 0.001, "backoff_max_s": 0.01, "wait_s": 30.0},
    )
    while True:
        next(loader)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("manifest")
    ap.add_argument("cache")
    ap.add_argument("limit", type=int)
    ap.add_argument("--kills", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-delay", type=float, default=0.5)
    args = ap.parse_args()
    # Imported once, before any fork (no thread is started by importing them).
    import ado.data  # noqa: F401
    import aiohttp  # noqa: F401
    import fsspec.implementations.http  # noqa: F401

    manifest = json.loads(Path(args.manifest).read_text())
    rng = random.Random(args.seed)
    for k in range(args.kills):
        seed = rng.randrange(1 << 30)
        pid = os.fork()
        if pid == 0:
            try:
                child(manifest, Path(args.cache), args.limit, random.Random(seed))
            finally:
                os._exit(1)
        time.sleep(rng.uniform(0.0, args.max_delay))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        tmp = Path(args.cache) / "tmp"
        left = [p.name for p in tmp.iterdir() if f"-{pid}-" in p.name] if tmp.is_dir() else []
        code = os.waitstatus_to_exitcode(status)
        print(f"kill {k}: status {code} orphans {len(left)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
