"""``ado corpus cluster``: deterministic, streaming (memory does not grow with the corpus), a
manifest the loader reads, held-out sets unchanged, and a cluster of pure noise ends up alone."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest
from ado.cli import main
from ado.corpus import BuildConfig, Document, DomainRecipe, build_corpus
from ado.corpus.cluster import ClusterConfig, cluster_corpus
from ado.data import MixtureLoader
from ado.errors import ConfigError

pytest.importorskip("sklearn")


def _cluster(corpus: Path, out: Path, **kw: object) -> dict[str, object]:
    cfg = ClusterConfig(corpus=corpus, out=out, batch_size=64, progress=False, **kw)  # type: ignore[arg-type]
    return cluster_corpus(cfg)


def test_same_seed_same_bytes_and_noise_alone(tiny_corpus: Path, tmp_path: Path) -> None:
    a = _cluster(tiny_corpus, tmp_path / "a", k=4, seed=0)
    b = _cluster(tiny_corpus, tmp_path / "b", k=4, seed=0)
    assert a["shards"] == b["shards"]  # sha256 of every shard
    assert a["clusters"] == b["clusters"]
    clusters = a["clusters"]
    assert isinstance(clusters, dict)
    with_noise = [n for n, c in clusters.items() if "noise" in c["source_domains"]]
    assert len(with_noise) == 1, with_noise  # every noise sample in one cluster ...
    (noisy,) = with_noise
    assert list(clusters[noisy]["source_domains"]) == ["noise"]  # ... which holds nothing else
    source = json.loads((tiny_corpus / "corpus.json").read_text())
    assert clusters[noisy]["train"]["samples"] == source["domains"]["noise"]["train"]["samples"]
    # every training sample lands in exactly one cluster
    total = sum(c["train"]["samples"] for c in clusters.values())
    assert total == sum(d["train"]["samples"] for d in source["domains"].values())
    report = (tmp_path / "a" / "clusters.md").read_text()
    assert noisy in report
    assert "top terms" in report


def test_held_out_sets_are_the_sources_and_the_manifest_loads(
    tiny_corpus: Path, tmp_path: Path
) -> None:
    out = tmp_path / "c"
    held = sorted((tiny_corpus / "val").rglob("*.tar"))
    before = [p.stat().st_ctime_ns for p in held]
    info = _cluster(tiny_corpus, out, k=3, seed=1)
    # copies, not hard links: a link would change the source shards' ctime, which the loader of
    # a run reading the source corpus takes for a changed shard
    assert [p.stat().st_ctime_ns for p in held] == before
    for name in ("val.yaml", "ood.yaml"):
        if (tiny_corpus / name).exists():
            assert (out / name).read_bytes() == (tiny_corpus / name).read_bytes()
    source = json.loads((tiny_corpus / "corpus.json").read_text())
    assert info["domains"] == source["domains"]  # what compare evaluates: the original domains
    shards = info["shards"]
    assert isinstance(shards, dict)
    for path, digest in source["shards"].items():
        if path.startswith(("val/", "ood/")):
            assert shards[path] == digest
            assert (out / path).read_bytes() == (tiny_corpus / path).read_bytes()
    loader = MixtureLoader(str(out / "manifest.yaml"), batch_size=8, seed=0)
    try:
        batch = next(loader)
        assert len(batch.keys) == 8
        assert loader.domains == list(info["clusters"])  # type: ignore[arg-type]
    finally:
        loader.close()


def _synthetic(out: Path, docs: int) -> Path:
    words = ["alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa", "theta"]

    def text(d: int, i: int) -> str:
        body = " ".join(words[(i * 7 + j * (d + 1)) % len(words)] for j in range(80))
        return f"{body} doc{i}"

    recipes = [
        DomainRecipe(
            f"d{d}", [("s", lambda d=d: [Document(f"{d}/{i}", text(d, i)) for i in range(docs)])]
        )
        for d in range(2)
    ]
    cfg = BuildConfig(out=out, tokenizer="bytes", cap_bytes=None, val_permille=100, progress=False)
    build_corpus(recipes, cfg)
    return out


def _peak(corpus: Path, out: Path) -> int:
    tracemalloc.start()
    try:
        _cluster(corpus, out, k=4, seed=0)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_corpus(tmp_path: Path) -> None:
    small = _synthetic(tmp_path / "small", 120)
    large = _synthetic(tmp_path / "large", 600)
    _peak(small, tmp_path / "warm")  # imports and first-use caches are not the clustering's
    p_small = _peak(small, tmp_path / "s")
    p_large = _peak(large, tmp_path / "l")
    # 5x the samples: a clustering that kept per-sample data would need ~5x the memory
    assert p_large < 1.5 * p_small, (p_small, p_large)


def test_bad_requests_are_refused(tiny_corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="k must be"):
        ClusterConfig(corpus=tiny_corpus, out=tmp_path / "x", k=1)
    with pytest.raises(ConfigError, match="not a built corpus"):
        _cluster(tmp_path, tmp_path / "x", k=2)
    with pytest.raises(ConfigError, match="domains not in"):
        _cluster(tiny_corpus, tmp_path / "x", k=2, domains=["nope"])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="--force"):
        _cluster(tiny_corpus, tmp_path / "full", k=2)
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"


def test_cli_per_domain(
    tiny_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "p"
    args = ["corpus", "cluster", "--corpus", str(tiny_corpus), "--out", str(out), "-k", "2"]
    assert main([*args, "--per-domain", "--batch-size", "64", "--no-progress"]) == 0
    info = json.loads((out / "corpus.json").read_text())
    for name, c in info["clusters"].items():
        domain = name.rsplit(".c", 1)[0]
        assert list(c["source_domains"]) == [domain]  # sub-domains of one domain each
    assert "clustered" in capsys.readouterr().out
