"""A tiny built-in corpus shared by the corpus and compare tests (built once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ado.corpus import build_builtin


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in recipe with a 60 KB cap per domain and plain-byte tokens."""
    out = tmp_path_factory.mktemp("corpus") / "builtin"
    build_builtin(out, tokenizer="bytes", cap_bytes=60_000, progress=False)
    return out
