"""The peers of ``benchmarks/remote_throughput.py --peers``: mosaicml-streaming and litdata
reading the same token corpus from the same S3-compatible server, and the fetch layer alone
(fsspec's s3fs against obstore, Rust ``object_store``).

Runs in a virtual environment of its own (the peers pin numpy/transformers differently from
ado's dev extra); it never imports ado. Each command prints one JSON line.

    python remote_peers.py convert {mds,lit} SRC OUT   # tar shards (u16 docs) -> MDS / litdata
    python remote_peers.py worker {streaming,lit} ...  # one rank reading a 2-domain mix
    python remote_peers.py fetch {fsspec,obstore} ...  # download the objects, 4 at a time
"""

from __future__ import annotations

import argparse
import json
import os
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

SEQ = 2048


def _docs(src: Path) -> list[bytes]:
    out = []
    for shard in sorted(src.glob("*.tar")):
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                f = tar.extractfile(m)
                if f is not None:
                    out.append(f.read())
    return out


def convert(kind: str, src: Path, out: Path, chunk: int) -> None:
    docs = _docs(src)
    if kind == "mds":
        from streaming import MDSWriter

        with MDSWriter(out=str(out), columns={"u16": "bytes"}, size_limit=chunk) as w:
            for d in docs:
                w.write({"u16": d})
    else:
        from litdata.streaming.writer import BinaryWriter

        w = BinaryWriter(str(out), chunk_bytes=chunk)
        for i, d in enumerate(docs):
            w.add_item(i, {"u16": d})
        w.done()
        w.merge()
    print(json.dumps({"docs": len(docs)}))


def _dir_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and p.suffix != ".lock")


def worker(kind: str, args: argparse.Namespace) -> None:
    """One rank: the 2-domain mix (0.6/0.4), until ``rows`` rows of SEQ+1 tokens are read."""
    import torch.distributed as dist

    os.environ.update(
        RANK=str(args.rank),
        WORLD_SIZE=str(args.world),
        LOCAL_RANK=str(args.rank),
        LOCAL_WORLD_SIZE=str(args.world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(args.port),
    )
    dist.init_process_group("gloo", rank=args.rank, world_size=args.world)
    t0 = time.perf_counter()
    local = Path(args.local)
    if kind == "streaming":
        from streaming import Stream, StreamingDataset

        streams = [
            Stream(remote=f"{args.remote}/d{d}", local=str(local / f"d{d}"), proportion=p)
            for d, p in enumerate((0.6, 0.4))
        ]
        ds: Any = StreamingDataset(
            streams=streams, batch_size=32, shuffle=True, shuffle_seed=0, download_timeout=120
        )
    else:
        import litdata.streaming.downloader as dl
        from litdata import CombinedStreamingDataset, StreamingDataset

        # obstore (inside litdata) refuses plain http unless told; the real S3 is https
        dl._OBSTORE_CLIENT_OPTIONS = {**dl._OBSTORE_CLIENT_OPTIONS, "allow_http": "true"}
        opts = {"endpoint_url": os.environ["AWS_ENDPOINT_URL"]}
        parts = [
            StreamingDataset(
                f"{args.remote}/d{d}",
                storage_options=opts,
                cache_dir=str(local / f"d{d}"),
                shuffle=True,
                seed=0,
            )
            for d in range(2)
        ]
        ds = CombinedStreamingDataset(parts, weights=[0.6, 0.4], iterate_over_all=False)
    it = iter(ds)
    tokens, first, t1 = 0, None, t0
    target = args.rows * (SEQ + 1)
    while tokens < target:
        try:
            sample = next(it)
        except StopIteration:  # this rank's share of the epoch is read: the next epoch
            it = iter(ds)
            sample = next(it)
        tokens += len(sample["u16"]) // 2 + 1  # + the EOS a packer would add
        if first is None and tokens >= 32 * (SEQ + 1):
            t1 = time.perf_counter()
            first = t1 - t0
    total = time.perf_counter() - t1
    dist.barrier()
    print(
        json.dumps(
            {
                "ttfb": first,
                "rows_s": (tokens - 32 * (SEQ + 1)) / (SEQ + 1) / total,
                "downloaded": _dir_bytes(local) if args.rank == 0 else 0,
            }
        )
    )
    dist.destroy_process_group()


def fetch(kind: str, args: argparse.Namespace) -> None:
    """Download every key (``--threads`` at a time) through one fetch layer; bytes and
    seconds."""
    keys = args.keys.split(",")
    if kind == "fsspec":
        import s3fs

        fs = s3fs.S3FileSystem(skip_instance_cache=True)

        def get(key: str) -> int:
            return len(fs.cat_file(f"{args.bucket}/{key}"))
    else:
        import obstore
        from obstore.store import S3Store

        store = S3Store(
            args.bucket,
            config={
                "endpoint": os.environ["AWS_ENDPOINT_URL"],
                "region": "us-east-1",
                "access_key_id": "testing",
                "secret_access_key": "testing",
                "virtual_hosted_style_request": False,
            },
            client_options={"allow_http": True},
        )

        def get(key: str) -> int:
            return len(bytes(obstore.get(store, key).bytes()))

    t0 = time.perf_counter()  # the client is built (and its library imported) before
    with ThreadPoolExecutor(args.threads) as pool:
        got = sum(pool.map(get, keys))
    print(json.dumps({"seconds": time.perf_counter() - t0, "bytes": got}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("convert")
    c.add_argument("kind", choices=["mds", "lit"])
    c.add_argument("src", type=Path)
    c.add_argument("out", type=Path)
    c.add_argument("--chunk", type=int, default=4 << 20)
    w = sub.add_parser("worker")
    w.add_argument("kind", choices=["streaming", "lit"])
    w.add_argument("--remote", required=True)
    w.add_argument("--local", required=True)
    w.add_argument("--rank", type=int, default=0)
    w.add_argument("--world", type=int, default=1)
    w.add_argument("--port", type=int, default=29511)
    w.add_argument("--rows", type=int, default=3200)
    f = sub.add_parser("fetch")
    f.add_argument("kind", choices=["fsspec", "obstore"])
    f.add_argument("--bucket", required=True)
    f.add_argument("--keys", required=True)
    f.add_argument("--threads", type=int, default=4)
    args = ap.parse_args()
    if args.cmd == "convert":
        convert(args.kind, args.src, args.out, args.chunk)
    elif args.cmd == "worker":
        worker(args.kind, args)
    else:
        fetch(args.kind, args)


if __name__ == "__main__":
    main()
