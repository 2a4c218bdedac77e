"""Faults: SIGKILL during a checkpoint write, a shard changed after indexing, a full disk.

A full disk is produced with real kernel mechanisms, never by patching Python: a 256 KiB tmpfs
(when this process may mount one, i.e. root with CAP_SYS_ADMIN) gives ``ENOSPC``, and
``RLIMIT_FSIZE`` in a child process (always available; ``SIGXFSZ`` ignored) gives ``EFBIG`` at
the same point of the write.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ado._io import atomic_write_text
from ado.data import Manifest, MixtureLoader
from ado.errors import ShardError, StateError
from bad_inputs import write_tar

HERE = Path(__file__).parent


def _shard(path: Path, n: int, prefix: str = "s") -> Path:
    members = []
    for i in range(n):
        members += [
            (f"{prefix}{i:03d}.txt", f"{prefix}{i}".encode()),
            (f"{prefix}{i:03d}.bin", b"x" * 100),
        ]
    return write_tar(path, members)


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs; skipped where mounting is not permitted."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


# -- SIGKILL during a checkpoint write ---------------------------------------------------------

_KILL_CHILD = textwrap.dedent(
    """
    import sys, time, pathlib
    import torch
    import ado._io
    from ado.torch.checkpoint import save_checkpoint

    folder = pathlib.Path(sys.argv[1])
    save_checkpoint(folder, 1, {"w": torch.arange(1000.0), "step": 1})

    # Pause the second write once 1 MiB of it has really been written to the temporary file, so
    # the SIGKILL lands mid-write (the bytes go through the real write() syscalls first).
    real_write = ado._io.RecordingWriter.write
    done = [0]
    def write(self, data):
        n = real_write(self, data)
        self.raw.flush()
        done[0] += n
        if done[0] > 1 << 20:
            (folder / "writing").touch()
            time.sleep(600)
        return n
    ado._io.RecordingWriter.write = write
    save_checkpoint(folder, 2, {"w": torch.ones(2_000_000), "step": 2})
    """
)


def _kill_mid_write(script: str, folder: Path) -> int:
    """Run ``script`` on ``folder``; once it signals (``folder/writing``) that it paused inside a
    write, SIGKILL it. Returns the size of the one temporary file at that moment."""
    child = subprocess.Popen([sys.executable, "-c", script, str(folder)])
    try:
        deadline = time.monotonic() + 60
        while not (folder / "writing").exists():
            assert child.poll() is None, "child exited before the second write"
            assert time.monotonic() < deadline, "child never reached the second write"
            time.sleep(0.02)
        tmp_files = [p for p in folder.iterdir() if p.name.endswith(".tmp")]
        assert len(tmp_files) == 1
        size = tmp_files[0].stat().st_size
        child.send_signal(signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    return size


def test_sigkill_during_checkpoint_write_keeps_previous(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from ado.torch.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint

    folder = tmp_path / "ckpt"
    folder.mkdir()
    assert _kill_mid_write(_KILL_CHILD, folder) > 1 << 20  # really mid-write
    assert [p for p in folder.iterdir() if p.name.endswith(".tmp")]  # the killed write's debris
    latest = latest_checkpoint(folder)  # the next run: resumes, and the debris is gone
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    assert latest is not None
    assert latest.name == "step_00000001.pt"
    state = load_checkpoint(latest)
    assert state["step"] == 1
    assert torch.equal(state["w"], torch.arange(1000.0))
    assert not (folder / "step_00000002.pt").exists()
    # The next run saves over the debris: the stale temporary file does not get in the way.
    save_checkpoint(folder, 2, {"step": 2})
    assert latest_checkpoint(folder) == folder / "step_00000002.pt"


_KILL_PLAIN_CHILD = textwrap.dedent(
    """
    import sys, time, pathlib
    import ado._io
    from ado._io import atomic_write, atomic_write_text

    path = pathlib.Path(sys.argv[1]) / "report.json"
    atomic_write_text(path, '{"version": 1}\\n')
    real_write = ado._io.RecordingWriter.write
    def write(self, data):
        n = real_write(self, data)
        self.raw.flush()
        (path.parent / "writing").touch()
        time.sleep(600)
        return n
    ado._io.RecordingWriter.write = write
    atomic_write(path, lambda f: f.write(b"x" * (4 << 20)) and None)
    """
)


def test_sigkill_during_atomic_write_keeps_previous(tmp_path: Path) -> None:
    # the new bytes are on disk, but only in the temporary file
    assert _kill_mid_write(_KILL_PLAIN_CHILD, tmp_path) == 4 << 20
    assert json.loads((tmp_path / "report.json").read_text()) == {"version": 1}


# -- a shard changed after indexing -----------------------------------------------------------


def test_changed_shard_is_detected_by_running_and_restarted_loaders(tmp_path: Path) -> None:
    shard = _shard(tmp_path / "a.tar", 20)
    kw = {"cache_dir": tmp_path / "cache", "readahead_bytes": 0}
    loader = MixtureLoader({"web": str(shard)}, 4, **kw)  # type: ignore[arg-type]
    next(loader)
    state = loader.state_dict()
    _shard(shard, 21, prefix="t")  # rewritten in place: other size, mtime and headers
    # The running loader opens the shard again (it rebuilds its streams after a state load) and
    # notices the stale index before reading a byte.
    loader.load_state_dict(state)
    with pytest.raises(ShardError, match="shard changed since it was indexed"):
        next(loader)
    # After a restart the index is rebuilt, and the checkpoint no longer fits the data.
    restarted = MixtureLoader({"web": str(shard)}, 4, **kw)  # type: ignore[arg-type]
    assert restarted.num_samples == [21]
    with pytest.raises(StateError, match="different manifest"):
        restarted.load_state_dict(state)


# -- a full disk -------------------------------------------------------------------------------


def _save_until_full(folder: Path) -> None:
    torch = pytest.importorskip("torch")
    from ado.torch.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint

    save_checkpoint(folder, 1, {"w": torch.arange(1000.0)})
    with pytest.raises(OSError, match="cannot write") as err:
        save_checkpoint(folder, 2, {"w": torch.ones(1_000_000)})
    assert err.value.errno in (errno.ENOSPC, errno.EFBIG)
    assert "cannot write" in str(err.value)
    assert "step_00000002.pt" in str(err.value)
    assert sorted(p.name for p in folder.iterdir()) == ["step_00000001.pt"]  # no debris
    latest = latest_checkpoint(folder)
    assert latest is not None
    assert torch.equal(load_checkpoint(latest)["w"], torch.arange(1000.0))


def test_full_disk_checkpoint_tmpfs(full_disk: Path) -> None:
    _save_until_full(full_disk / "ckpt")


def _log_until_full(folder: Path) -> None:
    from ado.runlog import RunLogWriter

    path = folder / "train.jsonl"
    log = RunLogWriter(str(path), rank=0, resume_step=None)
    written = 0
    failure: OSError | None = None
    for step in range(100_000):
        try:
            log.write({"step": step, "loss": 1.0, "pad": "x" * 200})
        except OSError as e:
            failure = e
            break
        written = step + 1
    assert failure is not None
    assert failure.errno in (errno.ENOSPC, errno.EFBIG)
    assert "cannot append to the training log" in str(failure)
    log.close()
    # Every record logged before the failure is intact (a torn last line at most).
    lines = path.read_text().splitlines()
    good = []
    for line in lines:
        try:
            good.append(json.loads(line)["step"])
        except json.JSONDecodeError:
            assert line is lines[-1]
    assert good == list(range(written))
    # Resuming on the still-full disk must not cost the log: the rewrite is atomic.
    before = path.read_bytes()
    resume_error: OSError | None = None
    try:
        RunLogWriter(str(path), rank=0, resume_step=written - 1).close()
    except OSError as e:
        resume_error = e
    if resume_error is not None:  # tmpfs: no room for the rewrite
        assert resume_error.errno in (errno.ENOSPC, errno.EFBIG)
        assert path.read_bytes() == before
    else:  # RLIMIT_FSIZE: the rewrite fits, and keeps every complete record
        kept = [json.loads(line)["step"] for line in path.read_text().splitlines()]
        assert kept == list(range(written))


def _manifest_until_full(folder: Path) -> None:
    """A manifest saved over an older one on a full disk leaves the older one in place."""
    manifest = folder / "manifest.yaml"
    Manifest.from_dict({"web": "a.tar"}).save(manifest)
    old = manifest.read_text()
    # Fill the tmpfs (under RLIMIT_FSIZE the filler stops at the limit; the new manifest is larger).
    with contextlib.suppress(OSError), (folder / "filler").open("wb") as f:
        for _ in range(1 << 16):
            f.write(bytes(1 << 16))
            f.flush()
    big = Manifest.from_dict({f"d{i}": [f"shard-{i}-{{000..999}}.tar"] for i in range(20_000)})
    with pytest.raises(OSError, match="cannot write") as err:
        big.save(manifest)
    assert err.value.errno in (errno.ENOSPC, errno.EFBIG)
    assert manifest.read_text() == old
    assert sorted(p.name for p in folder.iterdir()) == ["filler", "manifest.yaml"]


def test_full_disk_training_log_tmpfs(full_disk: Path) -> None:
    pytest.importorskip("torch")
    _log_until_full(full_disk)


def test_full_disk_manifest_tmpfs(full_disk: Path) -> None:
    _manifest_until_full(full_disk)


_RLIMIT_CHILD = textwrap.dedent(
    """
    import resource, signal, sys, pathlib
    sys.path.insert(0, sys.argv[2])
    import test_faults
    folder = pathlib.Path(sys.argv[1])
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
    limit = 256 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    test_faults._manifest_until_full(folder / "manifest")
    try:
        import torch
    except ImportError:
        print("checked without torch")
    else:
        test_faults._save_until_full(folder / "ckpt")
        (folder / "log").mkdir()
        test_faults._log_until_full(folder / "log")
        print("checked")
    """
)


def test_full_disk_rlimit(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _RLIMIT_CHILD, str(tmp_path), str(HERE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "checked" in proc.stdout


def test_atomic_write_text_replaces_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "r.txt"
    atomic_write_text(path, "one\n")
    atomic_write_text(path, "two\n")
    assert path.read_text() == "two\n"
    assert os.listdir(tmp_path) == ["r.txt"]


def test_remove_stale_temps_keeps_live_writers(tmp_path: Path) -> None:
    from ado._io import remove_stale_temps

    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead = int(child.stdout)  # exited: its pid no longer runs (pids are not reused this fast)
    live = tmp_path / f".step_00000003.pt.{os.getpid()}.abc123.tmp"
    stale = tmp_path / f".step_00000003.pt.{dead}.xyz789.tmp"
    other = tmp_path / f".report.json.{dead}.xyz789.tmp"
    for p in (live, stale, other):
        p.write_bytes(b"x")
    assert remove_stale_temps(tmp_path, ".step_") == [stale]
    assert live.exists()
    assert other.exists()
    assert not stale.exists()
