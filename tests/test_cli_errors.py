"""CLI errors are one line on stderr with a non-zero exit status; Ctrl-C exits 130 with one line;
``ado shards index`` indexes every shard and reports every failure."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "hardening"))
from bad_inputs import write_tar

ADO = [sys.executable, "-c", "import sys; from ado.cli import main; sys.exit(main())"]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ADO, *args], capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["simulate", "--policy", "natural", "--steps", "-5"], "--steps: must be an integer >= 1"),
        (["simulate", "--policy", "natural", "--steps", "3", "--out", "afile"], "File exists"),
        (["fit", "binary.csv"], "can't decode"),
        (["shards", "manifest", "missing"], "No such file or directory"),
        (["compare", "--steps", "0", "--out", "x"], "--steps: must be an integer >= 1"),
        (["simulate", "--policy", "natural", "--set", "x=1", "--steps", "3"], "Extra inputs"),
        # were "internal error: MemoryError ... please report", 80+ processes, SIGABRT
        (["simulate", "--policy", "ado", "--steps", str(10**15)], "is more than 67108864"),
        (["replay", "/dev/zero", "--policy", "ado"], "/dev/zero: run log is not a regular file"),
        (["fit", "/dev/zero"], "/dev/zero: loss-curve file is not a regular file"),
        (["corpus", "build", "--workers", "10000", "--out", "c"], "workers must be in [1, "),
        (["corpus", "build", "--vocab-size", str(10**12), "--out", "c"], "vocab_size must be in"),
        (["compare", "--corpus", "/nope", "--out", "x", "--steps", "1"], "no such corpus folder"),
    ],
)
def test_errors_are_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("mine")
    (tmp_path / "binary.csv").write_bytes(b"a,b\n\xff\xfe\x00\x01")
    proc = _run(args, tmp_path)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("ado "), lines
    assert message in lines[0]
    assert (tmp_path / "afile").read_text() == "mine"  # never overwritten


def test_ctrl_c_exits_130_with_one_line(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [
            *ADO,
            "simulate",
            "--policy",
            "ado",
            "--steps",
            "10000000",
            "--no-plot",
            "--no-progress",
            "--out",
            str(tmp_path / "run"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        log = tmp_path / "run"
        while not (log.exists() and any(p.stat().st_size > 0 for p in log.glob("*.jsonl"))):
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "the simulation never started"
            time.sleep(0.1)
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 130
    lines = err.strip().splitlines()
    assert lines == ["ado simulate: interrupted"], err


def test_shards_index_reports_every_failure(tmp_path: Path) -> None:
    for name in ("a", "c", "e"):
        write_tar(tmp_path / f"{name}.tar", [("s0.txt", b"x"), ("s1.txt", b"y")])
    (tmp_path / "b.tar").write_bytes(b"")  # empty
    (tmp_path / "d.tar").write_bytes(b"not a tar archive at all" * 40)
    proc = _run(["shards", "index", str(tmp_path / "*.tar"), "--cache-dir", "cache"], tmp_path)
    assert proc.returncode == 2
    failed = [ln for ln in proc.stderr.splitlines() if "failed:" in ln]
    assert len(failed) == 2, proc.stderr
    assert "b.tar" in failed[0]
    assert "d.tar" in failed[1]
    assert "2 of 5 shards failed" in proc.stderr
    for name in ("a", "c", "e"):  # the good ones after a bad one were indexed too
        assert (tmp_path / f"{name}.tar.adoidx").exists()
