"""The state fuzzer (``fuzz_state.py``) in a fresh interpreter: random ``state_dict`` edits into
every policy's ``load_state_dict`` + ``update`` raise nothing but ``AdoError`` (no Rust panic, no
bare Python error), refused loads change nothing, accepted states keep giving distributions.
The full run (10^5 cases) is ``python tests/hardening/fuzz_state.py``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def test_state_fuzz_finds_nothing(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(HERE / "fuzz_state.py"), "--cases", "3000", "--seed", "1"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "3000 cases" in proc.stdout
    assert ", 0 failures" in proc.stdout
    # the edits reach both outcomes for every policy: refused loads and accepted ones
    for label in ("natural", "doremi", "odm", "ado", "ado-guarded"):
        assert f"{label}: load refused" in proc.stdout, proc.stdout
    assert "ado: accepted" in proc.stdout
