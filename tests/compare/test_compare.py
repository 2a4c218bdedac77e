"""``ado compare`` smoke run: two policies, a few steps, report schema, files, resume."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")

from ado.cli import main
from ado.compare import PRESETS, REPORT_VERSION, CompareConfig, run_compare

REPO = Path(__file__).resolve().parents[2]
POLICIES = [REPO / "policies" / "natural.yaml", REPO / "policies" / "ado.yaml"]


def _cfg(corpus: Path, out: Path, **kw: object) -> CompareConfig:
    preset = (
        PRESETS["cpu-small"]
        .scaled(6)
        .model_copy(
            update={
                "n_embd": 16,
                "n_head": 2,
                "n_layer": 1,
                "seq_len": 16,
                "batch_size": 4,
                "eval_batches": 1,
                "threads": 1,
            }
        )
    )
    return CompareConfig(
        corpus=corpus, policies=POLICIES, preset=preset, out=out, progress=False, **kw
    )  # type: ignore[arg-type]


def _check_schema(report: dict[str, object], domains: list[str]) -> None:
    assert report["version"] == REPORT_VERSION
    assert report["domains"] == domains
    runs = report["runs"]
    assert isinstance(runs, list)
    assert {r["policy"] for r in runs} == {"natural", "ado"}
    for r in runs:
        assert set(r["heldout_loss"]) == set(domains)
        assert set(r["tokens_seen"]) == set(domains)
        assert sum(r["tokens_seen"].values()) == r["tokens"]
        for key in ("uniform_avg", "natural_avg", "wall_seconds", "policy_seconds", "seed"):
            assert isinstance(r[key], float | int), key
        assert r["uniform_avg"] == pytest.approx(sum(r["heldout_loss"].values()) / len(domains))
    summary = report["summary"]
    assert isinstance(summary, list)
    assert [s["policy"] for s in summary] == ["natural", "ado"]
    (vs,) = report["ado_vs_baselines"]  # type: ignore[misc]
    assert vs["baseline"] == "natural"
    assert vs["ado_lower"] == (vs["delta"] < 0)
    assert set(report["files"]) == {"markdown", "metrics", "plots"}  # type: ignore[arg-type]


def test_smoke_compare_and_resume(tiny_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    report = run_compare(_cfg(tiny_corpus, out))
    domains = ["code_python", "docs_prose", "structured", "noise"]
    _check_schema(report, domains)
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["summary"] == report["summary"]
    for rel in ("report.md", "metrics.jsonl", *report["files"]["plots"]):
        assert (out / rel).stat().st_size > 0, rel
    assert {Path(p).name for p in report["files"]["plots"]} == {
        "weights.png",
        "heldout.png",
        "ado_fits.png",
    }
    md = (out / "report.md").read_text()
    assert "| natural |" in md
    assert "uniform avg" in md
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert {r["policy"] for r in records} == {"natural", "ado"}
    assert any(r.get("event") == "eval" for r in records)

    # a killed run: ADO's result and newest checkpoint are gone; it resumes from the older one
    folder = out / "runs" / "ado" / "seed0"
    first = json.loads((folder / "result.json").read_text())
    (folder / "result.json").unlink()
    ckpts = sorted((folder / "ckpt" / "rank_0").glob("step_*.pt"))
    assert len(ckpts) >= 2
    for rank_dir in (folder / "ckpt").iterdir():
        (rank_dir / ckpts[-1].name).unlink()
    nat_mtime = os.stat(out / "runs" / "natural" / "seed0" / "result.json").st_mtime_ns
    again = run_compare(_cfg(tiny_corpus, out))
    second = json.loads((folder / "result.json").read_text())
    assert second["resumed"] is True
    assert second["tokens_seen"] == first["tokens_seen"]
    for d in domains:
        assert second["heldout_loss"][d] == pytest.approx(first["heldout_loss"][d], rel=1e-5)
    # the finished natural run was skipped, not retrained
    assert os.stat(out / "runs" / "natural" / "seed0" / "result.json").st_mtime_ns == nat_mtime
    _check_schema(again, domains)


def test_refuses_another_comparison(
    tiny_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "mine.txt").write_text("x")
    code = main(
        [
            "compare",
            "--corpus",
            str(tiny_corpus),
            "--policies",
            "natural",
            "ado",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "mine.txt").read_text() == "x"
