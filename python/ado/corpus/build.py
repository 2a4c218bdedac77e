"""The corpus pipeline shared by every recipe: collect, deduplicate, split, tokenise, write shards.

A recipe gives, per domain, named sub-sources that yield :class:`Document` objects in a fixed order.
:func:`build_corpus` then

1. cuts each document into samples of at most ``max_sample_bytes`` at blank lines, dropping
   paragraphs already seen in the domain (exact duplicates after stripping whitespace). Samples are
   short (2 KB by default) because the loader packs a sample into consecutive rows: with 64 KB
   samples, a domain's rows in a short run come from a handful of documents, its training loss
   jumps from one document to the next (that noise, not learning, drove ADO's fits), and a
   held-out evaluation of a few batches scores one or two documents per domain;
2. assigns each document to the ``train``, ``val`` or ``tok`` split by a hash of its ``source``
   (so no document straddles splits), round-robins the sub-sources sample by sample and stops a
   domain once its training text reaches the size cap (every sub-source keeps its share);
3. trains the tokenizer on an equal number of bytes per text domain from the ``tok`` split (held
   out from training and validation), or uses plain bytes;
4. writes ``train/<domain>/<domain>-%05d.tar`` and ``val/<domain>/...`` WebDataset shards holding
   ``KEY.u16`` (token ids) and ``KEY.json`` (``{"domain", "source"}``), plus ``manifest.yaml``
   (training shards, prior weight = token share), ``val.yaml``, ``tokenizer.json`` and
   ``corpus.json`` (recipe, versions, sizes, sha256 of every shard);
5. writes the recipe's out-of-distribution held-out sets, if it has any: text from sources that
   no training domain draws from, whole (no split), capped like a validation split, tokenised
   with the same tokenizer (which never sees them) into ``ood/<set>/...`` shards listed in
   ``ood.yaml``. A set whose sources yield nothing on this machine is left out (logged, and
   listed under ``ood_missing`` in ``corpus.json``).

Everything is ordered and seeded, tar headers are fixed (mtime 0, uid/gid 0, no user names), so the
same inputs give the same bytes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import logging
import os
import re
import shutil
import sys
import tarfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from tqdm import tqdm

from ado.corpus.tokenizer import CorpusTokenizer, check_vocab_size, train_bpe
from ado.errors import ConfigError

__all__ = [
    "CORPUS_FORMAT_VERSION",
    "LOCK_NAME",
    "BuildConfig",
    "Document",
    "DomainRecipe",
    "build_corpus",
    "build_lock",
    "check_out_dir",
    "split_of",
]

logger = logging.getLogger(__name__)

#: Version of the ``corpus.json`` layout.
CORPUS_FORMAT_VERSION = 1

_PARA = re.compile(r"\n[ \t]*\n")

#: The lock file of a build in progress (see :func:`build_lock`); not part of the corpus.
LOCK_NAME = ".ado-build.lock"
_HELD: set[str] = set()  # folders whose build lock this process holds
#: Files and folders a build writes into its output folder (removed by ``force``).
OWNED = (
    "train",
    "val",
    "ood",
    "manifest.yaml",
    "val.yaml",
    "ood.yaml",
    "tokenizer.json",
    "corpus.json",
)


@dataclass(frozen=True, slots=True)
class Document:
    """One source document.

    Attributes:
        source: stable identifier (a path relative to its package, a module name...): the split
            hash and the samples' ``.json`` use it.
        text: its text.
    """

    source: str
    text: str


Source = Callable[[], Iterable[Document]]


@dataclass(frozen=True)
class DomainRecipe:
    """How to make one domain.

    Attributes:
        name: domain name (a folder name).
        sources: ``(sub-source name, callable returning documents)`` in round-robin order.
        noise_bytes: for a control domain of uniformly random bytes: its size (then ``sources`` is
            empty).
    """

    name: str
    sources: list[tuple[str, Source]] = field(default_factory=list)
    noise_bytes: int = 0


@dataclass(frozen=True)
class BuildConfig:
    """Build settings.

    Attributes:
        out: output folder.
        tokenizer: ``"bpe"`` (trained here) or ``"bytes"``.
        vocab_size: BPE vocabulary size.
        cap_bytes: per-domain cap on training text (UTF-8 bytes; ``None``: no cap).
        val_permille: held-out validation share, by source hash (per mille).
        tok_permille: tokenizer-training share, by source hash (per mille).
        tok_sample_bytes: tokenizer training text per text domain.
        max_sample_bytes: longest sample; longer documents are cut at blank lines (see the module
            docstring for why it is small).
        shard_bytes: target tar size.
        seed: seed of the noise domain.
        force: replace an existing build in ``out``.
        metadata: extra JSON-safe fields for ``corpus.json`` (recipe, package versions...).
        progress: show progress bars.
    """

    out: Path
    tokenizer: Literal["bpe", "bytes"] = "bpe"
    vocab_size: int = 8192
    cap_bytes: int | None = 8_000_000
    val_permille: int = 20
    tok_permille: int = 20
    tok_sample_bytes: int = 1_000_000
    max_sample_bytes: int = 2048
    shard_bytes: int = 16 << 20
    seed: int = 0
    force: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("tok_sample_bytes", "shard_bytes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        check_vocab_size(self.vocab_size)
        if self.max_sample_bytes < 64:
            raise ConfigError(f"max_sample_bytes must be at least 64, got {self.max_sample_bytes}")
        for name in ("val_permille", "tok_permille"):
            if not 0 <= getattr(self, name) <= 1000:
                raise ConfigError(f"{name} must be in [0, 1000], got {getattr(self, name)}")
        if self.cap_bytes is not None and self.cap_bytes < 1:
            raise ConfigError(f"cap_bytes must be positive or None, got {self.cap_bytes}")


def split_of(source: str, val_permille: int, tok_permille: int) -> str:
    """``"val"``, ``"tok"`` or ``"train"`` by ``sha1(source) % 1000``."""
    h = int.from_bytes(hashlib.sha1(source.encode("utf-8")).digest()[:8], "big") % 1000
    if h < val_permille:
        return "val"
    if h < val_permille + tok_permille:
        return "tok"
    return "train"


def check_out_dir(out: Path, force: bool) -> None:
    """Refuse a non-empty ``out`` unless ``force``; with ``force`` remove only a build's own files.

    Raises:
        ConfigError: ``out`` is a file, or is non-empty and ``force`` is off.
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a folder")
    if out.is_dir() and any(p.name != LOCK_NAME for p in out.iterdir()):
        if not force:
            raise ConfigError(f"{out} is not empty; pass --force to replace a corpus built there")
        for name in OWNED:
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()


