"""``ado compare`` smoke run: two policies, a few steps, report schema, files, resume."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")

from ado.cli import main
from ado.compare import PRESETS, REPORT_VERSION, CompareConfig, run_compare
from ado.compare.plots import heldout_panels
from ado.compare.run import report_finished
from ado.errors import ConfigError
from ado.runlog import read_records

REPO = Path(__file__).resolve().parents[2]
POLICIES = [REPO / "policies" / "natural.yaml", REPO / "policies" / "ado.yaml"]


def _cfg(corpus: Path, out: Path, **kw: object) -> CompareConfig:
    preset = (
        PRESETS["cpu-small"]
        .scaled(6)
        .with_train(n_embd=16, n_head=2, n_layer=1, seq_len=16, batch_size=4, eval_batches=1)
    )
    return CompareConfig(
        corpus=corpus, policies=POLICIES, preset=preset, out=out, progress=False, **kw
    )  # type: ignore[arg-type]


def _check_schema(report: dict[str, object], domains: list[str]) -> None:
    assert report["version"] == REPORT_VERSION
    assert report["domains"] == domains
    runs = report["runs"]
    assert isinstance(runs, list)
    assert {r["policy"] for r in runs} == {"natural", "ado"}
    for r in runs:
        assert set(r["heldout_loss"]) == set(domains)
        assert set(r["tokens_seen"]) == set(domains)
        assert sum(r["tokens_seen"].values()) == r["tokens"]
        for key in ("uniform_avg", "natural_avg", "wall_seconds", "policy_seconds", "seed"):
            assert isinstance(r[key], float | int), key
        assert r["uniform_avg"] == pytest.approx(sum(r["heldout_loss"].values()) / len(domains))
    summary = report["summary"]
    assert isinstance(summary, list)
    assert [s["policy"] for s in summary] == ["natural", "ado"]
    (vs,) = report["ado_vs_baselines"]  # type: ignore[misc]
    assert vs["baseline"] == "natural"
    assert vs["ado_lower"] == (vs["delta"] < 0)
    by_run = {(r["policy"], r["seed"]): r["uniform_avg"] for r in runs}
    seeds = sorted({r["seed"] for r in runs})
    assert vs["paired_deltas"] == {
        str(k): pytest.approx(by_run[("ado", k)] - by_run[("natural", k)]) for k in seeds
    }
    assert vs["lower_on_seeds"] == sum(d < 0 for d in vs["paired_deltas"].values())
    assert set(report["files"]) == {"markdown", "metrics", "plots"}  # type: ignore[arg-type]


def test_smoke_compare_and_resume(tiny_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    report = run_compare(_cfg(tiny_corpus, out))
    domains = ["code_python", "docs_prose", "structured", "noise"]
    _check_schema(report, domains)
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["summary"] == report["summary"]
    for rel in ("report.md", "metrics.jsonl", *report["files"]["plots"]):
        assert (out / rel).stat().st_size > 0, rel
    assert {Path(p).name for p in report["files"]["plots"]} == {
        "weights.png",
        "heldout.png",
        "ado_fits.png",
    }
    md = (out / "report.md").read_text()
    assert "| natural |" in md
    assert "uniform avg" in md
    # the corpus' out-of-distribution sets are scored per run and reported beside the averages
    sets = list(json.loads((tiny_corpus / "corpus.json").read_text())["ood"])
    assert report["ood_sets"] == sets
    for r in report["runs"]:
        assert set(r["ood_loss"]) == set(sets)
        assert all(0 < v < 20 for v in r["ood_loss"].values())
    assert set(report["ado_vs_baselines"][0]["ood"]) == set(sets)
    assert "## Out-of-distribution held-out sets" in md
    # the held-out figure has a panel per domain, the average and each set, every one with a
    # value in every run's final eval record (what the panel draws)
    panels = heldout_panels(domains, sets)
    assert panels[-len(sets) :] == [f"ood/{s}" for s in sets]
    for r in report["runs"]:
        log = read_records(out / "runs" / r["policy"] / f"seed{r['seed']}" / "train.jsonl")
        last = [x for x in log if x.get("event") == "eval"][-1]
        assert all(math.isfinite(last[f"loss/{k}"]) for k in panels)
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert {r["policy"] for r in records} == {"natural", "ado"}
    assert any(r.get("event") == "eval" for r in records)

    # a killed run: ADO's result and newest checkpoint are gone; it resumes from the older one
    folder = out / "runs" / "ado" / "seed0"
    first = json.loads((folder / "result.json").read_text())
    (folder / "result.json").unlink()
    ckpts = sorted((folder / "ckpt" / "rank_0").glob("step_*.pt"))
    assert len(ckpts) >= 2
    for rank_dir in (folder / "ckpt").iterdir():
        (rank_dir / ckpts[-1].name).unlink()
    nat_mtime = os.stat(out / "runs" / "natural" / "seed0" / "result.json").st_mtime_ns
    again = run_compare(_cfg(tiny_corpus, out))
    second = json.loads((folder / "result.json").read_text())
    assert second["resumed"] is True
    assert second["tokens_seen"] == first["tokens_seen"]
    for d in domains:
        assert second["heldout_loss"][d] == pytest.approx(first["heldout_loss"][d], rel=1e-5)
    # the finished natural run was skipped, not retrained
    assert os.stat(out / "runs" / "natural" / "seed0" / "result.json").st_mtime_ns == nat_mtime
    _check_schema(again, domains)

    # adding a seed to the same comparison trains only the new runs
    ado_mtime = os.stat(folder / "result.json").st_mtime_ns
    wider = run_compare(_cfg(tiny_corpus, out, seeds=[0, 1]))
    assert sorted((r["policy"], r["seed"]) for r in wider["runs"]) == [
        ("ado", 0),
        ("ado", 1),
        ("natural", 0),
        ("natural", 1),
    ]
    assert os.stat(out / "runs" / "natural" / "seed0" / "result.json").st_mtime_ns == nat_mtime
    assert os.stat(folder / "result.json").st_mtime_ns == ado_mtime
    _check_schema(wider, domains)
    assert len(wider["ado_vs_baselines"][0]["paired_deltas"]) == 2
    assert json.loads((out / "compare.json").read_text())["seeds"] == [0, 1]
    # the same seeds under another preset are another comparison
    other = _cfg(tiny_corpus, out)
    other.preset = other.preset.with_train(lr=1e-3)
    with pytest.raises(ConfigError, match="another comparison"):
        run_compare(other)


def test_refuses_another_comparison(
    tiny_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "mine.txt").write_text("x")
    code = main(
        [
            "compare",
            "--corpus",
            str(tiny_corpus),
            "--policies",
            "natural",
            "ado",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "mine.txt").read_text() == "x"


def test_a_device_this_machine_lacks_is_refused_and_nothing_is_written(
    tiny_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    """``--device cuda`` without CUDA: "CUDA is not available", no ``compare.json`` (it made the
    next run, on the CPU, say "holds another comparison")."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "run"
    args = ["compare", "--corpus", str(tiny_corpus), "--policies", "natural", "--out", str(out),
            "--no-progress", "--steps", "2"]  # fmt: skip
    assert main([*args, "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
    assert not out.exists()


def test_a_refused_out_names_the_fields_that_differ(tiny_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "compare.json").write_text(json.dumps(_cfg(tiny_corpus, out).describe()))
    other = _cfg(tiny_corpus, out)
    other.preset = other.preset.with_train(seq_len=32)
    with pytest.raises(ConfigError, match=r"another comparison \(preset\.train\.seq_len: 16 there, "
                       r"32 here\); pass --force"):  # fmt: skip
        run_compare(other)


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("policy", ["ado.yaml", "ado-reference.yaml"])
def test_presets_schedule_a_fit_on_enough_points(name: str, policy: str) -> None:
    # every preset's ADO schedule is a valid ADO configuration (also scaled to a quarter of its
    # length) whose first refit, well inside the run, already has min_points points per domain
    from ado.policy.base import load_policy_config

    preset = PRESETS[name]
    for p in (preset, preset.scaled(preset.steps // 4)):
        assert load_policy_config(REPO / "policies" / policy, p.ado_overrides).kind == "ado"
        assert p.ado_overrides["start_step"] < p.steps, name
    cfg = load_policy_config(REPO / "policies" / policy, preset.ado_overrides)
    points = (cfg.start_step - cfg.ignore_steps) // cfg.subsample  # type: ignore[attr-defined]
    assert points >= cfg.min_points, (name, points)  # type: ignore[attr-defined]


def test_parallel_jobs_train_the_same_runs(tiny_corpus: Path, tmp_path: Path) -> None:
    # two runs at once in worker processes give the results of one at a time, in the same order,
    # with every ADO variant compared against every baseline (paired, with an interval)
    seq = run_compare(_cfg(tiny_corpus, tmp_path / "seq", seeds=[0, 1]))
    par = run_compare(_cfg(tiny_corpus, tmp_path / "par", seeds=[0, 1], jobs=2))
    assert [(r["policy"], r["seed"]) for r in par["runs"]] == [
        (r["policy"], r["seed"]) for r in seq["runs"]
    ]
    for a, b in zip(seq["runs"], par["runs"], strict=True):
        assert a["heldout_loss"] == b["heldout_loss"]
        assert a["final_weights"] == b["final_weights"]
    (vs,) = par["ado_vs_baselines"]
    lo, hi = vs["paired_ci95"]
    mean = sum(vs["paired_deltas"].values()) / 2
    assert lo <= mean <= hi
    assert set(vs["paired_natural_avg_deltas"]) == {"0", "1"}


def test_compare_refuses_bad_jobs_and_threads(tiny_corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="jobs"):
        _cfg(tiny_corpus, tmp_path, jobs=0)
    with pytest.raises(ConfigError, match="threads"):
        _cfg(tiny_corpus, tmp_path, threads=0)


def test_replay_reads_a_training_log_and_reproduces_its_weights(
    tiny_corpus: Path, tmp_path: Path
) -> None:
    # a compare run's train.jsonl is a run log: replayed through the same policy (with the
    # overrides compare served) it gives, after each step, the weights the next step drew from
    import io

    from ado.runlog import read_run_log
    from ado.sim import replay

    out = tmp_path / "run"
    run_compare(_cfg(tiny_corpus, out))
    folder = out / "runs" / "ado" / "seed0"
    result = json.loads((folder / "result.json").read_text())
    log = read_run_log(folder / "train.jsonl")
    steps = log.events("step")
    assert [r["step"] for r in steps] == list(range(result["steps"]))
    assert result["tokens_seen"] == {
        d: int(sum(r["counts"][k] for r in steps)) * 16 for k, d in enumerate(log.domains)
    }
    buf = io.StringIO()
    replay(folder / "train.jsonl", "ado", buf, overrides=result["overrides"])
    replayed = [json.loads(x) for x in buf.getvalue().splitlines()][1:]
    assert [r["weights"] for r in replayed[:-1]] == [r["weights"] for r in steps[1:]]
    code = main(["replay", str(folder / "train.jsonl"), "--policy", "uniform"])
    assert code == 0


def test_runs_are_keyed_by_their_policy(tiny_corpus: Path, tmp_path: Path) -> None:
    # adding a policy trains only its runs; a folder of another configuration under the same
    # label is refused; a run folder copied from another comparison is reused under its new label
    import shutil

    out = tmp_path / "run"
    run_compare(_cfg(tiny_corpus, out))
    nat = out / "runs" / "natural" / "seed0" / "result.json"
    mtime = os.stat(nat).st_mtime_ns
    cfg = _cfg(tiny_corpus, out)
    cfg.policies = [*POLICIES, REPO / "policies" / "uniform.yaml"]
    wider = run_compare(cfg)
    assert [s["policy"] for s in wider["summary"]] == ["natural", "ado", "uniform"]
    assert os.stat(nat).st_mtime_ns == mtime

    changed = tmp_path / "p" / "ado.yaml"
    changed.parent.mkdir()
    changed.write_text((REPO / "policies" / "ado.yaml").read_text() + "mix_rate: 0.2\n")
    cfg = _cfg(tiny_corpus, out)
    cfg.policies = [POLICIES[0], changed]
    with pytest.raises(ConfigError, match="another policy configuration"):
        run_compare(cfg)

    other = tmp_path / "other"
    cfg = _cfg(tiny_corpus, other)
    cfg.policies = [REPO / "policies" / "uniform.yaml"]
    run_compare(cfg)
    renamed = tmp_path / "p" / "static-natural.yaml"
    renamed.write_text((REPO / "policies" / "natural.yaml").read_text())
    shutil.copytree(out / "runs" / "natural" / "seed0", other / "runs" / "static-natural" / "seed0")
    copied = other / "runs" / "static-natural" / "seed0" / "result.json"
    copied_mtime = os.stat(copied).st_mtime_ns
    cfg.policies = [REPO / "policies" / "uniform.yaml", renamed]
    again = run_compare(cfg)
    assert os.stat(copied).st_mtime_ns == copied_mtime  # reused, not trained again
    assert [r["policy"] for r in again["runs"]] == ["uniform", "static-natural"]
    assert again["runs"][1]["heldout_loss"] == json.loads(nat.read_text())["heldout_loss"]


def test_compare_refuses_repeated_seeds(tiny_corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"seeds must be distinct.*\[0\]"):
        _cfg(tiny_corpus, tmp_path, seeds=[0, 0])  # "2 seeds ± 0" would be one run twice
    with pytest.raises(ConfigError, match=r"repeated: \[1\]"):
        _cfg(tiny_corpus, tmp_path, seeds=[0, 1], extra_seeds=[1], extra_for=["ado"])


def test_report_only_refuses_another_corpus(tiny_corpus: Path, tmp_path: Path) -> None:
    from ado.compare.run import _prepare_out, report_finished

    made = _cfg(tiny_corpus, tmp_path / "out")
    _prepare_out(made)  # compare.json: the runs of this folder are made on tiny_corpus
    other = tmp_path / "C3"
    shutil.copytree(tiny_corpus, other)
    with pytest.raises(ConfigError, match="its runs were made with corpus"):
        report_finished(_cfg(other, tmp_path / "out"))
    with pytest.raises(ConfigError, match=r"no compare\.json"):
        report_finished(_cfg(tiny_corpus, tmp_path / "empty"))


def test_a_comparison_recorded_with_its_preset_seeds_is_still_the_same(
    tiny_corpus: Path, tmp_path: Path
) -> None:
    """compare.json files written before a preset's default seeds left the identity hold them
    in the preset; their runs still resume and report, and another preset is still refused."""
    from ado.compare.run import _prepare_out

    cfg = _cfg(tiny_corpus, tmp_path / "out")
    _prepare_out(cfg)
    meta = tmp_path / "out" / "compare.json"
    old = json.loads(meta.read_text())
    old["preset"]["seeds"] = [0]  # the former record
    meta.write_text(json.dumps(old))
    (tmp_path / "out" / "runs").mkdir()
    _prepare_out(cfg)  # the same comparison: resumed, nothing deleted
    assert (tmp_path / "out" / "runs").is_dir()
    old["preset"]["train"]["lr"] = 1.0
    meta.write_text(json.dumps(old))
    with pytest.raises(ConfigError, match="another comparison"):
        _prepare_out(cfg)
    with pytest.raises(ConfigError, match="its runs were made with preset"):
        report_finished(cfg)


def test_a_preset_is_a_set_of_training_config_overrides() -> None:
    from ado.compare.presets import Preset
    from ado.torch.train import TrainConfig

    preset = PRESETS["cpu-full"]
    # what it does not name keeps TrainConfig's one default
    assert "grad_accum" not in preset.train
    assert preset.config().grad_accum == TrainConfig(manifest="").grad_accum
    run = preset.train_config(manifest="m.yaml", seed=3)
    assert run.n_layer == preset.train["n_layer"]
    assert run.seed == 3
    assert preset.tokens_per_run() == 1000 * 16 * 128
    # scaling changes the steps and the cadences, nothing else
    half = preset.scaled(500)
    assert half.train["steps"] == 500
    assert half.train["eval_every"] == 100
    assert half.train["n_embd"] == preset.train["n_embd"]
    assert half.ado_overrides["update_interval"] == 25
    # unknown fields, invalid values and per-run fields are refused with the field named
    with pytest.raises(ValueError, match="n_layers"):
        Preset(name="x", train={"n_layers": 2})
    with pytest.raises(ValueError, match="steps"):
        Preset(name="x", train={"steps": 0})
    with pytest.raises(ValueError, match="seed"):
        Preset(name="x", train={"seed": 1})
    with pytest.raises(ConfigError, match="dtype"):
        preset.with_train(dtype="fp8")
    assert preset.with_train(device="cuda").config().device == "cuda"
    # the report records the overrides and the effective configuration
    described = preset.describe()
    assert described["train"] == preset.train
    assert described["effective"]["grad_accum"] == 1
    assert "seed" not in described["effective"]


def test_ood_sets_added_after_training_score_the_final_checkpoints(
    tiny_corpus: Path, tmp_path: Path
) -> None:
    # runs that finished before their corpus had ood.yaml (their result.json without ood_loss)
    # are scored from their final checkpoints on the next compare, without retraining, and get
    # the numbers the training loop's own evaluation gave
    out = tmp_path / "run"
    first = run_compare(_cfg(tiny_corpus, out))
    trained = {r["policy"]: r["ood_loss"] for r in first["runs"]}
    assert all(trained.values())
    mtimes = {}
    for f in (out / "runs").glob("*/seed0/result.json"):
        r = json.loads(f.read_text())
        del r["ood_loss"]
        f.write_text(json.dumps(r))
        mtimes[f.parent] = os.stat(f.parent / "train.jsonl").st_mtime_ns
    again = run_compare(_cfg(tiny_corpus, out))
    for r in again["runs"]:
        assert r["ood_scored_after_training"] is True
        assert r["ood_loss"] == pytest.approx(trained[r["policy"]], rel=1e-6, abs=0)
    # nothing was trained again
    assert all(os.stat(d / "train.jsonl").st_mtime_ns == t for d, t in mtimes.items())
    assert again["ood_sets"] == first["ood_sets"]


def test_a_presets_default_seeds_are_not_part_of_the_comparison_identity(tmp_path: Path) -> None:
    preset = PRESETS["cpu-full"]
    more = preset.model_copy(update={"seeds": [0, 1, 2, 3]})
    a = CompareConfig(corpus=tmp_path, policies=[], preset=preset, out=tmp_path / "a")
    b = CompareConfig(corpus=tmp_path, policies=[], preset=more, out=tmp_path / "a")
    assert a.identity() == b.identity()
    c = CompareConfig(
        corpus=tmp_path, policies=[], preset=preset.with_train(lr=1e-3), out=tmp_path / "a"
    )
    assert a.identity() != c.identity()
