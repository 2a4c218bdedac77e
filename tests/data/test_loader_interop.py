"""Shard reading agrees with webdataset 1.0.2; bad shards fail clearly at index time."""

from __future__ import annotations

import errno
import gzip
import io
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest
import webdataset as wds  # type: ignore[import-untyped]
from ado._core import shard_members
from ado.data import Manifest, MixtureLoader, index_shard
from ado.errors import InvalidInputError, ShardError, ShardNotFoundError

LONG_DIR = "deep/" + "d" * 120

# webdataset 1.0.2 leaves its shard file objects to the garbage collector.
pytestmark = [
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]


def _wds_samples(path: Path) -> list[tuple[str, dict[str, bytes]]]:
    ds = wds.WebDataset(str(path), shardshuffle=False, empty_check=False)
    out = []
    for s in ds:
        out.append((s["__key__"], {k: v for k, v in s.items() if not k.startswith("__")}))
    return out


def _ado_samples(path: Path) -> list[tuple[str, dict[str, bytes]]]:
    data = path.read_bytes()
    return [
        (key, {ext: data[off : off + size] for ext, off, size in members})
        for key, members in shard_members(str(path))
    ]


def _write_raw(path: Path, members: list[tuple[str, bytes]], fmt: int) -> None:
    with tarfile.open(path, "w", format=fmt) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


TRICKY: list[dict[str, Any]] = [
    {"__key__": "img001", "seg.png": b"multi-dot", "jpg": b"plain"},
    {"__key__": "a/b.c/img002", "seg.PNG": b"dir with dot", "TXT": b"upper"},
    {"__key__": f"{LONG_DIR}/sample-{'x' * 40}", "json": b"{}", "Tar.Gz": b"long name"},
    {"__key__": "img.dir/x", "cls": b"1"},
]


@pytest.mark.parametrize("fmt", ["USTAR_FORMAT", "GNU_FORMAT", "PAX_FORMAT"])
def test_tarwriter_shards_match_webdataset(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "tricky.tar"
    with wds.TarWriter(str(path), encoder=False, format=fmt) as sink:
        for s in TRICKY:
            sink.write(s)
    assert _ado_samples(path) == _wds_samples(path)
    keys = [k for k, _ in _ado_samples(path)]
    assert keys == ["img001", "a/b.c/img002", TRICKY[2]["__key__"], "img.dir/x"]
    assert len(keys[2]) > 100


def test_raw_tar_grouping_rules_match_webdataset(tmp_path: Path) -> None:
    path = tmp_path / "raw.tar"
    members = [
        ("__meta__", b"skipped"),
        ("__meta__/x.txt", b"skipped too"),
        ("s1.jpg", b"1"),
        ("s2.jpg", b"2"),
        ("s1.cls", b"3"),  # not consecutive: a second sample with key s1
        ("noext", b"skipped: no dot"),
        ("img.001.JPG", b"first dot"),
        ("a/.hidden.txt", b"odd but regex-exact"),
        (f"{LONG_DIR}/{'y' * 150}.Seg.Png", b"gnu long name"),
    ]
    _write_raw(path, members, tarfile.GNU_FORMAT)
    ours = _ado_samples(path)
    assert ours == _wds_samples(path)
    assert [k for k, _ in ours][:3] == ["s1", "s2", "s1"]


def test_shardwriter_domain_bytes_match_through_the_loader(make_domain: Any) -> None:
    shards = make_domain("web", 60, per_shard=16)
    expected = sorted((k, sorted(v.items())) for p in shards for k, v in _wds_samples(p))
    loader = MixtureLoader({"web": [str(p) for p in shards]}, batch_size=12, seed=3)
    got = []
    for _ in range(5):
        batch = next(loader)
        for s in batch.samples or []:
            got.append((s["__key__"], sorted((k, v) for k, v in s.items() if k != "__key__")))
    assert sorted(got) == expected  # one epoch = every sample exactly once
    assert loader.epochs == [1]


def test_duplicate_extension_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "dup.tar"
    _write_raw(path, [("s1.txt", b"a"), ("s1.TXT", b"b")], tarfile.USTAR_FORMAT)
    with pytest.raises(ShardError, match="duplicate"):
        index_shard(path)


def test_truncated_tar(make_domain: Any, tmp_path: Path) -> None:
    shard = make_domain("t", 10, per_shard=10)[0]
    cut = tmp_path / "cut.tar"
    cut.write_bytes(shard.read_bytes()[:3000])
    with pytest.raises(ShardError, match=r"cut\.tar.*truncated"):
        index_shard(cut)


def test_corrupt_tar(make_domain: Any, tmp_path: Path) -> None:
    shard = make_domain("c", 10, per_shard=10)[0]
    data = bytearray(shard.read_bytes())
    data[1024 + 100 : 1024 + 108] = b"garbage!"  # inside the second header block
    bad = tmp_path / "bad.tar"
    bad.write_bytes(bytes(data))
    with pytest.raises(ShardError, match=r"bad\.tar.*(corrupt|checksum)"):
        index_shard(bad)
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"x" * 2000)
    with pytest.raises(ShardError, match=r"junk\.tar"):
        index_shard(junk)


