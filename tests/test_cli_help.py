"""The CLI reads as plain text, every option says what it does, a missing extra is named."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator

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
