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

``--peers PYTHON`` measures instead the table against the loaders users would pick instead:
ado, mosaicml-streaming (MDS shards) and litdata (its chunks), all on the same moto server at
0/20/100 ms per request, 2 ranks on one node (two processes sharing the node cache), cold and
warm, static weights and (ado only) weights changing every 50 steps; plus the fetch layer alone,
fsspec (s3fs) against obstore (Rust object_store). ``PYTHON`` is an interpreter whose
environment has mosaicml-streaming, litdata and obstore (``benchmarks/remote_peers.py`` runs
there; the peers pin numpy/transformers apart from ado's dev extra). Each row is the median of
``--repeats`` runs (the local-file baselines of at least 5); cold rows read ``--steps`` (choose
one pass over the corpus) from an empty cache, warm rows ``--warm-steps`` (default 4x: steady
state, past the per-process check of each cached shard), each against local files over as
many steps; time to first batch is its own column. ``--clients fsspec obstore`` gives ado's
rows once per ``RemoteConfig.client`` (before/after in one run), ``--prefetch 4:8 16:16`` once
per ``RemoteConfig(prefetch_threads, prefetch_shards)``; ``--setup-s 1`` adds a cold row per
latency where ``loader.prefetch()`` overlaps 1 s of model setup (first batch timed after it).
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


def bench_bucket(s3: LatencyS3, files: list[tuple[Path, str]]) -> Any:
    """Point this process's S3 clients at ``s3`` (dummy credentials), create the bucket
    ``bench`` and upload ``files`` (path, key) into it; the boto3 client."""
    os.environ.update(
        AWS_ENDPOINT_URL=s3.endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    import boto3

    client = boto3.client("s3", endpoint_url=s3.endpoint)
    client.create_bucket(Bucket="bench")
    for path, key in files:
        client.upload_file(str(path), "bench", key)
    return client


def run_ado(
    manifest: dict[str, str],
    cache: Path | None,
    steps: int,
    remote: RemoteConfig | None,
    *,
    rank: int = 0,
    world: int = 1,
    changing: bool = True,
    setup_s: float = 0.0,
) -> dict[str, float]:
    t0 = time.perf_counter()
    loader = MixtureLoader(
        manifest,
        batch_size=BATCH,
        seed=0,
        rank=rank,
        world_size=world,
        pack=PackConfig(seq_len=SEQ, eos_id=0, field="u16"),
        cache_dir=cache,
        remote=remote,
        weights=[0.6, 0.4],
    )
    if setup_s > 0:
        # a training script's model setup between building the loader and its first batch,
        # overlapped by the downloads that loader.prefetch() starts; the first batch is timed
        # from the end of the setup (what the training loop waits for)
        loader.prefetch()
        time.sleep(setup_s)
        t0 = time.perf_counter()
    first = None
    t1 = t0
    for step in range(steps):
        next(loader)
        if first is None:
            t1 = time.perf_counter()
            first = t1 - t0
        if changing and step % 50 == 49:  # the weights move, as an online policy would
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


def s3_corpus(
    root: Path, data: Path, shards: int, prefix: str
) -> tuple[dict[str, str], dict[str, str]]:
    """(S3 manifest, local manifest) of the 2-domain corpus under ``data``, uploaded under
    ``prefix`` of bucket ``bench``, with the sidecars written as ``ado shards index`` would."""
    last = shards - 1
    s3_manifest = {
        f"d{d}": f"s3://bench/{prefix}d{d}/shard-{{000..{last:03d}}}.tar" for d in range(2)
    }
    local_manifest = {f"d{d}": str(data / f"d{d}/shard-{{000..{last:03d}}}.tar") for d in range(2)}
    side_cache = ShardCache(root / "sidecar-writer")
    for d in range(2):
        for s in range(shards):
            side_cache.write_sidecar(f"s3://bench/{prefix}d{d}/shard-{s:03d}.tar")
    shutil.rmtree(root / "sidecar-writer")
    return s3_manifest, local_manifest


def _ranks(cmds: list[list[str]], env: dict[str, str]) -> list[dict[str, Any]]:
    """Run one process per rank at once; their JSON lines."""
    import json

    procs = [
        subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for c in cmds
    ]
    out = []
    for p in procs:
        o, e = p.communicate(timeout=900)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmds[0][:4])}... failed: {e[-3000:]}")
        out.append(json.loads(o.strip().splitlines()[-1]))
    return out