def test_missing_shard_and_empty_domain(make_domain: Any, tmp_path: Path) -> None:
    shards = make_domain("m", 5, per_shard=5)
    with pytest.raises(ShardError, match=r"nope-7\.tar") as caught:
        MixtureLoader({"m": [str(shards[0]), str(tmp_path / "nope-7.tar")]}, batch_size=2)
    # the OS error keeps its kind: also a FileNotFoundError, with errno and filename
    assert isinstance(caught.value, FileNotFoundError)
    assert isinstance(caught.value, ShardNotFoundError)
    assert caught.value.errno == errno.ENOENT
    assert caught.value.filename == str(tmp_path / "nope-7.tar")
    empty = tmp_path / "empty.tar"
    with tarfile.open(empty, "w"):
        pass
    with pytest.raises(InvalidInputError, match='domain "e" is empty'):
        MixtureLoader({"m": str(shards[0]), "e": str(empty)}, batch_size=2)
    with pytest.raises(ShardError, match="no file matches"):
        MixtureLoader({"m": str(tmp_path / "zzz*.tar")}, batch_size=2)


def test_compressed_pipes_and_unknown_schemes_are_refused(make_domain: Any, tmp_path: Path) -> None:
    shard = make_domain("g", 5, per_shard=5)[0]
    gz = tmp_path / "g.tar.gz"
    gz.write_bytes(gzip.compress(shard.read_bytes()))
    with pytest.raises(ShardError, match="decompress"):
        index_shard(gz)
    disguised = tmp_path / "disguised.tar"
    disguised.write_bytes(gzip.compress(shard.read_bytes()))
    with pytest.raises(ShardError, match="gzip"):
        index_shard(disguised)
    with pytest.raises(ShardError, match="not supported"):
        MixtureLoader({"r": "pipe:cat x.tar"}, batch_size=1)
    with pytest.raises(ShardError, match="unsupported URL scheme ftp://"):
        MixtureLoader({"r": "ftp://127.0.0.1/x.tar"}, batch_size=1)


def test_sidecar_cache_and_change_detection(make_domain: Any, tmp_path: Path) -> None:
    shard = make_domain("s", 12, per_shard=12)[0]
    first = index_shard(shard)
    assert first["source"] == "built"
    assert first["samples"] == 12
    assert Path(str(shard) + ".adoidx").exists()
    assert index_shard(shard)["source"] == "cache"
    # Rewrite the shard with one sample fewer: size/mtime change, the index is rebuilt.
    data = shard.read_bytes()
    stat = shard.stat()
    shard.write_bytes(data[:-10240])  # drops padding and trailing samples
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    again = index_shard(shard)
    assert again["source"] == "built"


def test_foreign_sidecar_is_never_overwritten(make_domain: Any, tmp_path: Path) -> None:
    shard = make_domain("f", 6, per_shard=6)[0]
    foreign = Path(str(shard) + ".adoidx")
    foreign.write_bytes(b"user data, not an index")
    cache = tmp_path / "cache"
    assert index_shard(shard, cache_dir=cache)["source"] == "built"
    assert foreign.read_bytes() == b"user data, not an index"
    assert len(list(cache.iterdir())) == 1
    assert index_shard(shard, cache_dir=cache)["source"] == "cache"


def test_manifest_yaml_json_and_braces(make_domain: Any, tmp_path: Path) -> None:
    make_domain("web", 30, per_shard=10)
    make_domain("code", 10, per_shard=5)
    m = Manifest.from_dict(
        {"web": {"shards": ["web/shard-{000..002}.tar"], "weight": 3.0}, "code": "code/*.tar"},
        base_dir=str(tmp_path),
    )
    for name in ("m.yaml", "m.json"):
        m.save(tmp_path / name)
        back = Manifest.load(tmp_path / name)
        assert back.resolve() == m.resolve()
    assert [len(v) for v in m.resolve().values()] == [3, 2]
    auto = Manifest.from_dir(tmp_path)
    assert auto.names == ["code", "web"]
