"""The built-in corpus: real text every Python installation carries, plus a noise control.

Domains (``--recipe builtin``):

* ``code_python``: the standard library's ``*.py`` sources (``site-packages`` skipped), in an order
  fixed by a hash of their path (so a size cap samples the whole library, not its first letters).
* ``docs_prose``: English technical prose: the docstrings of the standard-library modules outside
  ``test/`` (``ast.get_docstring``, one document per module) and the ``pydoc_data`` topics (the
  Language Reference sections that ``help()`` shows).
* ``structured``: one tab-separated line per named code point from ``unicodedata`` (code point,
  name, category, bidirectional class, decomposition), one document per 256-code-point block.
* ``noise``: uniformly random bytes: irreducible (``ln 256`` nats per token); a mixing policy
  should learn to starve it.

What the domains hold depends on the Python version (recorded in ``corpus.json``).
"""

from __future__ import annotations

import ast
import hashlib
import os
import sys
import sysconfig
import unicodedata
import warnings
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from ado.corpus.build import BuildConfig, Document, DomainRecipe, build_corpus
from ado.corpus.ood import builtin_ood
from ado.errors import ConfigError

__all__ = [
    "BUILTIN_CAP_BYTES",
    "BUILTIN_CORPUS_VERSION",
    "build_builtin",
    "builtin_metadata",
    "builtin_recipes",
    "stdlib_files",
]

#: Bumped whenever the built-in recipe or a build default changes the corpus' bytes, so that a
#: cached ``--corpus builtin`` from an older version is rebuilt rather than reused.
BUILTIN_CORPUS_VERSION = 3


def _stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(include_tests: bool = True) -> list[Path]:
    """The stdlib's ``*.py`` files (not ``site-packages``), ordered by a hash of their path."""
    root = _stdlib_root()
    files = []
    for p in root.rglob("*.py"):
        rel = p.relative_to(root)
        if "site-packages" in rel.parts or "dist-packages" in rel.parts:
            continue
        if not include_tests and (
            "test" in rel.parts or "tests" in rel.parts or "idle_test" in rel.parts
        ):
            continue
        files.append(rel)
    files.sort(key=lambda r: hashlib.sha1(r.as_posix().encode()).hexdigest())
    return [root / r for r in files]


def _code() -> Iterator[Document]:
    root = _stdlib_root()
    for path in stdlib_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        yield Document(f"stdlib/{path.relative_to(root).as_posix()}", text)


def _module_docstrings(path: Path) -> str:
    """All docstrings of one module (module, classes, functions), blank-line separated."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
        return ""
    docs = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=True)
            if doc and len(doc) > 40:
                docs.append(doc)
    return "\n\n".join(docs)


def _docstrings(workers: int) -> Iterator[Document]:
    root = _stdlib_root()
    files = stdlib_files(include_tests=False)
    # in slices, so that a size cap stops the parsing too
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for i in range(0, len(files), 64):
            part = files[i : i + 64]
            for path, text in zip(
                part, pool.map(_module_docstrings, part, chunksize=8), strict=True
            ):
                if text:
                    yield Document(f"docstrings/{path.relative_to(root).as_posix()}", text)


def _topics() -> Iterator[Document]:
    try:
        from pydoc_data.topics import topics
    except ImportError:  # pragma: no cover - a Python without pydoc_data
        return
    for name in sorted(topics):
        yield Document(f"pydoc_topics/{name}", topics[name])


def _unicode() -> Iterator[Document]:
    for block in range(0, sys.maxunicode + 1, 256):
        lines = []
        for cp in range(block, block + 256):
            ch = chr(cp)
            name = unicodedata.name(ch, "")
            if not name:
                continue
            lines.append(
                f"U+{cp:04X}\t{name}\t{unicodedata.category(ch)}\t"
                f"{unicodedata.bidirectional(ch)}\t{unicodedata.decomposition(ch)}"
            )
        if lines:
            yield Document(
                f"unicodedata/{unicodedata.unidata_version}/U+{block:04X}", "\n".join(lines)
            )


def builtin_recipes(noise_bytes: int = 300_000, workers: int = 2) -> list[DomainRecipe]:
    """The built-in domains (``code_python``, ``docs_prose``, ``structured``, ``noise``).

    Args:
        noise_bytes: training bytes of the random-byte domain.
        workers: processes that parse the stdlib for docstrings (at most the machine's CPUs).

    Raises:
        ConfigError: ``workers`` outside ``[1, os.cpu_count()]``.
    """
    cpus = os.cpu_count() or 1
    if not 1 <= workers <= cpus:
        raise ConfigError(
            f"workers must be in [1, {cpus}] (this machine's CPUs: extraction is CPU-bound), "
            f"got {workers}"
        )
    return [
        DomainRecipe("code_python", [("stdlib", _code)]),
        DomainRecipe(
            "docs_prose",
            [("docstrings", lambda: _docstrings(workers)), ("pydoc_topics", _topics)],
        ),
        DomainRecipe("structured", [("unicodedata", _unicode)]),
        DomainRecipe("noise", noise_bytes=noise_bytes),
    ]


def builtin_metadata() -> dict[str, object]:
    """What the built-in corpus depends on."""
    return {
        "recipe": "builtin",
        "stdlib": str(_stdlib_root()),
        "unicode_version": unicodedata.unidata_version,
    }


#: Default cap on each domain's training text (bytes).
BUILTIN_CAP_BYTES = 1_500_000


def build_builtin(
    out: str | Path,
    *,
    tokenizer: str = "bpe",
    vocab_size: int = 4096,
    cap_bytes: int | None = BUILTIN_CAP_BYTES,
    val_permille: int = 50,
    max_sample_bytes: int = BuildConfig.max_sample_bytes,
    seed: int = 0,
    workers: int = 2,
    force: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Build the built-in corpus into ``out`` (what ``ado compare --corpus builtin`` calls).

    Returns:
        ``corpus.json``'s content.
    """
    cfg = BuildConfig(
        out=Path(out),
        tokenizer=tokenizer,  # type: ignore[arg-type]
        vocab_size=vocab_size,
        cap_bytes=cap_bytes,
        val_permille=val_permille,
        tok_permille=100,
        tok_sample_bytes=400_000,
        max_sample_bytes=max_sample_bytes,
        seed=seed,
        force=force,
        metadata=builtin_metadata(),
        progress=progress,
    )
    noise = max(cap_bytes // 5, 20_000) if cap_bytes else 300_000
    recipes = builtin_recipes(noise_bytes=noise, workers=workers)
    return build_corpus(recipes, cfg, ood=builtin_ood())
