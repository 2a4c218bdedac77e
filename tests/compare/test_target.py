"""``ado compare --target-manifest``: a policy with a held-out target set (``ado-target-set``)
trains in a comparison, its target is evaluated on schedule, and the out-of-distribution sets are
refused as targets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

pytest.importorskip("torch")
pytest.importorskip("matplotlib")

from ado.cli import main
from ado.compare import PRESETS, CompareConfig, run_compare
from ado.compare.presets import Preset
from ado.data import Manifest
from ado.errors import ConfigError
from ado.runlog import read_records

REPO = Path(__file__).resolve().parents[2]
NATURAL = REPO / "policies" / "natural.yaml"


def _preset() -> Preset:
    return (
        PRESETS["cpu-small"]
        .scaled(6)
        .with_train(n_embd=16, n_head=2, n_layer=1, seq_len=16, batch_size=4, eval_batches=1)
    )


def _target_policy(folder: Path) -> Path:
    """The shipped ``ado-target-set`` preset, evaluated every 2 steps on one batch per domain of
    the 4-domain target (4 domains x 4 rows x 16 tokens)."""
    spec = yaml.safe_load((REPO / "policies" / "ado-target-set.yaml").read_text())
    spec["target_set"] = {**spec["target_set"], "every": 2, "tokens": 256, "min_blocks": 1}
    path = folder / "ado-target-set.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _write_manifest(path: Path, shards: dict[str, list[Path]]) -> Path:
    spec = {"domains": {d: {"shards": [str(s) for s in ss]} for d, ss in shards.items()}}
    path.write_text(yaml.safe_dump(spec))
    return path


def _target_split(corpus: Path, folder: Path) -> Path:
    """A held-out split of the training domains that is not the measured one: the corpus's
    validation shards copied elsewhere (another manifest, the same domains)."""
    out: dict[str, list[Path]] = {}
    for domain, shards in Manifest.load(corpus / "val.yaml").resolve().items():
        out[domain] = []
        for shard in shards:
            dest = folder / "target" / domain / shard.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shard, dest)
            out[domain].append(dest)
    return _write_manifest(folder / "target.yaml", out)


def _cfg(corpus: Path, out: Path, target: Path | None, policies: list[Path]) -> CompareConfig:
    return CompareConfig(
        corpus=corpus,
        policies=policies,
        preset=_preset(),
        out=out,
        progress=False,
        target_manifest=target,
    )


def test_compare_trains_a_target_set_policy_and_evaluates_its_target(
    tiny_corpus: Path, tmp_path: Path
) -> None:
    target = _target_split(tiny_corpus, tmp_path)
    policy = _target_policy(tmp_path)
    out = tmp_path / "run"
    report = run_compare(_cfg(tiny_corpus, out, target, [NATURAL, policy]))
    # the arm is in the results table and paired against natural
    assert [s["policy"] for s in report["summary"]] == ["natural", "ado-target-set"]
    assert "| ado-target-set |" in (out / "report.md").read_text()
    (vs,) = [v for v in report["ado_vs_baselines"] if v["baseline"] == "natural"]
    assert vs["ado"] == "ado-target-set"
    # the loop evaluated the target after steps 2, 4 and 6, on one batch per target domain
    folder = out / "runs" / "ado-target-set" / "seed0"
    records = read_records(folder / "train.jsonl")
    evals = [r for r in records if r.get("event") == "target"]
    assert [r["step"] for r in evals] == [2, 4, 6]
    assert all(r["tokens"] == 256 and 0 < r["loss"] < 20 for r in evals)
    result = json.loads((folder / "result.json").read_text())
    assert result["target_manifest"] == str(target.resolve())
    assert result["target_evals"] == 3
    assert result["target_tokens"] == 3 * 256
    assert result["target_token_fraction"] == pytest.approx(3 * 256 / result["tokens"])
    # the policy received those losses: its metrics count the evaluations it was handed
    metrics = [r for r in records if r.get("event") == "train" and "target_evals" in r]
    assert metrics
    assert metrics[-1]["target_evals"] == sum(r["step"] <= metrics[-1]["step"] for r in evals)
    # natural takes no target: trained without one, its folder's identity has none
    nat = json.loads((out / "runs" / "natural" / "seed0" / "run.json").read_text())
    assert "target_manifest" not in nat
    assert "target_evals" not in json.loads(
        (out / "runs" / "natural" / "seed0" / "result.json").read_text()
    )
    assert json.loads((out / "compare.json").read_text())["target_manifest"] == str(target)

    # the same runs under another target set are other runs: refused, not silently reused
    other = _target_split(tiny_corpus, tmp_path / "other")
    with pytest.raises(ConfigError, match="another policy configuration"):
        run_compare(_cfg(tiny_corpus, out, other, [NATURAL, policy]))


def test_the_cli_takes_the_target_manifest_and_refuses_an_ood_set(
    tiny_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = _target_split(tiny_corpus, tmp_path)
    policy = _target_policy(tmp_path)
    common = ["--preset", "cpu-small", "--steps", "4", "--no-progress", "--out"]

    def compare(policies: list[Path], out: Path, manifest: Path) -> int:
        args = ["compare", "--corpus", str(tiny_corpus), "--policies", *map(str, policies)]
        return main([*args, *common, str(out), "--target-manifest", str(manifest)])

    # an out-of-distribution set as the target: refused before anything is written
    assert compare([policy], tmp_path / "a", tiny_corpus / "ood.yaml") == 2
    assert "the out-of-distribution sets only measure" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    # a target set for a comparison of policies that take none
    assert compare([NATURAL], tmp_path / "b", target) == 2
    assert "no policy of the comparison takes" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_targets_that_cannot_be_served_are_refused_before_anything_is_written(
    tiny_corpus: Path, tmp_path: Path
) -> None:
    policy = _target_policy(tmp_path)
    ood = tiny_corpus / "ood.yaml"

    def refused(target: Path | None, match: str, policies: list[Path] | None = None) -> None:
        out = tmp_path / "out"
        with pytest.raises(ConfigError, match=match):
            run_compare(_cfg(tiny_corpus, out, target, policies or [NATURAL, policy]))
        assert not out.exists()

    refused(None, "ado-target-set: the policy evaluates a held-out target set")
    refused(_target_split(tiny_corpus, tmp_path), "no policy of the comparison", [NATURAL])
    refused(tmp_path / "missing.yaml", "no such manifest file")
    refused(ood, "is the corpus's ood.yaml: the out-of-distribution sets only measure")
    # another manifest naming the same OOD shards
    shards = Manifest.load(ood).resolve()
    same = _write_manifest(tmp_path / "same.yaml", shards)
    refused(same, "a shard of the out-of-distribution set")
    # a copy of an OOD shard, under another name, is still the OOD set
    name = next(iter(shards))
    copy = tmp_path / "copied" / "mine.tar"
    copy.parent.mkdir()
    shutil.copyfile(shards[name][0], copy)
    refused(
        _write_manifest(tmp_path / "copied.yaml", {"mine": [copy]}),
        rf"mine\.tar, a shard of the out-of-distribution set '{name}'",
    )
