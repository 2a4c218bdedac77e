"""The CLI reads as plain text, every option says what it does, a missing extra is named."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from ado.cli import build_parser


def _parsers(
    parser: argparse.ArgumentParser, path: str = "ado"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


PARSERS = list(_parsers(build_parser()))


@pytest.mark.parametrize(("path", "parser"), PARSERS, ids=[p for p, _ in PARSERS])
def test_every_option_has_help_and_the_text_is_plain(
    path: str, parser: argparse.ArgumentParser
) -> None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        assert action.help, f"{path}: {action.option_strings or action.dest} has no help"
    text = parser.format_help()
    assert "``" not in text, f"{path}: raw reST in the help:\n{text}"
    assert "::\n" not in text, f"{path}: raw reST in the help:\n{text}"


def test_a_missing_optional_dependency_names_its_extra() -> None:
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from ado.errors import MissingDependencyError\n"
        "from ado.sim import default_spec, plot_weights, simulate\n"
        "from ado import load_policy\n"
        "spec = default_spec()\n"
        "res = simulate(load_policy('uniform', domains=spec.names), spec, 5, seed=0)\n"
        "try:\n"
        "    plot_weights(res, 'w.png')\n"
        "except MissingDependencyError as err:\n"
        "    assert isinstance(err, ImportError)\n"
        "    print(err)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "pip install 'ado[plot]'" in out


def test_simulate_without_matplotlib_warns_and_skips_the_plot(tmp_path: Path) -> None:
    """It did all the work, then exited 2 at the plot; now it says so up front and succeeds."""
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from ado.cli import main; raise SystemExit(main())"
    )
    out = tmp_path / "sim"
    proc = subprocess.run(
        [sys.executable, "-c", code, "simulate", "--policy", "natural", "--steps", "5",
         "--no-progress", "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "pip install 'ado[plot]'" in proc.stderr
    assert "skipping weights.png" in proc.stderr
    assert (out / "run.jsonl").is_file()
    assert not (out / "weights.png").exists()
    assert "mean final loss" in proc.stdout


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize("script", ["train_gpt.py", "train_hf.py", "train_lightning.py"])
def test_training_examples_help_has_whole_sentences_and_defaults(script: str) -> None:
    pytest.importorskip("torch")
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--help"],
        capture_output=True, text=True, timeout=120, check=True, cwd=BENCHMARKS,
    )  # fmt: skip
    _usage, _, rest = proc.stdout.partition("\n\n")
    description = rest.split("\n\n")[0]
    assert description.rstrip().endswith("."), description  # was cut mid-sentence
    assert "``" not in proc.stdout
    assert "--steps STEPS         (default: 200)" in proc.stdout
    assert "--device DEVICE       (default: cpu)" in proc.stdout


@pytest.mark.parametrize("script", ["train_gpt.py", "train_hf.py", "train_lightning.py"])
def test_training_examples_refuse_a_missing_manifest_in_one_line(
    script: str, tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--manifest", str(tmp_path / "nope.yaml"),
         "--steps", "2", "--no-progress"],
        capture_output=True, text=True, timeout=300, cwd=BENCHMARKS,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert f"{script}: error: {tmp_path / 'nope.yaml'}: cannot read manifest" in proc.stderr
