"""Remote shards: ado's MixtureLoader reading from a local S3-compatible server (moto) with 0 ms
and 20 ms added latency per request, against the same shards as local files, and against
webdataset reading the same objects the way its users do (``pipe:curl -s -L URL``, presigned).

For each setting (one run, the same shards, cold node cache unless "warm"):

* time to first batch (from the loader's construction, with sidecars written beforehand by
  ``ShardCache.write_sidecar``, what ``ado shards index s3://...`` does);
* samples/s and packed tokens/s (u16 token documents, ``seq_len`` 2048, batch 32) over the run,
  from the first batch on, cold (downloads included) and warm (the node cache already holds
  the shards);
* bytes downloaded vs bytes served (sample payload handed out).

Ratios are against local files measured in the same run. Goal: with 20 ms latency, >= 80 % of
the local-file throughput once warm.

Usage: ``python benchmarks/remote_throughput.py [--shards 8] [--shard-mb 4] [--steps 300]``.
Needs ``moto[server]``, ``boto3``, ``s3fs`` (the dev extra) and ``curl`` for the webdataset row.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from ado.data import MixtureLoader, PackConfig
from ado.data.cache import ShardCache
from ado.data.remote import RemoteConfig

SEQ = 2048
BATCH = 32


def write_corpus(root: Path, domains: int, shards: int, shard_mb: int) -> None:
    rng = np.random.default_rng(0)
    for d in range(domains):
        folder = root / f"d{d}"
        folder.mkdir(parents=True)
        for s in range(shards):
            with tarfile.open(folder / f"shard-{s:03d}.tar", "w") as tar:
                i, size = 0, 0
                while size < shard_mb << 20:
                    toks = rng.integers(1, 50000, size=int(rng.integers(200, 4000)), dtype="<u2")
                    data = toks.tobytes()
                    info = tarfile.TarInfo(f"d{d}-s{s}-{i:06d}.u16")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
                    i, size = i + 1, size + len(data) + 512


def serve(port_file: Path, latency_file: Path) -> None:
    """moto's S3 app behind a WSGI wrapper that sleeps the latency (ms) written in
    ``latency_file`` per request; runs in its own process (its own GIL, like a real store)."""
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    app = DomainDispatcherApplication(create_backend_app)

    def wrapped(environ: dict[str, Any], start: Callable[..., Any]) -> Any:
        time.sleep(float(latency_file.read_text() or 0) / 1000)
        return app(environ, start)

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = make_server("127.0.0.1", 0, wrapped, threaded=True)
    port_file.write_text(str(server.server_address[1]))
    server.serve_forever()


class LatencyS3:
    """A moto S3 server process on 127.0.0.1 with settable latency per request."""

    def __init__(self, root: Path) -> None:
        self.latency_file = root / "latency"
        self.latency_file.write_text("0")
        port_file = root / "port"
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(port_file), str(self.latency_file)]
        )
        while not port_file.exists() or not port_file.read_text():
            time.sleep(0.05)
        self.port = int(port_file.read_text())

    def set_latency(self, ms: float) -> None:
        self.latency_file.write_text(str(ms))

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def run_ado(
    manifest: dict[str, str], cache: Path | None, steps: int, remote: RemoteConfig | None
) -> dict[str, float]:
    t0 = time.perf_counter()
    loader = MixtureLoader(
        manifest,
        batch_size=BATCH,
        seed=0,
        pack=PackConfig(seq_len=SEQ, eos_id=0, field="u16"),
        cache_dir=cache,
        remote=remote,
        weights=[0.6, 0.4],
    )
    first = None
    t1 = t0
    for step in range(steps):
        next(loader)
        if first is None:
            t1 = time.perf_counter()
            first = t1 - t0
        if step % 50 == 49:  # the weights move, as an online policy would move them
            loader.set_weights([0.3, 0.7] if (step // 50) % 2 == 0 else [0.7, 0.3])
    total = time.perf_counter() - t1  # after the first batch (construction is in ttfb)
    stats = loader.cache.stats.as_dict() if loader.cache is not None else {}
    loader.close()
    served = steps * BATCH * (SEQ + 1) * 2  # u16 payload handed out
    return {
        "ttfb": first or 0.0,
        "rows_s": (steps - 1) * BATCH / total,
        "tokens_s": (steps - 1) * BATCH * (SEQ + 1) / total,
        "downloaded": float(stats.get("bytes_downloaded", 0)),
        "served": float(served),
    }


def run_wds(urls: list[list[str]], steps: int) -> dict[str, float]:
    import webdataset as wds  # type: ignore[import-untyped]

    t0 = time.perf_counter()
    sources = [
        wds.DataPipeline(
            wds.ResampledShards(u, seed=0, deterministic=True), wds.tarfile_to_samples()
        )
        for u in urls
    ]
    mix = iter(wds.RandomMix(sources, probs=[0.6, 0.4]))
    first, tokens, rows = None, 0, 0
    buf: list[int] = []
    while rows < steps * BATCH:
        sample = next(mix)
        buf.extend(np.frombuffer(sample["u16"], dtype="<u2").tolist())
        buf.append(0)
        while len(buf) >= SEQ + 1:
            del buf[: SEQ + 1]
            rows += 1
            tokens += SEQ + 1
            if first is None:
                first = time.perf_counter() - t0
    total = time.perf_counter() - t0
    return {
        "ttfb": first or 0.0,
        "rows_s": rows / total,
        "tokens_s": tokens / total,
        "downloaded": float("nan"),
        "served": float(tokens * 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=int, default=8, help="shards per domain (2 domains)")
    ap.add_argument("--shard-mb", type=int, default=4)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--latency-ms", type=float, default=20.0)
    ap.add_argument("--serve", nargs=2, type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(*args.serve)
        return
    root = Path(tempfile.mkdtemp(prefix="ado-remote-bench-"))
    data = root / "data"
    write_corpus(data, 2, args.shards, args.shard_mb)
    s3 = LatencyS3(root)
    os.environ.update(
        AWS_ENDPOINT_URL=s3.endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    import boto3

    client = boto3.client("s3", endpoint_url=s3.endpoint)
    client.create_bucket(Bucket="bench")
    for p in sorted(data.rglob("*.tar")):
        client.upload_file(str(p), "bench", str(p.relative_to(data)))
    last = args.shards - 1
    s3_manifest = {f"d{d}": f"s3://bench/d{d}/shard-{{000..{last:03d}}}.tar" for d in range(2)}
    local_manifest = {f"d{d}": str(data / f"d{d}/shard-{{000..{last:03d}}}.tar") for d in range(2)}
    side_cache = ShardCache(root / "sidecar-writer")
    for d in range(2):
        for s in range(args.shards):
            side_cache.write_sidecar(f"s3://bench/d{d}/shard-{s:03d}.tar")
    shutil.rmtree(root / "sidecar-writer")

    results: dict[str, dict[str, float]] = {}
    run_ado(local_manifest, None, 2, None)  # builds the local sidecars
    results["local files"] = run_ado(local_manifest, None, args.steps, None)
    for latency in (0.0, args.latency_ms):
        s3.set_latency(latency)
        for label, cfg in (
            ("no prefetch", RemoteConfig(prefetch_bytes=0)),
            ("prefetch", RemoteConfig()),
        ):
            cache = root / f"cache-{latency}-{label}"
            name = f"s3 {latency:.0f} ms, {label}"
            results[name + ", cold"] = run_ado(s3_manifest, cache, args.steps, cfg)
            results[name + ", warm"] = run_ado(s3_manifest, cache, args.steps, cfg)
    if shutil.which("curl"):
        # presigned URLs: how curl reads a private bucket
        def presigned(d: int, s: int) -> str:
            params = {"Bucket": "bench", "Key": f"d{d}/shard-{s:03d}.tar"}
            return str(client.generate_presigned_url("get_object", Params=params))

        urls = [
            [f"pipe:curl -s -L '{presigned(d, s)}'" for s in range(args.shards)] for d in range(2)
        ]
        s3.set_latency(args.latency_ms)
        results[f"webdataset curl, s3 {args.latency_ms:.0f} ms"] = run_wds(urls, args.steps)
        s3.set_latency(0.0)
        local_urls = [
            [str(data / f"d{d}/shard-{s:03d}.tar") for s in range(args.shards)] for d in range(2)
        ]
        results["webdataset local files"] = run_wds(local_urls, args.steps)
    s3.stop()

    base = results["local files"]
    mb = 2 * args.shards * args.shard_mb
    print(
        f"2 domains x {args.shards} shards x {args.shard_mb} MB ({mb} MB), {args.steps} steps "
        f"of {BATCH} x {SEQ + 1} u16 tokens, weights moving every 50 steps"
    )
    print(
        f"{'setting':40s} {'first batch s':>13s} {'rows/s':>9s} {'Mtok/s':>8s} "
        f"{'vs local':>8s} {'downloaded MB':>13s} {'served MB':>9s}"
    )
    for name, r in results.items():
        print(
            f"{name:40s} {r['ttfb']:13.2f} {r['rows_s']:9.1f} {r['tokens_s'] / 1e6:8.2f} "
            f"{r['tokens_s'] / base['tokens_s']:8.2f} {r['downloaded'] / 1e6:13.1f} "
            f"{r['served'] / 1e6:9.1f}"
        )
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
