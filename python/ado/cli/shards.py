"""``ado shards``: index WebDataset shards and write manifests.

* ``ado shards index PATTERN...`` walks the tar headers of every shard once (Rust) and caches the
  index as a ``<shard>.adoidx`` sidecar (or under ``--cache-dir``), with a progress bar. Remote
  shards (``s3://``, ``gs://``, ``az://``, ``http(s)://``) are downloaded once into the node cache,
  indexed, and their sidecar is uploaded beside them (``URL.adoidx``), so loaders never need to
  download a shard just to index it.
* ``ado shards manifest DIR`` writes a manifest with one domain per sub-directory of ``DIR``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ado._io import cache_root
from ado.cli._common import plain
from ado.data import Manifest, index_shard
from ado.data.cache import ShardCache
from ado.data.loader import default_cache_dir
from ado.data.manifest import expand_sources
from ado.data.remote import is_remote, redact
from ado.errors import AdoError, ConfigError

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``shards`` subcommand group."""
    p: argparse.ArgumentParser = sub.add_parser(
        "shards",
        help="index WebDataset shards, write manifests",
        description=plain(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    shards_sub = p.add_subparsers(dest="shards_command", required=True, metavar="ACTION")

    idx = shards_sub.add_parser(
        "index",
        help="build (or validate) the index sidecars of shards",
        description="Index uncompressed tar shards once; patterns use brace expansion and globs "
        "(e.g. 'data/web/shard-{000..099}.tar').",
    )
    idx.add_argument(
        "patterns", nargs="+", metavar="PATTERN", help="shard paths, globs or brace patterns"
    )
    idx.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="fallback folder for sidecars that cannot be written next to their shard "
        f"(default {default_cache_dir()})",
    )
    idx.add_argument("--json", action="store_true", help="print one JSON line per shard")
    idx.add_argument(
        "--storage-options",
        type=json.loads,
        default=None,
        metavar="JSON",
        help="fsspec options for remote shards, as JSON (credentials are better left to the "
        "providers' environment variables and config files)",
    )
    idx.add_argument(
        "--force", action="store_true", help="rebuild the sidecars of remote shards that have one"
    )
    idx.set_defaults(func=run_index)

    man = shards_sub.add_parser(
        "manifest",
        help="write a manifest: one domain per sub-directory",
        description="Write DIR/manifest.yaml (or --output) with one domain per sub-directory of "
        "DIR that holds shards.",
    )
    man.add_argument("dir", type=Path, help="a folder with one sub-folder of shards per domain")
    man.add_argument("--pattern", default="*.tar", help="shard file pattern (default *.tar)")
    man.add_argument("--output", "-o", type=Path, default=None, help="default DIR/manifest.yaml")
    man.add_argument("--force", action="store_true", help="overwrite an existing manifest")
    man.set_defaults(func=run_manifest)


def run_index(args: argparse.Namespace) -> int:
    """Index every shard matching the patterns; print a summary."""
    options = args.storage_options
    paths = expand_sources(args.patterns, storage_options=options)
    cache = args.cache_dir if args.cache_dir is not None else default_cache_dir()
    remote: ShardCache | None = None
    if any(is_remote(p) for p in paths):
        root = args.cache_dir if args.cache_dir is not None else cache_root() / "remote"
        remote = ShardCache(root, storage_options=options)
    totals = {"samples": 0, "bytes_read": 0, "file_size": 0}
    sources: dict[str, int] = {}
    start = time.perf_counter()
    failures: list[str] = []
    for path in tqdm(paths, desc="indexing", unit="shard", disable=args.json or len(paths) < 2):
        shown = redact(path) if is_remote(path) else path
        try:
            if remote is not None and is_remote(path):
                info = remote.write_sidecar(path, force=args.force)
            else:
                info = index_shard(path, cache_dir=cache)
        except AdoError as err:  # index the rest; report every failure at the end
            failures.append(f"{shown}: {type(err).__name__}: {err}")
            continue
        for key in totals:
            totals[key] += int(str(info[key]))
        sources[str(info["source"])] = sources.get(str(info["source"]), 0) + 1
        if args.json:
            print(json.dumps({"path": shown, **info}))
    seconds = time.perf_counter() - start
    if not args.json:
        print(
            f"{len(paths)} shards, {totals['samples']} samples, "
            f"{totals['file_size'] / 1e6:.1f} MB of tar, {totals['bytes_read'] / 1e6:.2f} MB of "
            f"headers read, {seconds:.2f} s ({', '.join(f'{v} {k}' for k, v in sources.items())})"
        )
    if remote is not None and sources.get("local"):
        print(
            f"ado shards index: {sources['local']} sidecar(s) could not be written beside their "
            f"shards (the store refused the upload); they are kept in the node cache "
            f"{remote.root}: give the loader cache_dir={str(remote.root)!r} (or "
            f"--cache-dir {remote.root}) and it reads them from there",
            file=sys.stderr if args.json else sys.stdout,
        )
    for line in failures:
        print(f"ado shards index: failed: {line}", file=sys.stderr)
    if failures:
        print(f"ado shards index: {len(failures)} of {len(paths)} shards failed", file=sys.stderr)
        return 2
    return 0


def run_manifest(args: argparse.Namespace) -> int:
    """Write a manifest for a directory of per-domain folders."""
    out = args.output if args.output is not None else args.dir / "manifest.yaml"
    if out.exists() and not args.force:
        raise ConfigError(f"{out} exists; pass --force to overwrite it")
    manifest = Manifest.from_dir(args.dir, pattern=args.pattern)
    if out.parent.resolve() != args.dir.resolve():
        manifest = manifest.model_copy(update={"base_dir": str(args.dir.resolve())})
    manifest.save(out)
    counts = ", ".join(f"{n}: {len(p)} shards" for n, p in manifest.resolve().items())
    print(f"wrote {out}: {len(manifest.domains)} domains ({counts})")
    return 0