def peer_table(args: argparse.Namespace) -> None:
    """ado against mosaicml-streaming and litdata, and fsspec against obstore (module doc)."""
    import json

    peers = str(Path(__file__).with_name("remote_peers.py"))
    root = Path(tempfile.mkdtemp(prefix="ado-peers-bench-"))
    data = root / "data"
    write_corpus(data, 2, args.shards, args.shard_mb)
    for kind in () if args.ado_only else ("mds", "lit"):
        for d in range(2):
            src, out = str(data / f"d{d}"), str(root / kind / f"d{d}")
            subprocess.run(
                [args.peers, peers, "convert", kind, src, out, "--chunk", str(args.shard_mb << 20)],
                check=True,
                capture_output=True,
            )
    s3 = LatencyS3(root)
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": s3.endpoint,
        "S3_ENDPOINT_URL": s3.endpoint,  # mosaicml-streaming's name for it
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    os.environ.update(env)
    import boto3

    client = boto3.client("s3", endpoint_url=s3.endpoint)
    client.create_bucket(Bucket="bench")
    for folder, prefix in ((data, "tar"), (root / "mds", "mds"), (root / "lit", "lit")):
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                client.upload_file(str(p), "bench", f"{prefix}/{p.relative_to(folder)}")
    manifest, local_manifest = s3_corpus(root, data, args.shards, "tar/")
    warm_steps = args.warm_steps or 4 * args.steps
    steps_of = {"cold": args.steps, "warm": warm_steps}
    results: dict[str, dict[str, float]] = {}
    run_ado(local_manifest, None, 2, None)  # local sidecars

    def ado(
        cache: Path, changing: bool, man: dict[str, str], client: str = "auto", *, steps: int,
        prefetch: str = "", setup_s: float = 0.0,
    ) -> dict[str, float]:  # fmt: skip
        cfg = {
            "manifest": man, "cache": str(cache), "steps": steps, "changing": changing,
            "client": client, "prefetch": prefetch, "setup_s": setup_s,
        }  # fmt: skip
        cmds = [
            [sys.executable, __file__, "--ado-worker", json.dumps({**cfg, "rank": r})]
            for r in range(2)
        ]
        return _merge(_ranks(cmds, env))

    def peer(kind: str, local: Path, port: int, steps: int) -> dict[str, float]:
        prefix = "mds" if kind == "streaming" else "lit"
        cmds = [
            [args.peers, peers, "worker", kind, "--remote", f"s3://bench/{prefix}",
             "--local", str(local), "--rank", str(r), "--world", "2", "--port", str(port),
             "--rows", str(steps * BATCH)]
            for r in range(2)
        ]  # fmt: skip
        return _merge(_ranks(cmds, env))

    def measured(name: str, run: Callable[[int], dict[str, float]], repeats: int = 0) -> None:
        """``run(repeat)`` ``repeats`` (default ``args.repeats``) times; the median of each
        column."""
        runs = [run(i) for i in range(repeats or args.repeats)]
        results[name] = {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
        col = "mb_s" if "mb_s" in runs[0] else "rows_s"
        results[name]["spread"] = max(r[col] for r in runs) / max(1e-9, min(r[col] for r in runs))

    # the baselines of the cold rows (one pass over the corpus) and of the warm rows (steady
    # state: the per-process check of each cached shard is a start-up cost)
    for temp, steps in steps_of.items():
        measured(
            f"local files, static, {steps} steps ({temp})",
            lambda i, steps=steps: ado(root / "unused", False, local_manifest, steps=steps),
            repeats=max(5, args.repeats),  # the baseline of every ratio: cheap, so more runs
        )
    port = 29600
    for ms in args.latencies:
        s3.set_latency(ms)
        variants = [(c, p) for c in args.clients for p in args.prefetch]
        # (changing, temp, setup s): the cold/warm rows, then the early-prefetch row
        rows = [(c, t, 0.0) for c in (False, True) for t in ("cold", "warm")]
        if args.setup_s > 0:
            rows.append((False, "cold", args.setup_s))
        for client, prefetch in variants:
            tags = [client] if args.clients != ["auto"] else []
            if prefetch:
                fields = _prefetch(prefetch)
                tags.append(
                    f"{fields['prefetch_threads']} threads, {fields['prefetch_shards']} ahead"
                )
            who = f"ado ({', '.join(tags)})" if tags else "ado"
            for changing, temp, setup_s in rows:
                label = "changing" if changing else "static"
                early = f", prefetch() + {setup_s:g} s setup" if setup_s else ""
                # a fresh node cache per repeat; warm reads the cache its cold run filled

                def run(
                    i: int, changing: bool = changing, client: str = client,
                    cache: str = f"ado-{client}-{prefetch.replace(':', 'x')}-{ms}-{label}"
                    + ("-early" if setup_s else ""),
                    steps: int = steps_of[temp], prefetch: str = prefetch, setup_s: float = setup_s,
                ) -> dict[str, float]:  # fmt: skip
                    return ado(
                        root / f"{cache}-{i}", changing, manifest, client, steps=steps,
                        prefetch=prefetch, setup_s=setup_s,
                    )  # fmt: skip

                measured(f"{who}, {ms:.0f} ms, {label}, {temp}{early}", run)
        for kind in () if args.ado_only else ("streaming", "lit"):
            name = "mosaicml-streaming" if kind == "streaming" else "litdata"
            for temp in ("cold", "warm"):

                def one(
                    i: int, kind: str = kind, local: str = f"{kind}-{ms}",
                    steps: int = steps_of[temp],
                ) -> dict[str, float]:  # fmt: skip
                    nonlocal port
                    port += 1
                    return peer(kind, root / f"{local}-{i}", port, steps)

                measured(f"{name}, {ms:.0f} ms, static, {temp}", one)
        keys = ",".join(f"tar/d{d}/shard-{s:03d}.tar" for d in range(2) for s in range(args.shards))
        for layer in () if args.ado_only else ("fsspec", "obstore"):

            def fetch(i: int, layer: str = layer, keys: str = keys) -> dict[str, float]:
                out = subprocess.run(
                    [args.peers, peers, "fetch", layer, "--bucket", "bench", "--keys", keys,
                     "--threads", str(args.fetch_threads)],
                    check=True, capture_output=True, text=True, env=env,
                )  # fmt: skip
                r = json.loads(out.stdout.strip().splitlines()[-1])
                return {
                    "ttfb": float("nan"),
                    "rows_s": float("nan"),
                    "downloaded": float(r["bytes"]),
                    "mb_s": r["bytes"] / 1e6 / r["seconds"],
                }

            at_once = "" if args.fetch_threads == 4 else f" ({args.fetch_threads} at a time)"
            measured(f"fetch layer {layer}{at_once}, {ms:.0f} ms", fetch)
    s3.stop()
    bases = {
        t: results[f"local files, static, {n} steps ({t})"]["rows_s"] for t, n in steps_of.items()
    }
    mb = 2 * args.shards * args.shard_mb
    print(
        f"2 domains x {args.shards} shards x {args.shard_mb} MB ({mb} MB) on moto S3, 2 ranks on "
        f"one node, rows of {BATCH} x {SEQ + 1} u16 tokens per rank; cold: {args.steps} steps "
        f"(one pass over the corpus) from an empty node cache, warm: {warm_steps} steps from the "
        "cache that cold run filled, each against local files over as many steps; latency "
        "added per request; rows/s summed over ranks (from the first batch on), first batch = "
        f"slower rank; each row the median of {args.repeats} runs (local files: of "
        f"{max(5, args.repeats)}; cold: a fresh cache each), "
        "max/min the spread of rows/s (fetch: MB/s) over them"
    )
    w = max(42, *(len(name) for name in results))
    print(
        f"| {'setting':{w}s} | {'first batch s':>13s} | {'rows/s':>8s} | {'vs local':>8s} | "
        f"{'downloaded MB':>13s} | {'fetch MB/s':>10s} | {'max/min':>7s} |"
    )
    print(f"|{'-' * (w + 2)}|{'-' * 15}|{'-' * 10}|{'-' * 10}|{'-' * 15}|{'-' * 12}|{'-' * 9}|")
    for name, r in results.items():
        print(
            f"| {name:{w}s} | {r['ttfb']:13.2f} | {r['rows_s']:8.0f} | "
            f"{r['rows_s'] / bases['warm' if 'warm' in name else 'cold']:8.2f} | "
            f"{r['downloaded'] / 1e6:13.1f} | "
            f"{r.get('mb_s', float('nan')):10.1f} | {r['spread']:7.2f} |"
        )
    shutil.rmtree(root, ignore_errors=True)


def _merge(ranks: list[dict[str, Any]]) -> dict[str, float]:
    return {
        "ttfb": max(float(r["ttfb"]) for r in ranks),
        "rows_s": sum(float(r["rows_s"]) for r in ranks),
        "downloaded": float(sum(float(r["downloaded"]) for r in ranks)),
    }


def _prefetch(spec: str) -> dict[str, int]:
    """``"THREADS:SHARDS"`` as RemoteConfig fields (``""``: the defaults); ValueError if it is
    not of that form."""
    if not spec:
        return {}
    parts = spec.split(":")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"--prefetch {spec!r}: expected THREADS:SHARDS, e.g. 16:16")
    return {"prefetch_threads": int(parts[0]), "prefetch_shards": int(parts[1])}


