"""A wheel installed outside the repository works: presets by name, the CLI, compare."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _maturin() -> str:
    here = Path(sys.executable).with_name("maturin")
    found = str(here) if here.exists() else shutil.which("maturin")
    if found is None:
        pytest.fail("maturin is not installed (pip install maturin); it is in the dev extra")
    return found


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from this checkout, installed (without dependencies) into a folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [_maturin(), "build", "--release", "--quiet", "--out", str(tmp / "dist")],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp / "dist").glob("ado-*.whl")
    target = tmp / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), wheel],
        check=True,
        capture_output=True,
    )
    return target


def _run(installed: Path, cwd: Path, *cmd: str) -> str:
    env = {
        **os.environ,
        "PYTHONPATH": str(installed),
        "ADO_CACHE_DIR": str(cwd / "cache"),
    }
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_wheel_finds_presets_by_name_anywhere(installed: Path, tmp_path: Path) -> None:
    ado = str(installed / "bin" / "ado")
    where = _run(installed, tmp_path, sys.executable, "-c", "import ado; print(ado.__file__)")
    assert where.strip().startswith(str(installed)), where  # not the checkout
    names = _run(
        installed,
        tmp_path,
        sys.executable,
        "-c",
        "from ado import load_policy; from ado.policy import presets\n"
        "p = load_policy('ado', domains=['a', 'b'])\n"
        "print(p.config.kind, *presets())",
    ).split()
    assert names[0] == "ado"
    assert set(names[1:]) == {p.stem for p in (REPO / "policies").glob("*.yaml")}

    out = _run(
        installed,
        tmp_path,
        ado,
        "simulate",
        "--policy",
        "ado",
        "--steps",
        "300",
        "--out",
        "sim",
        "--no-plot",
        "--no-progress",
    )
    assert "mean final loss" in out
    out = _run(installed, tmp_path, ado, "replay", "sim/run.jsonl", "--policy", "ado")
    assert "replayed 300 steps" in out
    assert (tmp_path / "sim" / "run.ado.replay.jsonl").stat().st_size > 0
    out = _run(
        installed,
        tmp_path,
        ado,
        "compare",
        "--corpus",
        "builtin",
        "--policies",
        "natural",
        "ado",
        "--steps",
        "20",
        "--out",
        "cmp",
        "--no-progress",
    )
    assert "| ado |" in out
    assert (tmp_path / "cmp" / "report.md").exists()
