"""Ranged reads against whole-shard downloads: a cold start over large shards.

One domain of large tar shards (u16 token documents, packed into rows of ``seq_len`` 2048, batch
32, one rank) behind moto's S3 server and behind a local HTTP server (Range support), each in a
process of its own on 127.0.0.1, with 0, 20 and 100 ms added per request. Each row starts from
an empty node cache (sidecar indexes on the server, as ``ado shards index`` leaves them):

* ``whole``: ``RemoteConfig(reads="whole")``, the reader downloads a shard before it reads it
  (with the default prefetch, which downloads the next shards meanwhile);
* ``ranged``: ``reads="ranged"``, the reader fetches only the byte ranges of its next samples
  (up to 64 samples or 16 MiB per call; ranges closer than ``range_gap_bytes`` in one GET,
  ``range_threads`` GETs at once), nothing whole, no prefetch;
* ``auto``: ``reads="auto"`` (the default), ranged reads while the prefetch downloads the shard
  whole, then reads from the cache.

Printed per row: time to first batch (from the loader's construction), rows/s over the first
``--batches`` batches (from the first batch on, and including it), bytes downloaded, GETs of
ranges; ratios against ``whole`` measured in the same run, same server and latency.

Usage: ``python benchmarks/remote_ranged.py [--shards 4] [--shard-mb 64] [--batches 20]``.
Needs ``moto[server]``, ``boto3``, ``s3fs``, ``aiohttp`` (the dev extra).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
from ado._core import index_file
from ado.data import MixtureLoader, PackConfig
from ado.data.remote import RemoteConfig

sys.path.insert(0, str(Path(__file__).parent))
from remote_throughput import LatencyS3, bench_bucket

SEQ = 2048
BATCH = 32
LATENCIES = (0.0, 20.0, 100.0)


def write_shards(folder: Path, shards: int, shard_mb: int, tokens: tuple[int, int]) -> None:
    """``shards`` tars of about ``shard_mb`` MB of u16 documents of ``tokens`` (low, high)
    tokens, each with its sidecar index (what ``ado shards index`` leaves beside a shard)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for s in range(shards):
        path = folder / f"shard-{s:03d}.tar"
        with tarfile.open(path, "w") as tar:
            i, size = 0, 0
            while size < shard_mb << 20:
                n = int(rng.integers(tokens[0], tokens[1]))
                data = rng.integers(1, 50000, size=n, dtype="<u2").tobytes()
                info = tarfile.TarInfo(f"s{s}-{i:06d}.u16")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                i, size = i + 1, size + len(data) + 512
        (folder / (path.name + ".adoidx")).write_bytes(index_file(str(path)))


