"""Start-up cost of a remote manifest: building a ``MixtureLoader`` over many small shards on a
local HTTP server (127.0.0.1, Python's ``http.server``).

Rows (one run, the same shards):

* cold: empty node cache, no sidecars on the server: every shard is stat'ed, downloaded and
  indexed;
* warm: the node cache already holds every index: one stat (HEAD) per shard, the staleness
  check, and nothing else;
* the warm stat phase alone through ``ShardCache.indexes`` with 1 thread (serial) against the
  loader's pool (``max(index_threads, 4)`` threads, each stat under the retry/timeout config):
  the ratio is what the bounded pool buys.

Usage: ``python benchmarks/remote_startup.py [--shards 2000] [--threads 8] [--latency-ms 0]``.
"""

from __future__ import annotations

import argparse
import functools
import io
import tarfile
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ado.data import MixtureLoader
from ado.data.cache import ShardCache


class _Quiet(SimpleHTTPRequestHandler):
    latency_s = 0.0

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        time.sleep(self.latency_s)
        super().do_HEAD()

    def do_GET(self) -> None:
        time.sleep(self.latency_s)
        super().do_GET()


def _write_shards(folder: Path, n: int) -> None:
    folder.mkdir(parents=True)
    for s in range(n):
        with tarfile.open(folder / f"shard-{s:05d}.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
            for i in range(4):
                data = f"s{s}-{i}".encode()
                info = tarfile.TarInfo(f"s{s:05d}-{i}.txt")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=8, help="the loader's index_threads")
    ap.add_argument("--latency-ms", type=float, default=0.0, help="added to every request")
    args = ap.parse_args()
    _Quiet.latency_s = args.latency_ms / 1000
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "srv"
        _write_shards(root / "d", args.shards)
        handler = functools.partial(_Quiet, directory=str(root))
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{httpd.server_address[1]}/d"
        pattern = f"{base}/shard-{{00000..{args.shards - 1:05d}}}.tar"
        urls = [f"{base}/shard-{s:05d}.tar" for s in range(args.shards)]
        cache = Path(tmp) / "cache"
        try:

            def build() -> float:
                t = time.perf_counter()
                loader = MixtureLoader(
                    {"d": pattern}, batch_size=4, cache_dir=cache, index_threads=args.threads
                )
                elapsed = time.perf_counter() - t
                assert loader.num_samples == [4 * args.shards]
                loader.close()
                return elapsed

            cold = build()
            warm = build()

            def stats(threads: int) -> float:
                c = ShardCache(cache)
                t = time.perf_counter()
                c.indexes(urls, threads=threads)
                return time.perf_counter() - t

            pool = max(args.threads, 4)
            serial = stats(1)
            pooled = stats(pool)
        finally:
            httpd.shutdown()
            httpd.server_close()
    print(
        f"{args.shards} shards on http://127.0.0.1 (python http.server in this process), "
        f"{args.latency_ms:g} ms added per request"
    )
    print(f"loader build, cold (stat + download + index each): {cold:8.2f} s")
    print(f"loader build, warm (one stat per shard):          {warm:8.2f} s")
    print(f"warm stats alone, 1 thread:                        {serial:8.2f} s")
    print(f"warm stats alone, {pool} threads (the loader's pool): {pooled:8.2f} s")
    print(f"pool / serial speed-up: {serial / pooled:.2f}x")


if __name__ == "__main__":
    main()
