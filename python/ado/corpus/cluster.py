"""Domains from data: split a built corpus's training samples into K clusters.

``ado corpus cluster --corpus SRC --out DIR -k K`` reads the training shards of a corpus built by
``ado corpus build`` (``KEY.u16`` token ids, ``KEY.json``), and writes a new corpus whose training
domains are K clusters of those samples: ``train/<cluster>/<cluster>-%05d.tar`` (the samples'
bytes unchanged, same shard format), ``manifest.yaml`` (prior weight = token share), and a report
of each cluster (``clusters.md``, and ``corpus.json["clusters"]``: size, top terms, which source
domains it drew from).

The held-out sets are **not** re-split: ``val/``, ``ood/``, ``val.yaml``, ``ood.yaml`` and
``tokenizer.json`` are copies of the source corpus's files (never hard links: a link changes the
source shard's ctime, which the loader of a run reading the source reads as a changed shard),
and ``corpus.json["domains"]`` keeps the source's domains, so a comparison of domain definitions
evaluates every run on the very same data (the original domains' held-out sets).

Features and clustering (scikit-learn):

* per sample, counts of its token ids and of its token bigrams (hashed into ``bigram_buckets``
  columns), weighted ``(1 + log tf) * idf`` and L2-normalised (:func:`sklearn.preprocessing.
  normalize`) — TF-IDF over token ids, so nothing is downloaded and any tokenizer works;
* :class:`sklearn.cluster.MiniBatchKMeans` fitted with ``partial_fit`` on batches of
  ``batch_size`` samples.

It streams: the shards are read three times (document frequencies; ``fit_passes`` fitting
passes; assignment and writing), one batch at a time, the source domains interleaved sample by
sample so that every batch mixes them. Memory is bounded by the batch, the document-frequency
vector, the K cluster centres and a K x vocabulary table of token counts (for the top terms) —
none of which grows with the corpus. The same corpus, K and seed give the same clusters and the
same bytes.

``per_domain=True`` splits every source domain into K sub-domains of its own
(``<domain>.cNN``) instead of clustering the whole corpus at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml
from tqdm import tqdm

from ado.corpus.build import CORPUS_FORMAT_VERSION, _brace, _sha256, _ShardWriter, build_lock
from ado.corpus.build import OWNED as BUILD_OWNED
from ado.corpus.tokenizer import CorpusTokenizer
from ado.errors import ConfigError

__all__ = ["ClusterConfig", "cluster_corpus"]

logger = logging.getLogger(__name__)

#: What a clustering writes into its output folder (besides the lock file): a corpus, plus
#: its cluster report.
OWNED = (*BUILD_OWNED, "clusters.md")

#: Files and folders taken unchanged from the source corpus.
HELD_OUT = ("val", "ood", "val.yaml", "ood.yaml", "tokenizer.json")


@dataclass
class ClusterConfig:
    """Clustering settings.

    Attributes:
        corpus: the source corpus (built by ``ado corpus build``).
        out: output folder (a new corpus).
        k: clusters (of the whole corpus, or of each domain with ``per_domain``).
        per_domain: split each source domain into ``k`` sub-domains.
        domains: source domains to read (default: all of the manifest's).
        seed: seed of the k-means initialisation.
        batch_size: samples per ``partial_fit`` / assignment batch (bounds memory).
        fit_passes: fitting passes over the shards.
        bigram_buckets: hashed bigram columns (the centres are dense: K x (vocab + buckets)).
        shard_bytes: target tar size of the cluster shards.
        top_terms: top terms per cluster in the report.
        force: replace a corpus already in ``out``.
        progress: progress bars.
    """

    corpus: Path
    out: Path
    k: int
    per_domain: bool = False
    domains: list[str] | None = None
    seed: int = 0
    batch_size: int = 2048
    fit_passes: int = 2
    bigram_buckets: int = 1 << 13
    shard_bytes: int = 16 << 20
    top_terms: int = 12
    force: bool = False
    progress: bool = True
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.k < 2:
            raise ConfigError(f"k must be at least 2, got {self.k}")
        for name in ("batch_size", "fit_passes", "bigram_buckets", "shard_bytes", "top_terms"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.batch_size < self.k:
            raise ConfigError(f"batch_size ({self.batch_size}) must be at least k ({self.k})")


@dataclass
class _Sample:
    domain: str
    key: str
    tokens: npt.NDArray[np.uint16]
    meta: dict[str, Any]


def _read_shard(path: Path) -> Iterator[tuple[str, npt.NDArray[np.uint16], dict[str, Any]]]:
    """``(key, token ids, meta)`` of each sample of one shard, streamed."""
    pending: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path, "r|") as tar:
        for member in tar:
            if not member.isfile():
                continue
            key, _, ext = member.name.rpartition(".")
            f = tar.extractfile(member)
            if f is None:
                continue
            parts = pending.setdefault(key, {})
            parts[ext] = f.read()
            if "u16" in parts and "json" in parts:
                del pending[key]
                meta = json.loads(parts["json"])
                yield key, np.frombuffer(parts["u16"], dtype="<u2"), meta
    if pending:
        raise ConfigError(f"{path}: samples without both .u16 and .json: {sorted(pending)[:3]}")


def _interleaved(shards: dict[str, list[Path]]) -> Iterator[_Sample]:
    """Every sample of every domain, the domains interleaved sample by sample (a fixed order)."""
    readers = {
        d: ((key, toks, meta) for path in paths for key, toks, meta in _read_shard(path))
        for d, paths in shards.items()
    }
    while readers:
        for d in list(readers):
            item = next(readers[d], None)
            if item is None:
                del readers[d]
                continue
            yield _Sample(d, item[0], item[1], item[2])


def _batches(shards: dict[str, list[Path]], size: int) -> Iterator[list[_Sample]]:
    batch: list[_Sample] = []
    for s in _interleaved(shards):
        batch.append(s)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class _Features:
    """Token-id TF-IDF features: ``vocab`` unigram columns, then ``buckets`` hashed bigrams."""

    def __init__(self, vocab: int, buckets: int) -> None:
        self.vocab = vocab
        self.buckets = buckets
        self.width = vocab + buckets
        self.df = np.zeros(self.width, dtype=np.int64)
        self.docs = 0
        self.idf: npt.NDArray[np.float64] | None = None

    def counts(self, batch: list[_Sample]) -> Any:
        """Raw term counts, a CSR matrix (samples x columns)."""
        from scipy.sparse import csr_matrix  # type: ignore[import-untyped]

        rows, cols = [], []
        for i, s in enumerate(batch):
            t = s.tokens.astype(np.int64)
            if t.size and int(t.max()) >= self.vocab:
                raise ConfigError(
                    f"sample {s.key} of {s.domain} holds token id {int(t.max())} >= vocab "
                    f"{self.vocab}"
                )
            bi = self.vocab + (t[:-1] * 1_000_003 + t[1:]) % self.buckets
            c = np.concatenate([t, bi])
            cols.append(c)
            rows.append(np.full(c.size, i, dtype=np.int64))
        r = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        c = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
        m = csr_matrix((np.ones(r.size, dtype=np.float64), (r, c)), shape=(len(batch), self.width))
        m.sum_duplicates()
        return m

    def add_df(self, batch: list[_Sample]) -> None:
        m = self.counts(batch)
        self.df += np.bincount(m.indices, minlength=self.width)
        self.docs += len(batch)

    def finish_df(self) -> None:
        self.idf = np.log((1.0 + self.docs) / (1.0 + self.df)) + 1.0

    def transform(self, batch: list[_Sample]) -> Any:
        from sklearn.preprocessing import normalize  # type: ignore[import-untyped]

        if self.idf is None:
            raise ConfigError("document frequencies were not computed")
        m = self.counts(batch)
        m.data = (1.0 + np.log(m.data)) * self.idf[m.indices]
        return normalize(m, norm="l2", copy=False)


def check_out(out: Path, force: bool) -> None:
    """Refuse a non-empty ``out`` unless ``force``; with ``force`` remove only our own files."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a folder")
    if out.is_dir() and any(p.name != ".ado-build.lock" for p in out.iterdir()):
        if not force:
            raise ConfigError(f"{out} is not empty; pass --force to replace a corpus built there")
        for name in OWNED:
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()


