"""Resources and scale (issue 7 §4): memory over long runs, open descriptors, 1,000 domains.

Prints; asserts nothing. Parts (``--part``, default all):

* ``policy``: resident memory every 10% of ``--updates`` ADO policy updates (``policies/ado.yaml``,
  K = 22, first fit moved to step 500 so the estimator buffer fills and thins).
* ``loader``: resident memory and open descriptors every 10% of ``--batches`` loader batches
  (4 domains, batch 32, read-ahead on, one weight change per batch).
* ``fds``: open descriptors while drawing from ``--fd-shards`` shards spread over 100 domains, with
  ``max_open_files`` 256 (the default) and 16.
* ``scale``: ``--domains`` domains x ``--shards-per-domain`` shards: index time (cold, then from
  the sidecars), per-batch time (batch 256, iid and deficit) and per-update time of the ADO
  policy with K = ``--domains``.

Default run (a few minutes on 2 cores)::

    python benchmarks/hardening_scale.py

Full scale of the issue (10^6 policy updates; the defaults already run 10^5 loader batches and
10^4 shards)::

    python benchmarks/hardening_scale.py --updates 1000000
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import statistics
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from ado import StepStats, load_policy
from ado.data import MixtureLoader
from ado.policy import Policy

ROOT = Path(__file__).resolve().parents[1]


def rss_mib() -> float:
    """Current resident set size in MiB (Linux /proc)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def open_fds() -> int:
    """Open file descriptors of this process."""
    return len(os.listdir("/proc/self/fd"))


