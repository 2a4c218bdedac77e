"""``ado corpus build``: real shards, manifest, reproducibility, splits, refusal to overwrite."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from ado.cli import main
from ado.corpus import BuildConfig, Document, DomainRecipe, build_builtin, build_corpus, split_of
from ado.corpus.build import _samples
from ado.corpus.debian import render_man
from ado.data import Manifest, MixtureLoader, PackConfig
from ado.errors import ConfigError


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def test_builtin_layout_and_manifest(tiny_corpus: Path) -> None:
    info = json.loads((tiny_corpus / "corpus.json").read_text())
    assert list(info["domains"]) == ["code_python", "docs_prose", "structured", "noise"]
    assert info["tokenizer"] == {"kind": "bytes", "vocab_size": 257, "eos_id": 256}
    manifest = Manifest.load(tiny_corpus / "manifest.yaml")
    weights = manifest.prior_weights()
    assert weights is not None
    assert sum(weights) == pytest.approx(1.0, abs=1e-6)
    for name, meta in info["domains"].items():
        assert meta["train"]["tokens"] > 0
        assert meta["val"]["tokens"] > 0, name
    # every shard is listed with its sha256 and holds u16 tokens + json metadata
    shard = tiny_corpus / "train" / "structured" / "structured-00000.tar"
    assert "train/structured/structured-00000.tar" in info["shards"]
    members = _members(shard)
    key = sorted(members)[0].split(".")[0]
    meta = json.loads(members[f"{key}.json"])
    assert meta["domain"] == "structured"
    assert meta["source"].startswith("unicodedata/")
    text = np.frombuffer(members[f"{key}.u16"], dtype="<u2").astype(np.uint8).tobytes()
    assert text.decode("utf-8").startswith("U+")


def test_splits_are_disjoint_by_source(tiny_corpus: Path) -> None:
    def sources(split: str, domain: str) -> set[str]:
        out = set()
        for shard in sorted((tiny_corpus / split / domain).glob("*.tar")):
            for name, data in _members(shard).items():
                if name.endswith(".json"):
                    out.add(json.loads(data)["source"])
        return out

    for domain in ("code_python", "docs_prose"):
        train, val = sources("train", domain), sources("val", domain)
        assert train
        assert val
        assert not train & val
        assert all(split_of(s, 50, 100) == "val" for s in val)


def test_loader_reads_the_corpus(tiny_corpus: Path) -> None:
    info = json.loads((tiny_corpus / "corpus.json").read_text())
    tok = info["tokenizer"]
    loader = MixtureLoader(
        tiny_corpus / "manifest.yaml",
        4,
        seed=0,
        pack=PackConfig(
            seq_len=32, eos_id=tok["eos_id"], field="u16", vocab_size=tok["vocab_size"]
        ),
        readahead_bytes=0,
    )
    batch = next(loader)
    assert batch.tokens is not None
    assert batch.tokens.shape == (4, 33)
    assert int(batch.tokens.max()) < tok["vocab_size"]


def test_byte_reproducible_and_refuses_overwrite(tmp_path: Path) -> None:
    kwargs = {"tokenizer": "bpe", "vocab_size": 300, "cap_bytes": 30_000, "progress": False}
    a, b = tmp_path / "a", tmp_path / "b"
    build_builtin(a, **kwargs)  # type: ignore[arg-type]
    build_builtin(b, **kwargs)  # type: ignore[arg-type]
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert (a / "tokenizer.json").exists()
    with pytest.raises(ConfigError, match="not empty"):
        build_builtin(a, **kwargs)  # type: ignore[arg-type]
    mine = a / "notes.txt"
    mine.write_text("mine")
    build_builtin(a, force=True, **kwargs)  # type: ignore[arg-type]
    assert mine.read_text() == "mine"  # --force removes only what a build writes


def test_cli_refuses_non_empty_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "x").write_text("x")
    assert main(["corpus", "build", "--out", str(tmp_path), "--no-progress"]) == 2
    assert "--force" in capsys.readouterr().err


def test_noise_domain_is_uniform_bytes(tmp_path: Path) -> None:
    cfg = BuildConfig(out=tmp_path / "c", tokenizer="bytes", cap_bytes=None, progress=False)
    text = DomainRecipe(
        "text", [("t", lambda: [Document(f"d{i}", f"para {i}\n\nshared") for i in range(400)])]
    )
    info = build_corpus([text, DomainRecipe("noise", noise_bytes=40_000)], cfg)
    assert info["domains"]["noise"]["noise"] is True
    ids = []
    for shard in sorted((tmp_path / "c" / "train" / "noise").glob("*.tar")):
        ids += [
            np.frombuffer(v, dtype="<u2") for k, v in _members(shard).items() if k.endswith(".u16")
        ]
    counts = np.bincount(np.concatenate(ids), minlength=256)
    assert counts.shape == (256,)
    assert counts.min() > 0  # every byte value occurs
    # "shared" is an exact-duplicate paragraph: kept once in the whole domain
    assert info["domains"]["text"]["train"]["bytes"] < 400 * len("para 000\n\nshared")


def test_samples_dedup_and_cut() -> None:
    seen: set[bytes] = set()
    doc = Document("s", "alpha\n\nbeta\n\nalpha\n\n" + "x" * 50)
    out = list(_samples(doc, seen, max_bytes=20))
    assert "".join(out).count("alpha") == 1
    assert all(len(s.encode()) <= 20 for s in out)
    assert list(_samples(Document("t", "beta"), seen, 20)) == []


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_sample_bytes", 10, "max_sample_bytes must be at least 64"),
        ("val_permille", 1001, "val_permille must be in"),
        ("cap_bytes", 0, "cap_bytes must be positive"),
        ("vocab_size", 0, r"vocab_size must be in \[1, 65536\]"),
        ("vocab_size", 2**40, r"\[1, 65536\] \(token ids are stored as u16\)"),
    ],
)
def test_build_config_rejects_bad_values(
    tmp_path: Path, field: str, value: int, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        BuildConfig(out=tmp_path, **{field: value})  # type: ignore[arg-type]


def test_cli_passes_max_sample_bytes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "c"
    args = ["corpus", "build", "--recipe", "builtin", "--tokenizer", "bytes", "--cap-mb", "0.05"]
    assert main([*args, "--max-sample-bytes", "512", "--out", str(out), "--no-progress"]) == 0
    info = json.loads((out / "corpus.json").read_text())
    assert info["settings"]["max_sample_bytes"] == 512
    # byte tokens: no text sample is longer than the limit (the noise domain is not text)
    lengths = [
        len(data) // 2
        for tar in (out / "train").glob("*/*.tar")
        if tar.parent.name != "noise"
        for name, data in _members(tar).items()
        if name.endswith(".u16")
    ]
    assert len(lengths) > 50
    assert max(lengths) <= 512
    assert main([*args, "--max-sample-bytes", "8", "--out", str(tmp_path / "d")]) == 2
    assert "max_sample_bytes must be at least 64" in capsys.readouterr().err


def test_render_man_gives_the_text_man_shows() -> None:
    src = (
        '.\\" comment\n.TH LS 1 2024 "GNU" "User Commands"\n.SH NAME\n'
        "ls \\- list \\fBfiles\\fR \\(em fast\n.PP\nK\\(:ase und Br\u00f6tchen\n"
        ".TP\n.B \\-a\ndo not ignore entries\n"
    )
    text = render_man(src)
    assert "comment" not in text
    assert "\\f" not in text
    assert "User Commands" not in text  # the running header is dropped
    assert "NAME" in text
    assert "ls - list files \u2014 fast" in text
    assert "K\u00e4se und Br\u00f6tchen" in text  # roff glyphs and UTF-8 input
    assert "-a" in text
    assert "do not ignore entries" in text
    assert render_man(".so man1/other.1\n") == ""


def test_roundtrip_bpe_ids_fit_u16(tmp_path: Path) -> None:
    from ado.corpus import train_bpe

    tok = train_bpe(["hello world\n\ndef f(x):\n    return x"] * 20, vocab_size=300)
    ids = tok.encode_batch(["hello world"])[0]
    assert ids.dtype == np.uint16
    assert int(ids.max()) < tok.vocab_size
    assert tok.byte_ids(bytes(range(256))).shape == (256,)
    tok.save(tmp_path)
    from tokenizers import Tokenizer

    hf = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert hf.decode(ids.tolist()) == "hello world"


def _build_cmd(out: Path, seed: int) -> list[str]:
    return [
        *(sys.executable, "-c", "import sys; from ado.cli import main; sys.exit(main())"),
        *("corpus", "build", "--tokenizer", "bytes"),
        *("--cap-mb", "0.03", "--seed", str(seed), "--no-progress", "--out", str(out)),
    ]


def test_concurrent_builds_into_one_folder_do_not_mix(tmp_path: Path) -> None:
    from ado.corpus.build import build_lock

    out = tmp_path / "c"
    out.mkdir()
    with build_lock(out):  # a build in progress: a second one waits for it
        waiting = subprocess.Popen(_build_cmd(out, 1), stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)  # (not a speed limit: only how long the waiter is observed waiting)
        assert waiting.poll() is None
        assert not (out / "corpus.json").exists()
    _, err = waiting.communicate(timeout=300)
    assert waiting.returncode == 0, err
    first = json.loads((out / "corpus.json").read_text())
    # two more at once into the same folder: one may build (--force is off, the folder is full),
    # so both refuse, and the corpus stays whole
    procs = [
        subprocess.Popen(_build_cmd(out, s), stderr=subprocess.PIPE, text=True) for s in (2, 3)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 2, err
        assert "not empty" in err
    assert json.loads((out / "corpus.json").read_text()) == first
    for rel, digest in first["shards"].items():
        assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == digest, rel


def test_concurrent_forced_builds_leave_one_whole_corpus(tmp_path: Path) -> None:
    out = tmp_path / "c"
    procs = [
        subprocess.Popen([*_build_cmd(out, s), "--force"], stderr=subprocess.PIPE, text=True)
        for s in (1, 2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    info = json.loads((out / "corpus.json").read_text())
    listed = set(info["shards"])
    on_disk = {str(p.relative_to(out)) for p in out.rglob("*.tar")}
    assert listed == on_disk  # no shard of the other build left behind
    for rel, digest in info["shards"].items():
        assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == digest, rel


def test_build_lock_is_reentrant_in_one_process(tmp_path: Path) -> None:
    from ado.corpus.build import build_lock

    out = tmp_path / "c"
    with build_lock(out):  # what `ado compare --corpus builtin` does around build-if-missing
        build_builtin(out, tokenizer="bytes", cap_bytes=20_000, progress=False)
    assert (out / "corpus.json").exists()
