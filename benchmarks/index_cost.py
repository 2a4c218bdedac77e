"""Cost of indexing a shard (header walk + content hashes) and of loading its sidecar.

Writes one shard of 4 KiB samples and one of 1 MiB samples (``--mb`` each, default 256), page
cache warm, and prints the median of 3 fresh index builds (sidecar removed each time) and of 3
sidecar loads, in ms and MB/s of shard. Run it with an older ado to compare versions.

Usage: ``python benchmarks/index_cost.py [--mb 256] [--dir DIR]``.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tarfile
import tempfile
import time
from pathlib import Path

from ado.data import index_shard


def write(path: Path, mb: int, size: int) -> None:
    payload = bytes(range(256)) * (size // 256)
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for i in range(mb * (1 << 20) // (size + 512)):
            info = tarfile.TarInfo(f"s{i:08d}.bin")
            info.size = size
            tar.addfile(info, io.BytesIO(payload))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=256)
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="ado-index-cost-"))
    for label, size in (("4 KiB samples", 4096), ("1 MiB samples", 1 << 20)):
        shard = root / f"shard-{size}.tar"
        write(shard, args.mb, size)
        shard.read_bytes()  # warm the page cache
        side = Path(str(shard) + ".adoidx")
        builds, loads = [], []
        for _ in range(3):
            side.unlink(missing_ok=True)
            t = time.perf_counter()
            info = index_shard(shard)
            builds.append(time.perf_counter() - t)
            assert info["source"] == "built"
            t = time.perf_counter()
            assert index_shard(shard)["source"] == "cache"
            loads.append(time.perf_counter() - t)
        b, c = statistics.median(builds), statistics.median(loads)
        mb = shard.stat().st_size / 1e6
        print(
            f"{label}: {mb:.0f} MB, {info['samples']} samples: build {b * 1e3:.1f} ms "
            f"({mb / b:.0f} MB/s, {int(info['bytes_read']) / 1e6:.2f} MB of headers walked); "
            f"sidecar load {c * 1e3:.1f} ms"
        )


if __name__ == "__main__":
    main()