def ado_worker(spec: str) -> None:
    import json

    cfg = json.loads(spec)
    r = run_ado(
        cfg["manifest"],
        Path(cfg["cache"]),
        cfg["steps"],
        RemoteConfig(client=cfg.get("client", "auto"), **_prefetch(cfg.get("prefetch", ""))),
        rank=cfg["rank"],
        world=2,
        changing=cfg["changing"],
        setup_s=float(cfg.get("setup_s", 0.0)),
    )
    print(json.dumps(r))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=int, default=8, help="shards per domain (2 domains)")
    ap.add_argument("--shard-mb", type=int, default=4)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--latency-ms", type=float, default=20.0)
    ap.add_argument("--serve", nargs=2, type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--ado-worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--peers", metavar="PYTHON", help="the peer table (see the module doc)")
    ap.add_argument("--repeats", type=int, default=3, help="peer table: runs per row (median)")
    ap.add_argument(
        "--latencies", type=float, nargs="+", default=[0.0, 20.0, 100.0], help="peer table: ms"
    )
    ap.add_argument("--ado-only", action="store_true", help="peer table: ado and local only")
    ap.add_argument(
        "--warm-steps", type=int, default=0, help="peer table: steps of warm rows (4 x --steps)"
    )
    ap.add_argument(
        "--clients", nargs="+", default=["auto"], choices=["auto", "obstore", "fsspec"],
        help="peer table: ado's rows once per RemoteConfig.client",
    )  # fmt: skip
    ap.add_argument(
        "--prefetch", nargs="+", default=[""], metavar="THREADS:SHARDS",
        help="peer table: ado's rows once per RemoteConfig (prefetch_threads, prefetch_shards), "
        "e.g. 4:8 16:16 (default: RemoteConfig's defaults)",
    )  # fmt: skip
    ap.add_argument(
        "--fetch-threads", type=int, default=4, metavar="N",
        help="peer table: objects the fetch-layer rows download at once",
    )  # fmt: skip
    ap.add_argument(
        "--setup-s", type=float, default=0.0, metavar="S",
        help="peer table: also a cold row per latency where loader.prefetch() runs during S "
        "seconds of (simulated) model setup before the first batch",
    )  # fmt: skip
    args = ap.parse_args()
    if args.setup_s < 0:
        ap.error("--setup-s must be >= 0")
    if args.fetch_threads < 1:
        ap.error("--fetch-threads must be at least 1")
    for spec in args.prefetch:
        try:
            _prefetch(spec)
        except ValueError as err:
            ap.error(str(err))
    if args.serve:
        serve(*args.serve)
        return
    if args.ado_worker:
        ado_worker(args.ado_worker)
        return
    if args.peers:
        peer_table(args)
        return
    root = Path(tempfile.mkdtemp(prefix="ado-remote-bench-"))
    data = root / "data"
    write_corpus(data, 2, args.shards, args.shard_mb)
    s3 = LatencyS3(root)
    tars = sorted(data.rglob("*.tar"))
    client = bench_bucket(s3, [(p, str(p.relative_to(data))) for p in tars])
    s3_manifest, local_manifest = s3_corpus(root, data, args.shards, "")

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
