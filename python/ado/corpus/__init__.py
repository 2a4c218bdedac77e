"""Corpus building: real multi-domain text → WebDataset shards of token ids plus a manifest.

``ado corpus build --recipe builtin|debian --out DIR`` (see :mod:`ado.cli.corpus`) runs
:func:`build_corpus` on the domains of :func:`builtin_recipes` (standard library, ``unicodedata``,
random bytes) or :func:`ado.corpus.debian.debian_recipes` (the 10-domain benchmark set of Debian
and PyPI packages). :func:`build_builtin` builds the built-in corpus in one call.
"""

from __future__ import annotations

from ado.corpus.build import (
    CORPUS_FORMAT_VERSION,
    BuildConfig,
    Document,
    DomainRecipe,
    build_corpus,
    split_of,
)
from ado.corpus.builtin import (
    BUILTIN_CAP_BYTES,
    BUILTIN_CORPUS_VERSION,
    build_builtin,
    builtin_metadata,
    builtin_recipes,
)
from ado.corpus.ood import builtin_ood, debian_ood
from ado.corpus.tokenizer import CorpusTokenizer, train_bpe

__all__ = [
    "BUILTIN_CAP_BYTES",
    "BUILTIN_CORPUS_VERSION",
    "CORPUS_FORMAT_VERSION",
    "BuildConfig",
    "CorpusTokenizer",
    "Document",
    "DomainRecipe",
    "build_builtin",
    "build_corpus",
    "builtin_metadata",
    "builtin_ood",
    "builtin_recipes",
    "debian_ood",
    "split_of",
    "train_bpe",
]
