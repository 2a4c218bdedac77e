"""Every ```python block of README.md runs as written, on its own, in a fresh interpreter, and
prints what the ```text block right after it shows (doctest's comparison: ``...`` matches
anything, runs of whitespace are equal)."""

from __future__ import annotations

import doctest
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
TEXT = README.read_text()
BLOCKS = re.findall(r"^```python\n(.*?)^```$", TEXT, flags=re.S | re.M)
EXAMPLES = re.findall(r"^```python\n(.*?)^```\n+```text\n(.*?)^```$", TEXT, flags=re.S | re.M)


def test_readme_has_python_examples() -> None:
    assert len(BLOCKS) >= 5


def test_every_python_example_shows_its_output() -> None:
    assert [code for code, _ in EXAMPLES] == BLOCKS, "a ```python block without its ```text"


def matches(expected: str, got: str) -> bool:
    """doctest's check with ``...`` and normalised whitespace."""
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    return doctest.OutputChecker().check_output(expected, got, flags)


def test_the_output_check_can_fail() -> None:
    assert matches("[0.5 0.3 ...]\n", "[0.5  0.3 0.2]\n")
    assert not matches("[0.5 0.3 ...]\n", "[0.4 0.3 0.2]\n")
    assert not matches("{}\n", "{'ado/weight/a': 0.5}\n")


@pytest.mark.parametrize(
    ("code", "output"), EXAMPLES, ids=[f"block{i}" for i in range(len(EXAMPLES))]
)
def test_readme_block_runs_and_prints_what_it_shows(
    code: str, output: str, tmp_path: Path
) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,  # not the checkout: presets by name, no relative paths
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"{code}\n--- stderr:\n{proc.stderr[-3000:]}"
    assert matches(output, proc.stdout), f"--- README shows:\n{output}--- printed:\n{proc.stdout}"
