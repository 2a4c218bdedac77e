"""The GPU recipe (``benchmarks/gpu_compare.sh``) end to end on the CPU at a tiny size: pack a
corpus, unpack it elsewhere, train the four policies at once, write the report."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")

from ado.compare import PRESETS

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_compare.sh"


def _env(**extra: str) -> dict[str, str]:
    ado = Path(sys.executable).with_name("ado")
    return {**os.environ, "ADO": str(ado) if ado.exists() else "ado", **extra}


def test_the_gpu_preset_fits_the_lease() -> None:
    preset = PRESETS["gpu-short"].config()
    assert (preset.device, preset.dtype) == ("cuda", "bf16")
    assert preset.steps * preset.batch_size * preset.seq_len == 49_152_000
    ado = PRESETS["gpu-short"].ado_overrides  # first refit on >= 50 fit points
    assert (ado["start_step"] - ado["ignore_steps"]) / ado["subsample"] >= 50


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_recipe_packs_trains_four_policies_and_reports(tiny_corpus: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, corpus)
    archive = tmp_path / "corpus.tar.gz"
    subprocess.run(
        ["bash", str(SCRIPT), "prepare", str(corpus), str(archive)], check=True, env=_env()
    )
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert "./manifest.yaml" in names
    assert any(n.endswith(".tar.adoidx") for n in names)  # indexed before shipping
    # refuses to overwrite the archive
    again = subprocess.run(
        ["bash", str(SCRIPT), "prepare", str(corpus), str(archive)], env=_env(), check=False
    )
    assert again.returncode == 2
    shutil.rmtree(corpus)  # the run side has only the archive

    out = tmp_path / "runs"
    tiny = _env(
        ADO_GPU_PRESET="cpu-small",
        ADO_GPU_STEPS="6",
        ADO_GPU_DEVICE="cpu",
        ADO_GPU_JOBS="2",
        ADO_GPU_BUDGET_S="900",
    )
    done = subprocess.run(
        ["bash", str(SCRIPT), "run", str(archive), str(out)],
        env=tiny,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert {r["policy"] for r in report["runs"]} == {"natural", "uniform", "temperature", "ado"}
    assert {r["seed"] for r in report["runs"]} == {0}
    assert (out / "report.md").exists()
    assert "[gpu_compare" in done.stderr  # the phases are timed


def test_a_budget_that_leaves_no_training_time_is_refused(
    tiny_corpus: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "corpus.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tiny_corpus, arcname=".")
    done = subprocess.run(
        ["bash", str(SCRIPT), "run", str(archive), str(tmp_path / "runs")],
        env=_env(ADO_GPU_BUDGET_S="10"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "no time left" in done.stderr
