"""An index that cannot lie: a shard replaced behind a restored mtime, rewritten while open, a
planted sidecar, a symlink or FIFO where the sidecar goes, a non-tar file: each is caught."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import threading
from pathlib import Path

import pytest
from ado.data import MixtureLoader, index_shard
from ado.errors import ShardError, StateError


def _tar(path: Path, prefix: str, n: int = 6, size: int = 100) -> Path:
    """A shard of ``n`` samples ``{prefix}{i}.bin`` of ``size`` bytes (same layout for any
    prefix of the same length, so two shards differ only in names and bytes)."""
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for i in range(n):
            data = bytes([(i * 7 + ord(prefix[0])) % 256]) * size
            info = tarfile.TarInfo(f"{prefix}{i:03d}.bin")
            info.size = len(data)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return path


def _keys(loader: MixtureLoader, steps: int) -> list[str]:
    return [k for _ in range(steps) for k in next(loader).keys]


def test_replaced_shard_with_restored_mtime_is_reindexed(tmp_path: Path) -> None:
    shard = _tar(tmp_path / "a.tar", "a")
    assert index_shard(shard)["source"] == "built"
    assert index_shard(shard)["source"] == "cache"
    other = _tar(tmp_path / "b.tar", "b")
    assert other.stat().st_size == shard.stat().st_size
    shutil.copy2(other, shard)  # same size, mtime restored (cp -p): ctime/content differ
    os.utime(shard, ns=(other.stat().st_atime_ns, other.stat().st_mtime_ns))
    info = index_shard(shard)
    assert info["source"] == "built"
    loader = MixtureLoader({"d": str(shard)}, batch_size=6, seed=0)
    assert sorted(next(loader).keys) == [f"b{i:03d}" for i in range(6)]


def test_checkpoint_of_a_changed_shard_is_refused(tmp_path: Path) -> None:
    shard = _tar(tmp_path / "a.tar", "a")
    keep = _tar(tmp_path / "k.tar", "k")
    loader = MixtureLoader({"d": str(shard), "k": str(keep)}, batch_size=4, seed=0)
    _keys(loader, 2)
    state = loader.state_dict()
    assert state["format_version"] == 2
    assert len(state["domain_fingerprints"]) == 2
    _tar(tmp_path / "b.tar", "b")
    shutil.copy2(tmp_path / "b.tar", shard)
    fresh = MixtureLoader({"d": str(shard), "k": str(keep)}, batch_size=4, seed=0)
    with pytest.raises(StateError, match=r'domain\(s\) \["d"\] differ'):
        fresh.load_state_dict(state)
    # the unchanged data resumes
    back = _tar(tmp_path / "a2.tar", "a")
    shutil.copy2(back, shard)
    again = MixtureLoader({"d": str(shard), "k": str(keep)}, batch_size=4, seed=0)
    again.load_state_dict(state)
    assert again.step == 2


def test_shard_rewritten_in_place_while_open_is_an_error(tmp_path: Path) -> None:
    shard = _tar(tmp_path / "a.tar", "a", n=40)
    loader = MixtureLoader({"d": str(shard)}, batch_size=2, seed=0, readahead_bytes=0)
    next(loader)  # the file is open now
    inode = shard.stat().st_ino
    data = bytearray(shard.read_bytes())
    for i in range(512 + 50, len(data) - 2048, 512):
        data[i] ^= 0x5A  # same size, same inode: the member bytes change
    with open(shard, "r+b") as f:
        f.write(bytes(data))
    assert shard.stat().st_ino == inode
    with pytest.raises(ShardError, match="not the indexed member"):
        _keys(loader, 20)


def test_planted_sidecar_cannot_decide_keys_or_bytes(tmp_path: Path) -> None:
    real = _tar(tmp_path / "a.tar", "a")
    decoy = _tar(tmp_path / "d.tar", "d")
    index_shard(decoy)
    side = Path(str(real) + ".adoidx")
    shutil.copy(Path(str(decoy) + ".adoidx"), side)  # a foreign index, other keys
    # Even with the identity fields forged to match, readers check every member's header and
    # bytes; an unforged plant is simply rebuilt.
    assert index_shard(real)["source"] == "built"
    loader = MixtureLoader({"d": str(real)}, batch_size=6, seed=0)
    assert sorted(next(loader).keys) == [f"a{i:03d}" for i in range(6)]


def test_forged_identity_sidecar_is_caught_when_reading(tmp_path: Path) -> None:
    real = _tar(tmp_path / "a.tar", "a")
    decoy = _tar(tmp_path / "d.tar", "d")
    index_shard(real)
    index_shard(decoy)
    side_real = Path(str(real) + ".adoidx").read_bytes()
    side_decoy = bytearray(Path(str(decoy) + ".adoidx").read_bytes())
    side_decoy[8:48] = side_real[8:48]  # size, mtime, ctime, inode, device of the real shard
    Path(str(real) + ".adoidx").write_bytes(bytes(side_decoy))
    assert index_shard(real)["source"] == "cache"  # the forgery passes the identity check...
    loader = MixtureLoader({"d": str(real)}, batch_size=6, seed=0)
    with pytest.raises(ShardError, match=r"not the indexed member|names another member"):
        next(loader)  # ...but not the check of each member's header and bytes


def test_symlink_at_sidecar_path_is_never_followed(tmp_path: Path) -> None:
    shard = _tar(tmp_path / "a.tar", "a")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    Path(str(shard) + ".adoidx").symlink_to(victim)
    info = index_shard(shard, cache_dir=tmp_path / "cache")
    assert victim.read_text() == "precious"
    assert Path(str(shard) + ".adoidx").is_symlink()
    assert info["source"] == "built"  # written to the cache folder instead
    assert list((tmp_path / "cache").glob("*.adoidx"))
    # no predictable temporary name was used next to the shard
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_temp_names_are_private(tmp_path: Path) -> None:
    shard = _tar(tmp_path / "a.tar", "a")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    # the old predictable name: .<sidecar>.<pid>.tmp
    (tmp_path / f".a.tar.adoidx.{os.getpid()}.tmp").symlink_to(victim)
    assert index_shard(shard)["source"] == "built"
    assert victim.read_text() == "precious"


@pytest.mark.parametrize("kind", ["fifo", "devzero"])
def test_sidecar_that_is_a_fifo_or_device_is_refused(tmp_path: Path, kind: str) -> None:
    shard = _tar(tmp_path / "a.tar", "a")
    side = Path(str(shard) + ".adoidx")
    if kind == "fifo":
        os.mkfifo(side)
    else:
        side.symlink_to("/dev/zero")
    done: list[dict[str, object]] = []
    t = threading.Thread(target=lambda: done.append(index_shard(shard, tmp_path / "c")))
    t.start()
    t.join(timeout=60)
    if t.is_alive():  # unblock the reader before failing
        with open(side, "wb") as f:
            f.write(b"x")
        t.join()
        pytest.fail("index_shard blocked reading a FIFO sidecar")
    assert done
    assert done[0]["source"] == "built"
    assert side.is_fifo() if kind == "fifo" else side.is_symlink()


def test_non_tar_error_does_not_echo_file_contents(tmp_path: Path) -> None:
    secret = tmp_path / "passwd.tar"
    secret.write_text(
        "root:$6$s3cr3tHASHvalue$abcdefghijklmnop:19000:0:99999:7:::\n"
        "daemon:*:19000:0:99999:7:::\n" * 20
    )
    with pytest.raises(ShardError) as caught:
        index_shard(secret)
    text = str(caught.value).removeprefix(str(secret))
    assert "s3cr3t" not in text
    assert "root" not in text
    assert "daemon" not in text
    assert "corrupt or truncated tar" in text
