"""Out-of-distribution held-out sets: built beside ``val.yaml``, from sources no training domain
draws from, scored by ``ado compare`` with paired per-seed deltas and intervals."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from ado.corpus import BuildConfig, Document, DomainRecipe, build_corpus, debian_ood
from ado.data import Manifest

pytest.importorskip("scipy")


def _sources(folder: Path) -> set[str]:
    out = set()
    for shard in sorted(folder.rglob("*.tar")):
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                if m.name.endswith(".json"):
                    out.add(json.loads(tar.extractfile(m).read())["source"])  # type: ignore[union-attr]
    return out


def test_builtin_corpus_has_ood_sets_no_domain_draws_from(tiny_corpus: Path) -> None:
    info = json.loads((tiny_corpus / "corpus.json").read_text())
    assert set(info["ood"]) | set(info["ood_missing"]) == {"c_headers", "idle_text"}
    assert info["ood"], "this CPython has neither its C headers nor idlelib"
    ood = Manifest.load(tiny_corpus / "ood.yaml")
    assert ood.names == list(info["ood"])
    trained = _sources(tiny_corpus / "train") | _sources(tiny_corpus / "val")
    for name, meta in info["ood"].items():
        held = _sources(tiny_corpus / "ood" / name)
        assert meta["tokens"] > 0
        assert held
        assert not held & trained
        prefix = "include/" if name == "c_headers" else "stdlib/"
        assert all(s.startswith(prefix) for s in held)
        for shard in (tiny_corpus / "ood" / name).glob("*.tar"):
            assert str(shard.relative_to(tiny_corpus)) in info["shards"]
    # held-out size: capped like a validation split (5 % of the 60 KB cap + 64 KB)
    assert all(m["bytes"] <= 60_000 * 0.05 + 65536 + 2048 for m in info["ood"].values())


def test_debian_ood_sets_read_their_folders_and_a_missing_one_is_left_out(
    tmp_path: Path,
) -> None:
    perl, include, doc = tmp_path / "perl", tmp_path / "include", tmp_path / "doc"
    (perl / "5.36" / "File").mkdir(parents=True)
    (perl / "5.36" / "File" / "Copy.pm").write_text("package File::Copy;\n\n=head1 NAME\n\ncopy\n")
    (include / "sys").mkdir(parents=True)
    (include / "sys" / "types.h").write_text("#ifndef _SYS_TYPES_H\n#define _SYS_TYPES_H 1\n")
    sets = debian_ood(perl=perl, include=include, doc=doc)  # no doc folder: nothing to read
    docs = [Document(f"a/{i}", f"alpha {i} " * 50) for i in range(40)]
    recipes = [DomainRecipe("a", [("a", lambda: docs)])]
    info = build_corpus(
        recipes,
        BuildConfig(out=tmp_path / "c", tokenizer="bytes", val_permille=500, progress=False),
        ood=sets,
    )
    assert list(info["ood"]) == ["perl", "c_headers"]
    assert info["ood_missing"] == ["readme"]
    assert _sources(tmp_path / "c" / "ood" / "perl") == {"perl/5.36/File/Copy.pm"}
    assert _sources(tmp_path / "c" / "ood" / "c_headers") == {"include/sys/types.h"}
    assert Manifest.load(tmp_path / "c" / "ood.yaml").names == ["perl", "c_headers"]


def _run(policy: str, kind: str, seed: int, uniform: float, ood: float) -> dict[str, object]:
    return {
        "policy": policy,
        "kind": kind,
        "seed": seed,
        "heldout_loss": {"a": uniform, "b": uniform},
        "ood_loss": {"c_headers": ood},
        "tokens_seen": {"a": 1, "b": 1},
        "wall_seconds": 1.0,
        "policy_seconds": 0.1,
        "uniform_avg": uniform,
        "natural_avg": uniform + 0.5,
    }


def test_ado_vs_baselines_pairs_every_metric_by_seed() -> None:
    from ado.compare.report import _ado_vs, _ood_section, _summary, paired_interval

    runs = [
        *(_run("natural", "static", k, 3.0 + 0.1 * k, 4.0 + 0.2 * k) for k in range(3)),
        *(
            _run("ado", "ado", k, 3.0 + 0.1 * k - 0.01, 4.0 + 0.2 * k + d)
            for k, d in enumerate((0.03, -0.01, 0.02))
        ),
    ]
    summary = _summary(runs, ["a", "b"], ["a", "b"])  # held-out sets, trained domains
    assert summary[0]["ood_loss_mean"] == {"c_headers": pytest.approx(4.2)}
    (v,) = _ado_vs(summary, runs)
    ood = v["ood"]["c_headers"]
    assert ood["paired_deltas"] == {
        "0": pytest.approx(0.03),
        "1": pytest.approx(-0.01),
        "2": pytest.approx(0.02),
    }
    assert ood["lower_on_seeds"] == 1
    assert ood["paired_ci95"] == pytest.approx(paired_interval([0.03, -0.01, 0.02]))
    assert v["paired_natural_avg_ci95"] == pytest.approx([-0.01, -0.01])  # the same every seed
    assert v["natural_avg_lower_on_seeds"] == 3
    lines = "\n".join(
        _ood_section({"ood_sets": ["c_headers"], "summary": summary, "ado_vs_baselines": [v]})
    )
    assert "## Out-of-distribution held-out sets" in lines
    assert "| ado vs natural | ood `c_headers` | +0.0133 |" in lines
    assert "1 of 3 |" in lines
    assert np.isfinite(ood["delta"])


def test_cpu_full_trains_three_seeds_by_default() -> None:
    from ado.compare import PRESETS

    assert PRESETS["cpu-full"].seeds == [0, 1, 2]
    assert PRESETS["cpu-full"].scaled(100).seeds == [0, 1, 2]
    assert PRESETS["cpu-small"].seeds == [0]


def test_compare_help_names_every_preset_and_an_unknown_one_is_refused(tmp_path: Path) -> None:
    # the parser is built without importing the harness (and so torch): its help lists them
    from ado.cli import build_parser, main
    from ado.compare import PRESETS

    text = build_parser()._subparsers._group_actions[0].choices["compare"].format_help()  # type: ignore[union-attr]
    flat = "".join(text.split())  # argparse wraps lines at hyphens too
    assert all(name in flat for name in PRESETS)
    assert (
        main(
            [
                "compare",
                "--corpus",
                str(tmp_path),
                "--preset",
                "cpu-huge",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
