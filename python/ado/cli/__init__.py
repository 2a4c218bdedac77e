"""The ``ado`` command line.

Each subcommand lives in its own module under ``ado.cli`` and exposes ``register(subparsers)``,
which adds its parser and sets ``func`` (a callable taking the parsed namespace and returning an
exit code).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from ado.errors import AdoError

__all__ = ["main"]

#: Modules that contribute subcommands, in help order.
COMMAND_MODULES: tuple[str, ...] = (
    "ado.cli.simulate",
    "ado.cli.replay",
    "ado.cli.shards",
    "ado.cli.fit",
    "ado.cli.corpus",
    "ado.cli.compare",
)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser."""
    parser = _Parser(
        prog="ado",
        description="ado: adaptive data mixtures for language-model pretraining. "
        "Run 'ado COMMAND --help' for a command's options.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ado`` console script."""
    args = build_parser().parse_args(argv)
    if args.verbose:  # DEBUG lines of the protocol libraries show URLs and signed headers
        from ado.data.remote import install_log_redaction

        install_log_redaction()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        print(f"ado {args.command}: interrupted", file=sys.stderr)
        return 130
    except (AdoError, OSError, ValueError) as err:  # bad input, a file problem: one line
        print(f"ado {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except Exception as err:  # a bug: one line, the traceback with -v
        logging.getLogger(__name__).debug("traceback", exc_info=True)
        print(
            f"ado {args.command}: internal error: {type(err).__name__}: {_one_line(err)} "
            "(run with -v for the traceback; please report)",
            file=sys.stderr,
        )
        return 1
    return code


def _one_line(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " | ".join(lines) if len(lines) <= 6 else " | ".join([*lines[:6], "..."])


if __name__ == "__main__":
    raise SystemExit(main())
