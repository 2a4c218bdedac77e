"""One run of the getter stress test (run as a script, one process per run).

The main thread draws ``--batches`` batches from remote shards (a local HTTP server) while four
Python threads poll every loader getter and ``state_dict()``. A hang is turned into a stack dump
of every thread and exit code 3 by ``faulthandler.dump_traceback_later``.

    python tests/data/stress_getters.py --batches 2000 [--txt] [--timeout 120]
"""

from __future__ import annotations

import argparse
import faulthandler
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import webdataset as wds  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).parent))
from servers import ShardHTTPServer


def write_corpus(root: Path) -> dict[str, str]:
    """Two domains of many small shards (so the read path fetches often); a manifest of URLs
    relative to the server root."""
    manifest = {}
    for name, n, per in (("web", 240, 8), ("code", 120, 6)):
        folder = root / name
        folder.mkdir(parents=True)
        with wds.ShardWriter(str(folder / "s-%03d.tar"), maxcount=per, verbose=0, mtime=0.0) as w:
            for i in range(n):
                text = f"{name} document {i} " * (1 + i % 7)
                toks = bytes(range(2, 2 + 2 * (1 + i % 11)))
                w.write({"__key__": f"{name}-{i:05d}", "txt": text, "u16": toks})
        shards = n // per
        manifest[name] = f"/{name}/s-{{000..{shards - 1:03d}}}.tar"
    return manifest


def tokenize(text: str) -> list[int]:
    return [1 + (ord(c) % 500) for c in text]


def one_run(base: str, manifest: dict[str, str], cache: Path, batches: int, txt: bool) -> int:
    """Draw ``batches`` batches while four threads poll; the number of polls."""
    from ado.data import MixtureLoader, PackConfig

    pack = (
        PackConfig(seq_len=32, eos_id=0, field="txt", tokenizer=tokenize)
        if txt
        else PackConfig(seq_len=32, eos_id=0, field="u16")
    )
    loader = MixtureLoader(
        {k: base + v for k, v in manifest.items()},
        batch_size=4,
        seed=1,
        pack=pack,
        cache_dir=cache,
        max_open_files=2,
        readahead_bytes=1 << 14,
        remote={"retries": 3, "backoff_s": 0.001, "backoff_max_s": 0.01},
    )
    stop = threading.Event()
    polls = [0] * 4
    errors: list[BaseException] = []

    def poll(i: int) -> None:
        try:
            while not stop.is_set():
                seen: Any = (
                    loader.step,
                    loader.weights,
                    loader.open_files,
                    loader.epochs,
                    loader.num_samples,
                    loader.fingerprint,
                    loader.domains,
                    loader.state_dict(),
                )
                assert seen[0] >= 0
                polls[i] += 1
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=poll, args=(i,), daemon=True) for i in range(4)]
    for t in threads:
        t.start()
    with loader:
        for t_step in range(batches):
            b = next(loader)
            assert b.step == t_step
            if t_step % 50 == 0:
                loader.set_weights([0.3 + (t_step // 50) % 3 * 0.2, 0.5])
        stop.set()
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
    return sum(polls)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=1, help="runs in this process, one loader each")
    ap.add_argument("--txt", action="store_true", help="pack a txt field through a tokenizer")
    ap.add_argument("--timeout", type=float, default=120.0, help="per run")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        manifest = write_corpus(root / "corpus")
        server = ShardHTTPServer(root / "corpus").start()
        base = server.url("").rstrip("/")
        for run in range(args.runs):
            faulthandler.dump_traceback_later(args.timeout, exit=True)
            polls = one_run(base, manifest, root / f"cache-{run}", args.batches, args.txt)
            faulthandler.cancel_dump_traceback_later()
            print(f"run {run}: ok batches={args.batches} polls={polls}", flush=True)
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