def serve_http(root: Path, port_file: Path, latency_file: Path) -> None:
    """The tests' Range-capable HTTP server over ``root``, in this process, with the latency
    (ms) written in ``latency_file`` (re-read every 50 ms)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.data.servers import ShardHTTPServer

    server = ShardHTTPServer(root).start()
    port_file.write_text(str(server.port))
    while True:
        server.faults.latency_s = float(latency_file.read_text() or 0) / 1000
        time.sleep(0.05)


class LatencyHTTP:
    """A Range-capable HTTP server process on 127.0.0.1 with settable latency per request."""

    def __init__(self, root: Path, work: Path) -> None:
        self.latency_file = work / "http-latency"
        self.latency_file.write_text("0")
        port_file = work / "http-port"
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve-http", str(root), str(port_file),
             str(self.latency_file)]
        )  # fmt: skip
        while not port_file.exists() or not port_file.read_text():
            time.sleep(0.05)
        self.port = int(port_file.read_text())

    def set_latency(self, ms: float) -> None:
        self.latency_file.write_text(str(ms))
        time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def run(pattern: str, cache: Path, reads: str, batches: int) -> dict[str, float]:
    """One cold run in a fresh process (its own fsspec sessions and caches)."""
    spec = json.dumps({"pattern": pattern, "cache": str(cache), "reads": reads, "n": batches})
    out = subprocess.run(
        [sys.executable, __file__, "--worker", spec],
        capture_output=True,
        text=True,
        timeout=1800,
        env=os.environ,
    )
    if out.returncode != 0:
        raise RuntimeError(f"worker failed: {out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def worker(spec: str) -> None:
    cfg = json.loads(spec)
    t0 = time.perf_counter()
    loader = MixtureLoader(
        {"d0": cfg["pattern"]},
        batch_size=BATCH,
        seed=0,
        pack=PackConfig(seq_len=SEQ, eos_id=0, field="u16"),
        cache_dir=cfg["cache"],
        remote=RemoteConfig(reads=cfg["reads"]),
    )
    first = 0.0
    for i in range(cfg["n"]):
        next(loader)
        if i == 0:
            first = time.perf_counter() - t0
    total = time.perf_counter() - t0
    assert loader.cache is not None
    stats = loader.cache.stats.as_dict()
    loader.close()
    print(
        json.dumps(
            {
                "ttfb": first,
                "rows_s": cfg["n"] * BATCH / total,
                "downloaded": stats["bytes_downloaded"],
                "range_gets": stats["range_gets"],
            }
        )
    )


def moto_get_cost() -> None:
    """What one 4 KB ranged GET costs moto's S3 server, by the size of the object (is a slow
    ranged read the protocol or the server?)."""
    import logging

    import boto3
    import s3fs  # type: ignore[import-untyped]
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket="bench")
    for mb in (1, 64):
        client.put_object(Bucket="bench", Key=f"k{mb}", Body=os.urandom(mb << 20))
    fs = s3fs.S3FileSystem()
    for mb in (1, 64, 1, 64):
        t = time.perf_counter()
        for i in range(30):
            fs.cat_file(f"bench/k{mb}", start=i * 4096, end=(i + 1) * 4096)
        ms = (time.perf_counter() - t) / 30 * 1000
        print(f"moto, {mb:2d} MB object: {ms:.1f} ms per 4 KB ranged GET", flush=True)
    server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--shard-mb", type=int, default=64)
    ap.add_argument("--batches", type=int, default=20, help="batches per run (rows/s over them)")
    ap.add_argument("--latencies", default=",".join(str(x) for x in LATENCIES))
    ap.add_argument("--servers", default="s3,http")
    ap.add_argument("--modes", default="whole,ranged,auto")
    ap.add_argument("--doc-tokens", default="200,4000", help="document length range (tokens)")
    ap.add_argument("--moto-get-cost", action="store_true", help="only: moto's cost per GET")
    ap.add_argument("--serve", nargs=2, type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--serve-http", nargs=3, type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        from remote_throughput import serve

        serve(*args.serve)
        return
    if args.serve_http:
        serve_http(*args.serve_http)
        return
    if args.worker:
        worker(args.worker)
        return
    if args.moto_get_cost:
        moto_get_cost()
        return
    root = Path(tempfile.mkdtemp(prefix="ado-ranged-bench-"))
    data = root / "data"
    lo, hi = (int(x) for x in args.doc_tokens.split(","))
    write_shards(data / "d0", args.shards, args.shard_mb, (lo, hi))
    last = args.shards - 1
    servers = args.servers.split(",")
    patterns: dict[str, str] = {}
    stoppers = []
    setters = {}
    if "s3" in servers:
        s3 = LatencyS3(root)
        bench_bucket(s3, [(p, f"d0/{p.name}") for p in sorted((data / "d0").iterdir())])
        patterns["s3"] = f"s3://bench/d0/shard-{{000..{last:03d}}}.tar"
        stoppers.append(s3.stop)
        setters["s3"] = s3.set_latency
    if "http" in servers:
        http = LatencyHTTP(data, root)
        patterns["http"] = f"http://127.0.0.1:{http.port}/d0/shard-{{000..{last:03d}}}.tar"
        stoppers.append(http.stop)
        setters["http"] = http.set_latency
    modes = args.modes.split(",")
    results: list[tuple[str, float, str, dict[str, float]]] = []
    try:
        for server, pattern in patterns.items():
            for ms in (float(x) for x in args.latencies.split(",")):
                setters[server](ms)
                for mode in modes:
                    cache = root / f"cache-{server}-{ms}-{mode}"
                    r = run(pattern, cache, mode, args.batches)
                    shutil.rmtree(cache, ignore_errors=True)
                    results.append((server, ms, mode, r))
                    print(server, ms, mode, r, flush=True)
    finally:
        for stop in stoppers:
            stop()
        shutil.rmtree(root, ignore_errors=True)
    mb = args.shards * args.shard_mb
    print(
        f"\n1 domain x {args.shards} shards x {args.shard_mb} MB ({mb} MB) of documents of "
        f"{lo}-{hi} u16 tokens, cold node cache, first {args.batches} batches of {BATCH} x "
        f"{SEQ + 1} tokens, 1 rank; latency added per request; ratios against whole-shard reads "
        "in the same run"
    )
    print(
        f"| {'server':6s} | {'ms':>4s} | {'reads':6s} | {'first batch s':>13s} | "
        f"{'vs whole':>8s} | {'rows/s':>8s} | {'vs whole':>8s} | {'downloaded MB':>13s} | "
        f"{'range GETs':>10s} |"
    )
    print(f"|{'-' * 8}|{'-' * 6}|{'-' * 8}|{'-' * 15}|{'-' * 10}|{'-' * 10}|{'-' * 10}|"
          f"{'-' * 15}|{'-' * 12}|")  # fmt: skip
    base = {(s, ms): r for s, ms, mode, r in results if mode == "whole"}
    for server, ms, mode, r in results:
        b = base.get((server, ms))
        t_ratio = r["ttfb"] / b["ttfb"] if b else float("nan")
        r_ratio = r["rows_s"] / b["rows_s"] if b else float("nan")
        print(
            f"| {server:6s} | {ms:4.0f} | {mode:6s} | {r['ttfb']:13.2f} | {t_ratio:8.2f} | "
            f"{r['rows_s']:8.1f} | {r_ratio:8.2f} | {r['downloaded'] / 1e6:13.1f} | "
            f"{r['range_gets']:10.0f} |"
        )


if __name__ == "__main__":
    main()