def _copy(src: Path, dst: Path) -> None:
    """Copy a file or a folder. Never a hard link: linking changes the source shard's ctime,
    which a loader that indexed it reads as "shard changed" (a run reading the source corpus
    would stop)."""
    if src.is_dir():
        dst.mkdir(parents=True, exist_ok=True)
        for child in sorted(src.iterdir()):
            _copy(child, dst / child.name)
        return
    shutil.copyfile(src, dst)


def _fit_group(
    cfg: ClusterConfig, shards: dict[str, list[Path]], feats: _Features, k: int, label: str
) -> Any:
    """A fitted MiniBatchKMeans of ``shards`` (``feats`` gets their document frequencies)."""
    from sklearn.cluster import MiniBatchKMeans  # type: ignore[import-untyped]

    for batch in tqdm(
        _batches(shards, cfg.batch_size),
        desc=f"cluster {label}: document frequencies",
        unit="batch",
        disable=not cfg.progress,
    ):
        feats.add_df(batch)
    feats.finish_df()
    if feats.docs < k:
        raise ConfigError(f"{label}: {feats.docs} samples cannot make {k} clusters")
    km = MiniBatchKMeans(
        n_clusters=k,
        random_state=cfg.seed,
        batch_size=cfg.batch_size,
        n_init=3,
        init_size=min(feats.docs, max(cfg.batch_size, 3 * k)),
        reassignment_ratio=0.0,
    )
    for p in range(cfg.fit_passes):
        for batch in tqdm(
            _batches(shards, cfg.batch_size),
            desc=f"cluster {label}: fit pass {p + 1}/{cfg.fit_passes}",
            unit="batch",
            disable=not cfg.progress,
        ):
            if not hasattr(km, "cluster_centers_") and len(batch) < k:
                raise ConfigError(f"{label}: the first batch holds fewer than k={k} samples")
            km.partial_fit(feats.transform(batch))
    return km