def _samples(doc: Document, seen: set[bytes], max_bytes: int) -> Iterator[str]:
    """Cut ``doc`` into samples of at most ``max_bytes`` at blank lines, dropping paragraphs
    already in ``seen`` (exact duplicates, whitespace-stripped)."""
    buf: list[str] = []
    size = 0
    for para in _PARA.split(doc.text):
        key = para.strip()
        if not key:
            continue
        digest = hashlib.sha1(key.encode("utf-8")).digest()
        if digest in seen:
            continue
        seen.add(digest)
        n = len(para.encode("utf-8")) + 2
        if buf and size + n > max_bytes:
            yield "\n\n".join(buf)
            buf, size = [], 0
        while n > max_bytes:  # one huge paragraph: cut at line ends, then hard
            raw = para.encode("utf-8")
            cut = raw.rfind(b"\n", 0, max_bytes)
            cut = cut if cut > 0 else max_bytes
            yield raw[:cut].decode("utf-8", errors="ignore")
            para = raw[cut:].decode("utf-8", errors="ignore").lstrip("\n")
            n = len(para.encode("utf-8")) + 2
        if para.strip():
            buf.append(para)
            size += n
    if buf:
        yield "\n\n".join(buf)


@dataclass
class _Split:
    sources: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    nbytes: int = 0


@dataclass
class _Collected:
    name: str
    splits: dict[str, _Split]
    sub_bytes: dict[str, int]
    noise: bool = False


