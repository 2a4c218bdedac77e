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


def test_the_paper_scale_preset_is_the_papers_124m_run_past_ados_first_fits() -> None:
    preset = PRESETS["gpu-124m"]
    c = preset.config()
    assert (c.n_layer, c.n_head, c.n_embd, c.seq_len) == (12, 12, 768, 1024)
    assert c.batch_size * c.grad_accum == 256  # the paper's 124M global batch (rows)
    assert (c.device, c.dtype) == ("cuda", "bf16")
    ado = preset.ado_overrides  # ADO's shipped schedule, not scaled down
    assert (ado["ignore_steps"], ado["start_step"], ado["update_interval"]) == (1000, 2000, 1000)
    assert (ado["start_step"] - ado["ignore_steps"]) / ado["subsample"] >= 50  # first fit
    refits = range(ado["start_step"], c.steps + 1, ado["update_interval"])
    assert len(refits) >= 3  # past the first fits
    cost = preset.estimated_cost(50304)  # GPT-2-size vocabulary: the paper's 124M parameters
    assert 123e6 < cost["params"] < 125e6
    assert cost["flops"] == pytest.approx(854e6 * preset.tokens_per_run(), rel=0.01)
    for ranks in (1, 2, 4, 8, 16):  # one node of 8 GPUs, or two
        assert c.batch_size % ranks == 0


def test_the_readme_cluster_command_parses() -> None:
    import shlex

    from ado.cli import build_parser

    text = (REPO / "README.md").read_text()
    start = text.index("ado compare --corpus corpora/debian --preset gpu-124m")
    line = text[start : text.index("\n  ```", start)].replace("\\\n", " ")
    args = build_parser().parse_args(shlex.split(line)[1:])
    assert (args.preset, args.launcher, args.nproc_per_node) == ("gpu-124m", "slurm", 8)
    assert args.preset in PRESETS