def write_shard(path: Path, prefix: str, n: int, payload: int = 64) -> None:
    """A WebDataset shard of ``n`` samples with ``txt`` and ``bin`` members."""
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for i in range(n):
            for ext, data in (("txt", f"{prefix}{i}".encode()), ("bin", bytes(payload))):
                info = tarfile.TarInfo(f"{prefix}{i:05d}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def make_domains(root: Path, domains: int, shards: int, per_shard: int) -> dict[str, list[str]]:
    """``domains`` folders of ``shards`` shards each; returns the manifest mapping."""
    out = {}
    for d in range(domains):
        folder = root / f"d{d:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for s in range(shards):
            p = folder / f"shard-{s:05d}.tar"
            if not p.exists():
                write_shard(p, f"d{d}s{s}-", per_shard)
            paths.append(str(p))
        out[f"d{d:04d}"] = paths
    return out


def ado_policy(k: int, rng: np.random.Generator) -> tuple[Policy, Callable[[int], StepStats]]:
    """The ADO preset for ``k`` domains and a synthetic power-law step stream."""
    mu = rng.dirichlet(np.ones(k))
    policy = load_policy(
        ROOT / "policies" / "ado.yaml",
        domains=[f"d{i}" for i in range(k)],
        prior=mu,
        overrides={"ignore_steps": 0, "start_step": 500, "min_points": 50},
    )
    eps = rng.uniform(1.5, 3.0, k)
    beta = rng.uniform(5.0, 30.0, k)
    alpha = rng.uniform(0.1, 0.5, k)
    seen = np.zeros(k)

    def step(t: int) -> StepStats:
        counts = rng.multinomial(256, policy.weights).astype(np.float64)
        seen[:] += counts
        loss = eps + beta * np.maximum(seen, 1.0) ** -alpha
        return StepStats(step=t, counts=counts, loss_sums=counts * loss)

    return policy, step


def part_policy(updates: int) -> None:
    rng = np.random.default_rng(0)
    policy, step = ado_policy(22, rng)
    print(f"[policy] ADO, K=22, {updates} updates: resident memory (MiB)")
    marks = {max(1, updates * i // 10) for i in range(1, 11)}
    first = None
    t0 = time.perf_counter()
    for t in range(updates):
        policy.update(step(t))
        if t + 1 in marks:
            rss = rss_mib()
            first = rss if first is None else first
            print(
                f"  after {t + 1:>9} updates: {rss:8.1f} MiB  ({time.perf_counter() - t0:6.1f} s)"
            )
    print(f"  growth from 10% to 100% of the run: {rss_mib() - (first or 0):+.1f} MiB")


def part_loader(root: Path, batches: int) -> None:
    manifest = make_domains(root / "loader", 4, 8, 250)
    loader = MixtureLoader(manifest, 32, seed=0, cache_dir=root / "cache", readahead_bytes=8 << 20)
    rng = np.random.default_rng(0)
    print(f"[loader] 4 domains x 8 x 250 samples, batch 32, read-ahead 8 MiB, {batches} batches")
    marks = {max(1, batches * i // 10) for i in range(1, 11)}
    first = None
    t0 = time.perf_counter()
    for b in range(batches):
        loader.set_weights(rng.dirichlet(np.ones(4)))
        next(loader)
        if b + 1 in marks:
            rss = rss_mib()
            first = rss if first is None else first
            print(
                f"  after {b + 1:>7} batches: {rss:8.1f} MiB, {open_fds()} fds, "
                f"epochs {loader.epochs}  ({time.perf_counter() - t0:6.1f} s)"
            )
    print(f"  growth from 10% to 100% of the run: {rss_mib() - (first or 0):+.1f} MiB")


def part_fds(root: Path, shards: int) -> None:
    domains = 100
    manifest = make_domains(root / "fds", domains, max(1, shards // domains), 5)
    total = sum(len(v) for v in manifest.values())
    base = open_fds()
    print(f"[fds] {total} shards over {domains} domains (5 samples each); {base} fds before")
    for cap in (256, 16):
        loader = MixtureLoader(
            manifest, 64, seed=0, cache_dir=root / "cache", max_open_files=cap, readahead_threads=2
        )
        peak = 0
        for _ in range(500):
            next(loader)
            peak = max(peak, open_fds())
        open_now, opened = loader.open_files
        print(
            f"  max_open_files={cap:>3}: peak {peak - base} fds above baseline over 500 batches "
            f"(shard files open {open_now}, opened {opened} times)"
        )
        del loader


def part_scale(root: Path, domains: int, per_domain: int, batches: int) -> None:
    t0 = time.perf_counter()
    manifest = make_domains(root / "scale", domains, per_domain, 10)
    print(
        f"[scale] {domains} domains x {per_domain} shards = {domains * per_domain} shards "
        f"(10 samples each); written in {time.perf_counter() - t0:.1f} s"
    )
    cache = root / "scale-cache"
    for label in ("cold (header walk + sidecar write)", "warm (sidecars)"):
        t0 = time.perf_counter()
        loader = MixtureLoader(manifest, 256, seed=0, cache_dir=cache, index_threads=2)
        print(f"  index, {label}: {time.perf_counter() - t0:.2f} s")
    rng = np.random.default_rng(0)
    for mode in ("iid", "deficit"):
        loader = MixtureLoader(manifest, 256, seed=0, cache_dir=cache, mode=mode)
        times = []
        for _ in range(batches):
            w = rng.dirichlet(np.ones(domains))
            t0 = time.perf_counter()
            loader.set_weights(w)
            next(loader)
            times.append(time.perf_counter() - t0)
        print(
            f"  batch 256, {mode:>7}, weights changed every batch: median "
            f"{statistics.median(times) * 1e3:.2f} ms, p90 {np.percentile(times, 90) * 1e3:.2f} ms "
            f"per batch over {batches} batches; open fds {open_fds()}"
        )
    policy, step = ado_policy(domains, np.random.default_rng(1))
    for t in range(500):
        policy.update(step(t))
    times = []
    for t in range(500, 500 + 200):
        t0 = time.perf_counter()
        policy.update(step(t))
        times.append(time.perf_counter() - t0)
    print(
        f"  ADO policy, K={domains}: per update median {statistics.median(times) * 1e3:.2f} ms, "
        f"mean {statistics.mean(times) * 1e3:.2f} ms, max {max(times) * 1e3:.1f} ms "
        f"(200 updates after the first fit, refits included)"
    )


def main() -> None:
    """Run the selected parts."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=["policy", "loader", "fds", "scale", "all"], default="all")
    p.add_argument("--updates", type=int, default=200_000, help="policy updates (issue: 10^6)")
    p.add_argument("--batches", type=int, default=100_000, help="loader batches (issue: 10^5)")
    p.add_argument("--fd-shards", type=int, default=10_000)
    p.add_argument("--domains", type=int, default=1000)
    p.add_argument("--shards-per-domain", type=int, default=10)
    p.add_argument("--scale-batches", type=int, default=200)
    p.add_argument("--dir", type=Path, help="work folder (default: a temporary one)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.dir or Path(tmp)
        if args.part in ("policy", "all"):
            part_policy(args.updates)
        if args.part in ("loader", "all"):
            part_loader(root, args.batches)
        if args.part in ("fds", "all"):
            part_fds(root, args.fd_shards)
        if args.part in ("scale", "all"):
            part_scale(root, args.domains, args.shards_per_domain, args.scale_batches)


if __name__ == "__main__":
    main()
