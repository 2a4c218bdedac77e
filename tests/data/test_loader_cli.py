"""``ado shards index`` and ``ado shards manifest``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ado.cli import main
from ado.data import Manifest, MixtureLoader


def test_shards_index_and_manifest(
    make_domain: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_domain("web", 30, per_shard=10)
    make_domain("code", 12, per_shard=5)
    assert main(["shards", "index", str(tmp_path / "web/shard-{000..002}.tar")]) == 0
    assert "3 shards, 30 samples" in capsys.readouterr().out
    assert main(["shards", "index", "--json", str(tmp_path / "web/*.tar")]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["source"] for x in lines] == ["cache"] * 3
    assert main(["shards", "manifest", str(tmp_path)]) == 0
    manifest = Manifest.load(tmp_path / "manifest.yaml")
    assert manifest.names == ["code", "web"]
    assert MixtureLoader(manifest, 4).num_samples == [12, 30]
    # An existing manifest is not overwritten by accident.
    assert main(["shards", "manifest", str(tmp_path)]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["shards", "index", str(tmp_path / "nope.tar")]) == 2
