"""Every row of ``docs/bad-inputs.md``, run in a fresh interpreter: no input crashes it.

A failing case must exit with status 1 and a traceback whose last line is the expected
``ado.errors`` exception with the expected message; a Rust panic would surface as
``pyo3_runtime.PanicException`` and a crash as a negative status (a signal), both failures here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from bad_inputs import CASES

HERE = Path(__file__).parent


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    proc = subprocess.run(
        [sys.executable, str(HERE / "bad_inputs.py"), name, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode >= 0, f"killed by signal {-proc.returncode}: {proc.stderr[-2000:]}"
    assert "PanicException" not in proc.stderr, proc.stderr[-2000:]
    assert "panicked at" not in proc.stderr, proc.stderr[-2000:]
    if case.error is None:
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert case.match in proc.stdout, proc.stdout
        return
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("ado.errors.")]
    assert lines, proc.stderr[-2000:]
    last = lines[-1]
    assert last.startswith(f"ado.errors.{case.error}: "), last
    assert case.match in proc.stderr, proc.stderr[-2000:]


def test_pipe_command_never_runs(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(HERE / "bad_inputs.py"), "pipe_url", str(tmp_path)],
        capture_output=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert not (tmp_path / "pwned").exists()


def test_docs_table_lists_every_case() -> None:
    """``docs/bad-inputs.md`` has one row per case (its last column) and no row without one."""
    doc = (HERE.parents[1] / "docs" / "bad-inputs.md").read_text()
    rows = [ln for ln in doc.splitlines() if ln.startswith("| ") and ln.rstrip().endswith("` |")]
    named = [ln.rstrip().rsplit("|", 2)[-2].strip().strip("`") for ln in rows]
    assert sorted(named) == sorted(CASES)
    numbers = [int(ln.split("|")[1]) for ln in rows]
    assert numbers == list(range(1, len(rows) + 1))  # numbered in order, none skipped