def _top_terms(counts: npt.NDArray[np.int64], tok: CorpusTokenizer, n: int) -> list[list[str]]:
    """Per cluster, the tokens most over-represented in it (count x log lift), as text."""
    total = counts.sum(axis=0).astype(np.float64)
    p_all = total / max(total.sum(), 1.0)
    out = []
    for row in counts.astype(np.float64):
        p = row / max(row.sum(), 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            score = np.where(p > 0, p * np.log(p / np.where(p_all > 0, p_all, 1.0)), -np.inf)
        top = np.argsort(-score, kind="stable")[:n]
        out.append([tok.token_text(int(t)) for t in top if np.isfinite(score[t])])
    return out


def cluster_corpus(cfg: ClusterConfig) -> dict[str, Any]:
    """Cluster ``cfg.corpus`` into ``cfg.out``.

    Returns:
        The new ``corpus.json`` content.

    Raises:
        ConfigError: not a built corpus, a domain not in it, ``out`` not empty (without
            ``force``), fewer samples than clusters.
    """
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    from ado.data import Manifest

    src = Path(cfg.corpus)
    info_path = src / "corpus.json"
    if not info_path.exists() or not (src / "manifest.yaml").exists():
        raise ConfigError(f"{src}: not a built corpus (no corpus.json / manifest.yaml)")
    if Path(cfg.out).resolve() == src.resolve():
        raise ConfigError("--out must differ from the source corpus")
    info = json.loads(info_path.read_text())
    shards = Manifest.load(src / "manifest.yaml").resolve()
    if cfg.domains is not None:
        unknown = [d for d in cfg.domains if d not in shards]
        if unknown:
            raise ConfigError(f"domains not in {src}/manifest.yaml: {unknown}")
        shards = {d: shards[d] for d in cfg.domains}
    tok = CorpusTokenizer.load(src)
    vocab = int(info.get("tokenizer", {}).get("vocab_size", tok.vocab_size))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    # one BLAS/OpenMP thread: the same floating-point order on every machine
    with build_lock(out), threadpool_limits(1):
        check_out(out, cfg.force)
        groups = {d: {d: p} for d, p in shards.items()} if cfg.per_domain else {"all": shards}
        manifest: dict[str, Any] = {}
        clusters: dict[str, Any] = {}
        hashes: dict[str, str] = {}
        for label, group in groups.items():
            feats = _Features(vocab, cfg.bigram_buckets)
            km = _fit_group(cfg, group, feats, cfg.k, label)
            prefix = f"{label}.c" if cfg.per_domain else "c"
            digits = max(2, len(str(cfg.k - 1)))
            names = [f"{prefix}{j:0{digits}d}" for j in range(cfg.k)]
            writers: dict[int, _ShardWriter] = {}
            samples = np.zeros(cfg.k, dtype=np.int64)
            tokens = np.zeros(cfg.k, dtype=np.int64)
            term_counts = np.zeros((cfg.k, vocab), dtype=np.int64)
            sources: list[dict[str, int]] = [{} for _ in range(cfg.k)]
            for batch in tqdm(
                _batches(group, cfg.batch_size),
                desc=f"cluster {label}: assign + write",
                unit="batch",
                disable=not cfg.progress,
            ):
                labels = km.predict(feats.transform(batch))
                for s, j in zip(batch, labels.tolist(), strict=True):
                    if j not in writers:
                        folder = out / "train" / names[j]
                        writers[j] = _ShardWriter(folder, names[j], cfg.shard_bytes)
                    meta = {**s.meta, "domain": names[j], "source_domain": s.domain}
                    writers[j].write(s.key, s.tokens, meta)
                    samples[j] += 1
                    tokens[j] += s.tokens.size
                    term_counts[j] += np.bincount(s.tokens, minlength=vocab)
                    sources[j][s.domain] = sources[j].get(s.domain, 0) + 1
            terms = _top_terms(term_counts, tok, cfg.top_terms)
            for j in sorted(writers):
                w = writers[j]
                w.close()
                for p in w.paths:
                    hashes[str(p.relative_to(out))] = _sha256(p)
                manifest[names[j]] = {"shards": [_brace(names[j], len(w.paths), "train")]}
                clusters[names[j]] = {
                    "train": {
                        "samples": int(samples[j]),
                        "tokens": int(tokens[j]),
                        "shards": len(w.paths),
                    },
                    "source_domains": dict(sorted(sources[j].items(), key=lambda x: -x[1])),
                    "top_terms": terms[j],
                }
            empty = [names[j] for j in range(cfg.k) if j not in writers]
            if empty:
                logger.warning("%s: %d clusters got no sample: %s", label, len(empty), empty)
        total = sum(c["train"]["tokens"] for c in clusters.values())
        for name in manifest:
            manifest[name]["weight"] = round(clusters[name]["train"]["tokens"] / total, 8)
        (out / "manifest.yaml").write_text(yaml.safe_dump({"domains": manifest}, sort_keys=False))
        for name in HELD_OUT:
            if (src / name).exists():
                _copy(src / name, out / name)
        held = {
            p: h for p, h in info.get("shards", {}).items() if p.split("/", 1)[0] in ("val", "ood")
        }
        new_info: dict[str, Any] = {
            "format_version": CORPUS_FORMAT_VERSION,
            **cfg.metadata,
            "recipe": info.get("recipe"),
            "clustered_from": {
                "path": str(src.resolve()),
                "corpus_json_sha256": hashlib.sha256(info_path.read_bytes()).hexdigest(),
                "k": cfg.k,
                "per_domain": cfg.per_domain,
                "seed": cfg.seed,
                "features": f"token-id TF-IDF: {vocab} unigrams + {cfg.bigram_buckets} hashed "
                "bigrams, (1 + log tf) * idf, L2",
                "method": f"sklearn MiniBatchKMeans, {cfg.fit_passes} partial_fit passes of "
                f"{cfg.batch_size}-sample batches",
                "source_domains": list(shards),
            },
            "tokenizer": info["tokenizer"],
            "field": info.get("field", "u16"),
            "python": info.get("python"),
            # the held-out sets are the source's: its domains are what compare evaluates
            "domains": info["domains"],
            "ood": info.get("ood", {}),
            "ood_missing": info.get("ood_missing", []),
            "clusters": clusters,
            "shards": {**hashes, **held},
        }
        (out / "corpus.json").write_text(json.dumps(new_info, indent=2) + "\n")
        (out / "clusters.md").write_text(cluster_report(new_info))
    return new_info


def cluster_report(info: dict[str, Any]) -> str:
    """A Markdown table of the clusters: size, token share, source domains, top terms."""
    clusters = info["clusters"]
    total = sum(c["train"]["tokens"] for c in clusters.values()) or 1
    meta = info["clustered_from"]
    lines = [
        f"# {len(clusters)} clusters of {meta['path']}",
        "",
        f"k = {meta['k']}{' per domain' if meta['per_domain'] else ''}, seed {meta['seed']}; "
        f"features: {meta['features']}; {meta['method']}.",
        "",
        "| cluster | samples | tokens | share | source domains (samples) | top terms |",
        "|---|---|---|---|---|---|",
    ]
    for name, c in clusters.items():
        src = ", ".join(f"{d} {n}" for d, n in list(c["source_domains"].items())[:4])
        more = len(c["source_domains"]) - 4
        if more > 0:
            src += f" (+{more} more)"
        terms = " ".join(repr(t)[1:-1].replace("|", "\\|") for t in c["top_terms"])
        lines.append(
            f"| {name} | {c['train']['samples']:,} | {c['train']['tokens']:,} | "
            f"{c['train']['tokens'] / total:.3f} | {src} | `{terms}` |"
        )
    return "\n".join(lines) + "\n"
