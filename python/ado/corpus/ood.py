"""Out-of-distribution held-out sets: text from sources that no training domain draws from.

The ADO paper's claim is a lower loss than the natural mixture on text *outside* the training
mixture (SlimPajama, FineWeb for a Pile-trained model). These sets are the analogue for the two
recipes; ``ado corpus build`` writes them beside ``val.yaml`` (``ood/<set>/*.tar``, ``ood.yaml``)
and ``ado compare`` reports each set's loss.

``builtin`` (every CPython installation):

* ``c_headers``: CPython's C headers (``sysconfig`` ``include``): C, where the training code is
  Python;
* ``idle_text``: IDLE's plain-text files (news, history, credits, README) and the standard
  library's ``LICENSE.txt``: release notes and licence prose, where the training prose is
  docstrings and the Language Reference.

``debian`` (what a Debian system carries beyond the recipe's packages):

* ``perl``: the Perl core modules and their POD (``/usr/share/perl``): a programming language
  and documentation style no domain has;
* ``c_headers``: the system C headers (``/usr/include``);
* ``readme``: the packages' ``README*`` files under ``/usr/share/doc`` (the ``informal`` and
  ``legal`` domains read only ``changelog.Debian.gz`` and ``copyright`` there).

A set whose files are absent on the building machine is left out of the corpus (and listed in
``corpus.json`` under ``ood_missing``).
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import sysconfig
from collections.abc import Iterable, Iterator
from pathlib import Path

from ado.corpus.build import Document, DomainRecipe

__all__ = ["builtin_ood", "debian_ood"]

logger = logging.getLogger(__name__)


def _hash_order(paths: Iterable[Path]) -> list[Path]:
    """A fixed order that does not follow the alphabet (a size cap then samples everything)."""
    return sorted(paths, key=lambda p: hashlib.sha1(p.as_posix().encode()).hexdigest())


def _files(root: Path, patterns: tuple[str, ...]) -> list[Path]:
    if not root.is_dir():
        return []
    found = {p for pat in patterns for p in root.rglob(pat) if p.is_file() and not p.is_symlink()}
    return _hash_order(found)


def _docs(paths: Iterable[Path], root: Path, prefix: str) -> Iterator[Document]:
    for p in paths:
        try:
            data = p.read_bytes()
            if p.suffix == ".gz":
                data = gzip.decompress(data)
        except (OSError, EOFError, gzip.BadGzipFile) as e:
            logger.warning("skipped %s: %s", p, e)
            continue
        text = data.decode("utf-8", errors="replace")
        if text.strip():
            yield Document(f"{prefix}/{p.relative_to(root).as_posix()}", text)


def builtin_ood() -> list[DomainRecipe]:
    """The out-of-distribution sets of the built-in corpus."""
    include = Path(sysconfig.get_paths()["include"])
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    idle = stdlib / "idlelib"

    def headers() -> Iterator[Document]:
        yield from _docs(_files(include, ("*.h",)), include, "include")

    def idle_text() -> Iterator[Document]:
        files = _files(idle, ("*.txt",)) if idle.is_dir() else []
        yield from _docs([p for p in files if p.parent == idle], stdlib, "stdlib")
        if (stdlib / "LICENSE.txt").is_file():
            yield from _docs([stdlib / "LICENSE.txt"], stdlib, "stdlib")

    return [
        DomainRecipe("c_headers", [("cpython-include", headers)]),
        DomainRecipe("idle_text", [("idle-txt", idle_text)]),
    ]


def debian_ood(
    perl: Path = Path("/usr/share/perl"),
    include: Path = Path("/usr/include"),
    doc: Path = Path("/usr/share/doc"),
) -> list[DomainRecipe]:
    """The out-of-distribution sets of the ``debian`` corpus (folders overridable for tests)."""

    def perl_docs() -> Iterator[Document]:
        yield from _docs(_files(perl, ("*.pm", "*.pod")), perl, "perl")

    def headers() -> Iterator[Document]:
        yield from _docs(_files(include, ("*.h",)), include, "include")

    def readmes() -> Iterator[Document]:
        yield from _docs(_files(doc, ("README", "README.*", "README.gz")), doc, "doc")

    return [
        DomainRecipe("perl", [("perl-modules", perl_docs)]),
        DomainRecipe("c_headers", [("usr-include", headers)]),
        DomainRecipe("readme", [("doc-readme", readmes)]),
    ]