def _collect(recipe: DomainRecipe, cfg: BuildConfig) -> _Collected:
    splits = {s: _Split() for s in ("train", "val", "tok")}
    sub_bytes = {name: 0 for name, _ in recipe.sources}
    seen: set[bytes] = set()

    def stream(name: str, source: Source) -> Iterator[tuple[str, str, str, str]]:
        for doc in source():
            split = split_of(doc.source, cfg.val_permille, cfg.tok_permille)
            for text in _samples(doc, seen, cfg.max_sample_bytes):
                yield name, doc.source, text, split

    streams = [stream(n, s) for n, s in recipe.sources]
    cap = cfg.cap_bytes
    full = False  # training text reached the cap: only look for missing held-out text
    while streams:
        alive = []
        for it in streams:
            item = next(it, None)
            if item is None:
                continue
            alive.append(it)
            name, source, text, split = item
            n = len(text.encode("utf-8"))
            part = splits[split]
            # held-out splits are capped in proportion, so a cap keeps them small too
            if split != "train" and cap is not None and part.nbytes >= _held_out_cap(cfg):
                continue
            if full and (split == "train" or part.texts):
                continue
            part.sources.append(source)
            part.texts.append(text)
            part.nbytes += n
            if split == "train":
                sub_bytes[name] += n
            if cap is not None and splits["train"].nbytes >= cap:
                full = True
            if full and splits["val"].texts and splits["tok"].texts:
                alive = []
                break
        streams = alive
    for split in ("train", "val"):
        if not splits[split].texts:
            raise ConfigError(
                f"domain {recipe.name!r}: no {split} text (its sources yielded too little; "
                "is the package installed?)"
            )
    return _Collected(recipe.name, splits, sub_bytes)


def _held_out_cap(cfg: BuildConfig) -> float:
    """Bytes a held-out split may hold: 5 % of the training cap plus 64 KB."""
    return (cfg.cap_bytes if cfg.cap_bytes is not None else 80_000_000) * 0.05 + 65536


def _collect_ood(recipe: DomainRecipe, cfg: BuildConfig) -> _Split:
    """All the text of an out-of-distribution set (no split), its sub-sources round-robin, up to
    the held-out cap."""
    part = _Split()
    seen: set[bytes] = set()

    def stream(source: Source) -> Iterator[tuple[str, str]]:
        for doc in source():
            for text in _samples(doc, seen, cfg.max_sample_bytes):
                yield doc.source, text

    streams = [stream(s) for _, s in recipe.sources]
    cap = _held_out_cap(cfg)
    while streams and part.nbytes < cap:
        alive = []
        for it in streams:
            item = next(it, None)
            if item is None:
                continue
            alive.append(it)
            part.sources.append(item[0])
            part.texts.append(item[1])
            part.nbytes += len(item[1].encode("utf-8"))
            if part.nbytes >= cap:
                break
        streams = alive
    return part


def _noise(recipe: DomainRecipe, cfg: BuildConfig) -> _Collected:
    rng = np.random.default_rng([cfg.seed, 0x6E6F697365])
    splits = {s: _Split() for s in ("train", "val", "tok")}
    doc_bytes = 4096
    total = 0
    i = 0
    while total < recipe.noise_bytes or not splits["val"].texts:
        source = f"random/{i:06d}"
        data = rng.bytes(doc_bytes)
        split = split_of(source, max(cfg.val_permille, 50), 0)
        part = splits[split]
        part.sources.append(source)
        part.texts.append(data.hex())  # kept as hex; turned back into bytes when encoding
        part.nbytes += doc_bytes
        total += doc_bytes if split == "train" else 0
        i += 1
    return _Collected(recipe.name, splits, {"random": total}, noise=True)


