"""A tiny built-in corpus shared by the corpus and compare tests (built once per session), and a
real one-node Slurm cluster for the ``--launcher slurm`` tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from ado.corpus import build_builtin
from slurm_cluster import missing, slurm_cluster


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in recipe with a 60 KB cap per domain and plain-byte tokens."""
    out = tmp_path_factory.mktemp("corpus") / "builtin"
    build_builtin(out, tokenizer="bytes", cap_bytes=60_000, progress=False)
    return out


@pytest.fixture(scope="session")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A real one-node Slurm cluster on 127.0.0.1 (``slurm_cluster.py``), started once for the
    session and stopped at its end; yields the environment (``SLURM_CONF``) to run Slurm
    commands in. Skipped where Slurm or root is missing, unless ``ADO_REQUIRE_SLURM=1`` (CI)."""
    why = None
    if missing():
        why = f"Slurm is not installed (missing {missing()}; apt-get install slurmctld slurmd "
        why += "slurm-client munge)"
    elif os.geteuid() != 0:
        why = "the test Slurm cluster runs its daemons as root"
    if why is not None:
        if os.environ.get("ADO_REQUIRE_SLURM") == "1":
            pytest.fail(why)
        pytest.skip(why)
    with slurm_cluster(tmp_path_factory.mktemp("slurm")) as env:
        yield env
