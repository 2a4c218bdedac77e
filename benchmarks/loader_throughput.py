"""Loader throughput: ado's MixtureLoader vs webdataset RandomMix and wids, on the same shards.

Prints (one run, page cache warm after writing):

* raw samples/s and payload MB/s for 4 KiB samples (3 members) mixed over 3 and 16 domains:
  ado ``MixtureLoader`` (batch 256), webdataset ``RandomMix`` over per-domain
  ``DataPipeline(ResampledShards(..., deterministic=True), tarfile_to_samples())``, and wids
  ``ShardListDataset`` per domain with a weighted domain pick per sample;
* packed tokens/s (u16 documents, seq_len 2048);
* index build time and bytes read for one large shard (``--big-shard-mb``, default 1024; 0 skips),
  against wids' pure-Python ``MMIndexedTar`` header walk;
* weight staleness in batches after a one-hot switch of the weights.

Usage: ``python benchmarks/loader_throughput.py [--dir DIR] [--seconds 3] [--big-shard-mb 1024]``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import random
import shutil
import sys
import tarfile
import tempfile
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import webdataset as wds  # type: ignore[import-untyped]
from ado.data import MixtureLoader, PackConfig, index_shard

PAYLOAD = 4096
BATCH = 256


def _import_wids() -> tuple[Any, str]:
    """wids imports ``torch.distributed`` at module level; shim it when torch is absent."""
    note = ""
    try:
        import torch  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        T = TypeVar("T")

        class Dataset(Generic[T]):
            pass

        class Sampler(Generic[T]):
            pass

        mods = {
            n: types.ModuleType(n)
            for n in ("torch", "torch.distributed", "torch.utils", "torch.utils.data")
        }
        mods["torch.distributed"].is_initialized = lambda: False  # type: ignore[attr-defined]
        mods["torch.distributed"].is_available = lambda: False  # type: ignore[attr-defined]
        mods["torch.utils.data"].get_worker_info = lambda: None  # type: ignore[attr-defined]
        mods["torch.utils.data"].Dataset = Dataset  # type: ignore[attr-defined]
        mods["torch.utils.data"].Sampler = Sampler  # type: ignore[attr-defined]
        mods["torch"].distributed = mods["torch.distributed"]  # type: ignore[attr-defined]
        mods["torch"].utils = mods["torch.utils"]  # type: ignore[attr-defined]
        mods["torch.utils"].data = mods["torch.utils.data"]  # type: ignore[attr-defined]
        for name, mod in mods.items():
            sys.modules.setdefault(name, mod)
        note = " (torch absent: wids imported with a minimal torch shim)"
    import wids  # type: ignore[import-untyped]

    return wids, note


def write_domains(root: Path, k: int, shards: int, per_shard: int) -> list[list[Path]]:
    """k domains of raw 4 KiB samples: ``bin`` (4096 B), ``cls`` and ``json`` members."""
    rng = np.random.default_rng(0)
    out = []
    for d in range(k):
        folder = root / f"raw-{d:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for s in range(shards):
            path = folder / f"shard-{s:03d}.tar"
            with wds.TarWriter(str(path), mtime=0.0) as sink:
                for i in range(per_shard):
                    sink.write(
                        {
                            "__key__": f"d{d:02d}-s{s:03d}-{i:06d}",
                            "bin": rng.bytes(PAYLOAD),
                            "cls": str(i % 10).encode(),
                            "json": b'{"domain": %d}' % d,
                        }
                    )
            paths.append(path)
        out.append(paths)
    return out


def _payload(sample: dict[str, Any]) -> int:
    n = 0
    for k, v in sample.items():
        if not k.startswith("__"):
            n += len(v.getvalue()) if hasattr(v, "getvalue") else len(v)
    return n


def timed(
    next_sample_batch: Callable[[], list[dict[str, Any]]], seconds: float
) -> tuple[float, float]:
    """(samples/s, payload MB/s) of repeatedly calling ``next_sample_batch`` for ``seconds``."""
    next_sample_batch()  # warm-up: opens shards, starts threads
    n = nbytes = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        batch = next_sample_batch()
        n += len(batch)
        nbytes += sum(_payload(s) for s in batch)
    dt = time.perf_counter() - start
    return n / dt, nbytes / dt / 1e6


def bench_ado(domains: list[list[Path]], seconds: float) -> tuple[float, float]:
    manifest = {f"d{i}": [str(p) for p in ps] for i, ps in enumerate(domains)}
    loader = MixtureLoader(manifest, BATCH, seed=0)

    def step() -> list[dict[str, Any]]:
        return next(loader).samples or []

    return timed(step, seconds)


def bench_randommix(domains: list[list[Path]], seconds: float) -> tuple[float, float]:
    sources = [
        wds.DataPipeline(
            wds.ResampledShards([str(p) for p in ps], seed=i, deterministic=True),
            wds.tarfile_to_samples(),
        )
        for i, ps in enumerate(domains)
    ]
    mix = iter(wds.RandomMix(sources, probs=[1.0] * len(sources)))

    def step() -> list[dict[str, Any]]:
        return [next(mix) for _ in range(BATCH)]

    return timed(step, seconds)


def bench_wids(wids: Any, domains: list[list[Path]], seconds: float) -> tuple[float, float]:
    with contextlib.redirect_stderr(io.StringIO()):  # wids prints each dataset it opens
        datasets = [
            wids.ShardListDataset(
                [{"url": str(p), "nsamples": index_shard(p)["samples"]} for p in ps],
                transformations=[],
            )
            for ps in domains
        ]
    rng = random.Random(0)
    weights = [1.0] * len(datasets)

    def step() -> list[dict[str, Any]]:
        out = []
        for _ in range(BATCH):
            ds = datasets[rng.choices(range(len(datasets)), weights)[0]]
            out.append(ds[rng.randrange(len(ds))])
        return out

    return timed(step, seconds)


def staleness_ado(domains: list[list[Path]]) -> int:
    manifest = {f"d{i}": [str(p) for p in ps] for i, ps in enumerate(domains[:3])}
    loader = MixtureLoader(manifest, 32, seed=0, weights=[1.0, 0.0, 0.0])
    for _ in range(5):
        next(loader)
    loader.set_weights([0.0, 0.0, 1.0])
    for lag in range(100):
        if set(next(loader).domain.tolist()) == {2}:
            return lag
    return -1


def staleness_randommix(domains: list[list[Path]], max_batches: int = 39) -> str:
    sources = [
        wds.DataPipeline(
            wds.ResampledShards([str(p) for p in ps], seed=i, deterministic=True),
            wds.tarfile_to_samples(),
        )
        for i, ps in enumerate(domains[:3])
    ]
    probs = [1.0, 0.0, 0.0]
    mix = wds.RandomMix(sources, probs=probs)
    it: Iterator[dict[str, Any]] = iter(mix)
    for _ in range(5 * 32):
        next(it)
    probs[:] = [0.0, 0.0, 1.0]  # what a trainer would do
    mix.probs = [0.0, 0.0, 1.0]
    for b in range(max_batches):
        batch = [next(it) for _ in range(32)]
        if all(s["__key__"].startswith("d02") for s in batch):
            return str(b)
    return f"never (> {max_batches} batches; probs are copied at __iter__)"


def bench_packed(root: Path, seconds: float) -> float:
    rng = np.random.default_rng(1)
    manifest = {}
    for d in range(3):
        folder = root / f"tok-{d}"
        folder.mkdir(parents=True, exist_ok=True)
        for s in range(2):
            with wds.TarWriter(str(folder / f"shard-{s}.tar"), mtime=0.0) as sink:
                for i in range(1000):
                    n = int(rng.integers(100, 2000))
                    toks = rng.integers(1, 50_000, size=n, dtype=np.uint16)
                    sink.write({"__key__": f"t{d}-{s}-{i:05d}", "u16": toks.tobytes()})
        manifest[f"t{d}"] = str(folder / "shard-{0..1}.tar")
    pack = PackConfig(seq_len=2048, eos_id=0, field="u16", dtype="int64")
    loader = MixtureLoader(manifest, 16, seed=0, pack=pack)
    next(loader)
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        batch = next(loader)
        assert batch.tokens is not None
        n += batch.tokens.size
    return n / (time.perf_counter() - start)


def big_shard(root: Path, mb: int, wids: Any) -> None:
    path = root / "big.tar"
    payload = np.random.default_rng(2).bytes(PAYLOAD)
    n = mb * 1024 * 1024 // 6656  # 6656 B of tar per 4 KiB sample with two small members
    t0 = time.perf_counter()
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for i in range(n):
            for ext, data in (("bin", payload), ("cls", b"1"), ("json", b"{}")):
                member = tarfile.TarInfo(f"{i:09d}.{ext}")
                member.size = len(data)
                tar.addfile(member, io.BytesIO(data))
    size = path.stat().st_size
    print(
        f"big shard: {size / 1e9:.2f} GB, {n} samples, written in {time.perf_counter() - t0:.1f} s"
    )
    t0 = time.perf_counter()
    info = index_shard(path, cache_dir=root / "cache")
    dt = time.perf_counter() - t0
    print(
        f"  ado index build: {dt:.2f} s, {info['bytes_read'] / 1e6:.1f} MB read "
        f"({100 * info['bytes_read'] / size:.1f}% of the file), {info['samples']} samples"
    )
    t0 = time.perf_counter()
    info = index_shard(path, cache_dir=root / "cache")
    print(f"  ado index load (sidecar cache): {time.perf_counter() - t0:.3f} s [{info['source']}]")
    if wids is not None:
        from wids.wids_mmtar import MMIndexedTar  # type: ignore[import-untyped]

        t0 = time.perf_counter()
        tar = MMIndexedTar(str(path))
        dt = time.perf_counter() - t0
        print(f"  wids MMIndexedTar (mmap, Python): {dt:.2f} s, {len(tar)} members")
        tar.close()
    path.unlink()


def main() -> None:
    """Run every scenario and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=None, help="work folder (default: a temp dir)")
    ap.add_argument("--seconds", type=float, default=3.0, help="seconds per throughput figure")
    ap.add_argument("--shards", type=int, default=4, help="shards per domain")
    ap.add_argument("--per-shard", type=int, default=500, help="samples per shard")
    ap.add_argument("--big-shard-mb", type=int, default=1024, help="0 skips the big shard")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ado-bench-", dir=args.dir))
    try:
        wids, note = _import_wids()
        t0 = time.perf_counter()
        domains = write_domains(root, 16, args.shards, args.per_shard)
        print(
            f"wrote 16 domains x {args.shards} shards x {args.per_shard} samples "
            f"({PAYLOAD} B + 2 small members) in {time.perf_counter() - t0:.1f} s under {root}"
        )
        t0 = time.perf_counter()
        MixtureLoader({f"d{i}": [str(p) for p in ps] for i, ps in enumerate(domains)}, 1)
        dt = time.perf_counter() - t0
        print(f"ado: first construction (indexes {16 * args.shards} shards): {dt:.2f} s")
        print(f"\nraw 4 KiB samples, batch {BATCH}, {args.seconds:g} s each{note}")
        print(f"{'domains':>8} {'loader':<34} {'samples/s':>12} {'MB/s':>9} {'vs RandomMix':>13}")
        for k in (3, 16):
            sub = domains[:k]
            rm = bench_randommix(sub, args.seconds)
            rows = [
                ("ado MixtureLoader", bench_ado(sub, args.seconds)),
                ("webdataset RandomMix(Resampled)", rm),
                ("wids ShardListDataset + pick", bench_wids(wids, sub, args.seconds)),
            ]
            for name, (sps, mbs) in rows:
                print(f"{k:>8} {name:<34} {sps:>12,.0f} {mbs:>9.1f} {sps / rm[0]:>12.1f}x")
        tps = bench_packed(root, args.seconds)
        print(f"\npacked tokens/s (u16 docs, seq_len 2048, batch 16): {tps:,.0f}")
        print(
            "\nweight staleness after a one-hot switch (batches of 32 until only the new domain):"
        )
        print(f"  ado MixtureLoader: {staleness_ado(domains)}")
        print(f"  webdataset RandomMix: {staleness_randommix(domains)}")
        print("  wids + per-sample pick in the main process: 0 (no DataLoader workers)")
        if args.big_shard_mb > 0:
            print()
            big_shard(root, args.big_shard_mb, wids)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