class _ShardWriter:
    """Deterministic tar writer: sorted keys, fixed headers, size-bounded shards."""

    def __init__(self, folder: Path, name: str, shard_bytes: int) -> None:
        self.folder = folder
        self.name = name
        self.shard_bytes = shard_bytes
        self.paths: list[Path] = []
        self._tar: tarfile.TarFile | None = None
        self._size = 0
        folder.mkdir(parents=True, exist_ok=True)

    def _open(self) -> tarfile.TarFile:
        if self._tar is None or self._size >= self.shard_bytes:
            self.close()
            path = self.folder / f"{self.name}-{len(self.paths):05d}.tar"
            self.paths.append(path)
            self._tar = tarfile.open(path, "w", format=tarfile.USTAR_FORMAT)  # noqa: SIM115
            self._size = 0
        return self._tar

    def _add(self, tar: tarfile.TarFile, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = 0
        info.mode = 0o644
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        tar.addfile(info, io.BytesIO(data))
        self._size += 512 + (len(data) + 511) // 512 * 512

    def write(self, key: str, tokens: np.ndarray, meta: dict[str, str]) -> None:
        tar = self._open()
        self._add(tar, f"{key}.u16", tokens.astype("<u2").tobytes())
        self._add(tar, f"{key}.json", json.dumps(meta, sort_keys=True).encode("utf-8"))

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()
            self._tar = None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _brace(name: str, n: int, split: str) -> str:
    return (
        f"{split}/{name}/{name}-{{00000..{n - 1:05d}}}.tar"
        if n > 1
        else (f"{split}/{name}/{name}-00000.tar")
    )


def build_corpus(
    recipes: list[DomainRecipe], cfg: BuildConfig, ood: Sequence[DomainRecipe] = ()
) -> dict[str, Any]:
    """Build a corpus from ``recipes`` into ``cfg.out``.

    Args:
        recipes: the domains, in manifest order.
        cfg: build settings.
        ood: out-of-distribution held-out sets (text no domain of ``recipes`` draws from).

    Returns:
        The ``corpus.json`` content.

    Raises:
        ConfigError: ``out`` is not empty (without ``force``), a domain has no text, bad settings.
    """
    if not recipes:
        raise ConfigError("a corpus needs at least one domain")
    names = [r.name for r in recipes]
    if len(set(names)) != len(names):
        raise ConfigError(f"duplicate domain names in {names}")
    ood_names = [r.name for r in ood]
    if len(set(ood_names)) != len(ood_names) or any(r.noise_bytes for r in ood):
        raise ConfigError(f"out-of-distribution sets need distinct names and text: {ood_names}")
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    with build_lock(out):  # two builds into one folder never mix their files
        return _build_locked(recipes, cfg, out, ood)


@contextlib.contextmanager
def build_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``out`` (``out/.ado-build.lock``, ``flock``) for a build; a
    second build into the same folder waits for the first, then finds it not empty (and
    refuses without ``force``). The lock is released when the process ends, however it ends.
    Re-entrant within a process (a caller may hold it around a build, e.g. build-if-missing)."""
    out.mkdir(parents=True, exist_ok=True)
    key = str(out.resolve())
    if key in _HELD:
        yield
        return
    fd = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    _HELD.add(key)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.warning("%s: another build is writing here; waiting for it to finish", out)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        _HELD.discard(key)
        os.close(fd)  # releases the lock


def _build_locked(
    recipes: list[DomainRecipe], cfg: BuildConfig, out: Path, ood: Sequence[DomainRecipe]
) -> dict[str, Any]:
    check_out_dir(out, cfg.force)

    collected: list[_Collected] = []
    bar = tqdm(recipes, desc="corpus: collect", unit="domain", disable=not cfg.progress)
    for recipe in bar:
        bar.set_postfix_str(recipe.name)
        collected.append(_noise(recipe, cfg) if recipe.noise_bytes else _collect(recipe, cfg))
        logger.info(
            "%s: %.2f MB train, %.2f MB val",
            recipe.name,
            collected[-1].splits["train"].nbytes / 1e6,
            collected[-1].splits["val"].nbytes / 1e6,
        )

    if cfg.tokenizer == "bpe":
        sample: list[str] = []
        for c in collected:
            if c.noise:
                continue
            # the tok split, then (if it is short) the validation split, never training text
            pool = c.splits["tok"].texts + c.splits["val"].texts
            got = 0
            for t in pool:
                if got >= cfg.tok_sample_bytes:
                    break
                piece = t.encode("utf-8")[: cfg.tok_sample_bytes - got].decode("utf-8", "ignore")
                sample.append(piece)
                got += len(piece.encode("utf-8"))
        if cfg.progress:
            print(
                f"corpus: training a {cfg.vocab_size}-token BPE on {len(sample)} texts",
                file=sys.stderr,
            )
        tok = train_bpe(sample, cfg.vocab_size)
    elif cfg.tokenizer == "bytes":
        tok = CorpusTokenizer.plain_bytes()
    else:
        raise ConfigError(f"unknown tokenizer {cfg.tokenizer!r} (bpe or bytes)")
    tok.save(out)

    manifest: dict[str, Any] = {}
    val_manifest: dict[str, Any] = {}
    domains_meta: dict[str, Any] = {}
    shard_hashes: dict[str, str] = {}
    wbar = tqdm(collected, desc="corpus: tokenise + write", unit="domain", disable=not cfg.progress)
    for c in wbar:
        wbar.set_postfix_str(c.name)
        meta: dict[str, Any] = {"sub_source_bytes": c.sub_bytes, "noise": c.noise}
        for split in ("train", "val"):
            part = c.splits[split]
            if c.noise:
                ids = [tok.byte_ids(bytes.fromhex(t)) for t in part.texts]
            else:
                ids = tok.encode_batch(part.texts)
            writer = _ShardWriter(out / split / c.name, c.name, cfg.shard_bytes)
            prefix = "v" if split == "val" else ""
            for i, (src, toks) in enumerate(zip(part.sources, ids, strict=True)):
                writer.write(f"{c.name}-{prefix}{i:08d}", toks, {"domain": c.name, "source": src})
            writer.close()
            for p in writer.paths:
                shard_hashes[str(p.relative_to(out))] = _sha256(p)
            meta[split] = {
                "samples": len(part.texts),
                "bytes": part.nbytes,
                "tokens": int(sum(len(t) for t in ids)),
                "shards": len(writer.paths),
            }
            pattern = _brace(c.name, len(writer.paths), split)
            if split == "train":
                manifest[c.name] = {"shards": [pattern]}
            else:
                val_manifest[c.name] = {"shards": [pattern]}
        domains_meta[c.name] = meta

    ood_manifest, ood_meta, ood_missing = _write_ood(ood, cfg, tok, out, shard_hashes)

    total = sum(m["train"]["tokens"] for m in domains_meta.values())
    for name in manifest:
        manifest[name]["weight"] = round(domains_meta[name]["train"]["tokens"] / total, 8)
    (out / "manifest.yaml").write_text(yaml.safe_dump({"domains": manifest}, sort_keys=False))
    (out / "val.yaml").write_text(yaml.safe_dump({"domains": val_manifest}, sort_keys=False))
    if ood_manifest:
        (out / "ood.yaml").write_text(yaml.safe_dump({"domains": ood_manifest}, sort_keys=False))
    info: dict[str, Any] = {
        "format_version": CORPUS_FORMAT_VERSION,
        **cfg.metadata,
        "tokenizer": tok.describe(),
        "field": "u16",
        "settings": {
            "cap_bytes": cfg.cap_bytes,
            "val_permille": cfg.val_permille,
            "tok_permille": cfg.tok_permille,
            "tok_sample_bytes": cfg.tok_sample_bytes,
            "max_sample_bytes": cfg.max_sample_bytes,
            "seed": cfg.seed,
        },
        "python": sys.version.split()[0],
        "domains": domains_meta,
        "ood": ood_meta,
        "ood_missing": ood_missing,
        "shards": shard_hashes,
    }
    (out / "corpus.json").write_text(json.dumps(info, indent=2, sort_keys=False) + "\n")
    return info


def _write_ood(
    ood: Sequence[DomainRecipe],
    cfg: BuildConfig,
    tok: CorpusTokenizer,
    out: Path,
    shard_hashes: dict[str, str],
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """Collect, tokenise and write the out-of-distribution sets: (``ood.yaml`` domains, their
    ``corpus.json`` records, the sets left out for lack of text)."""
    manifest: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    missing: list[str] = []
    for recipe in ood:
        part = _collect_ood(recipe, cfg)
        if not part.texts:
            logger.warning("out-of-distribution set %r: its sources yielded no text", recipe.name)
            missing.append(recipe.name)
            continue
        ids = tok.encode_batch(part.texts)
        writer = _ShardWriter(out / "ood" / recipe.name, recipe.name, cfg.shard_bytes)
        for i, (src, toks) in enumerate(zip(part.sources, ids, strict=True)):
            writer.write(f"{recipe.name}-o{i:08d}", toks, {"domain": recipe.name, "source": src})
        writer.close()
        for p in writer.paths:
            shard_hashes[str(p.relative_to(out))] = _sha256(p)
        manifest[recipe.name] = {"shards": [_brace(recipe.name, len(writer.paths), "ood")]}
        meta[recipe.name] = {
            "sub_sources": [name for name, _ in recipe.sources],
            "samples": len(part.texts),
            "bytes": part.nbytes,
            "tokens": int(sum(len(t) for t in ids)),
            "shards": len(writer.paths),
        }
        logger.info("ood %s: %.2f MB", recipe.name, part.nbytes / 1e6)
    return manifest, meta, missing
