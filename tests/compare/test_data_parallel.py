"""``ado compare --nproc-per-node 2``: each run trains under torchrun with 2 gloo ranks sharing
the preset's global batch, and reproduces the 1-rank run where the maths says it must.

On the replica corpus (every row of a domain is the same, see ``replica_corpus.py``) the 2-rank
run draws, slot by slot, the rows of the 1-rank run: the per-step domain counts are equal
exactly, and the per-step losses, held-out losses and final weights agree to float rounding
(DDP averages two half-batch gradients where one process averages the whole batch)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")

from ado.cli import main
from ado.compare import PRESETS
from ado.runlog import read_run_log
from replica_corpus import replica_corpus

#: relative tolerance of "equal to float rounding" (fp32 sums in another order, 24 Adam steps)
RTOL = 1e-4
STEPS = "24"


def _compare(corpus: Path, out: Path, *extra: str) -> dict[str, Any]:
    args = ["compare", "--corpus", str(corpus), "--policies", "natural", "ado"]
    args += ["--steps", STEPS, "--out", str(out), "--no-progress", *extra]
    assert main(args) == 0
    report: dict[str, Any] = json.loads((out / "report.json").read_text())
    return report


def _steps(out: Path, policy: str) -> list[dict[str, Any]]:
    return read_run_log(out / "runs" / policy / "seed0" / "train.jsonl").events("step")


def test_two_ranks_reproduce_one_rank_with_the_same_global_batch(tmp_path: Path) -> None:
    seq_len = PRESETS["cpu-small"].config().seq_len
    corpus = replica_corpus(tmp_path / "corpus", seq_len)
    one = _compare(corpus, tmp_path / "one")
    two = _compare(corpus, tmp_path / "two", "--nproc-per-node", "2")

    for r in two["runs"]:
        assert r["launch"] == {
            "launcher": "local",
            "nnodes": 1,
            "nproc_per_node": 2,
            "world_size": 2,
            "torchrun": True,
            "backend": "gloo",
        }
    assert {r["launch"]["world_size"] for r in one["runs"]} == {1}
    assert "2 rank(s) (1 node(s) x 2, gloo under torchrun)" in (
        tmp_path / "two" / "report.md"
    ).read_text()
    config = json.loads((tmp_path / "two/runs/natural/seed0/train_config.json").read_text())
    assert config["batch_size"] * 2 == PRESETS["cpu-small"].config().batch_size  # global batch

    for a, b in zip(one["runs"], two["runs"], strict=True):
        assert (a["policy"], a["seed"]) == (b["policy"], b["seed"])
        assert a["tokens"] == b["tokens"]
        assert a["tokens_seen"] == b["tokens_seen"]  # the same rows, so the same domains
        for key in ("heldout_loss", "final_weights"):
            assert np.allclose(list(a[key].values()), list(b[key].values()), rtol=RTOL), key
        sa, sb = _steps(tmp_path / "one", a["policy"]), _steps(tmp_path / "two", b["policy"])
        assert len(sa) == len(sb) == int(STEPS)
        for x, y in zip(sa, sb, strict=True):
            assert x["counts"] == y["counts"]  # every step's global batch has the same domains
            assert np.allclose(x["loss_sums"], y["loss_sums"], rtol=RTOL)
            assert np.allclose(x["weights"], y["weights"], rtol=RTOL)
    ado = _steps(tmp_path / "two", "ado")
    assert len({tuple(r["weights"]) for r in ado}) > 1  # ADO really moved the weights


@pytest.mark.parametrize(
    ("ranks", "message"),
    [
        (["--nproc-per-node", "3"], "batch size 16 (the global batch) does not divide by the 3"),
        (["--nnodes", "2"], "several nodes (nnodes > 1) needs launcher 'slurm'"),
    ],
)
def test_bad_rank_layouts_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ranks: list[str], message: str
) -> None:
    corpus = replica_corpus(tmp_path / "corpus", PRESETS["cpu-small"].config().seq_len)
    args = ["compare", "--corpus", str(corpus), "--out", str(tmp_path / "out"), *ranks]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_a_multi_node_run_starts_torchrun_on_each_node_of_its_slurm_job(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("submitit")
    from ado.compare.slurm import node_role
    from ado.torch.launch import Ranks, torchrun_command

    # what Slurm (and submitit) set in the task of the second node of job 1234 (two nodes)
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    monkeypatch.setenv("SLURM_JOB_ID", "1234")
    monkeypatch.setenv("SLURM_NODEID", "1")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "gpu[07-08]")
    node, master, port = node_role()
    assert (node, master, port) == (1, "gpu07", 20000 + 1234)
    cmd = torchrun_command(
        Path("c.json"), Path("r.json"), Ranks(8, 2), node_rank=node, master_addr=master,
        master_port=port,
    )
    assert cmd[1:3] == ["-m", "torch.distributed.run"]
    assert cmd[3:] == [
        "--nnodes=2",
        "--node-rank=1",
        "--master-addr=gpu07",
        "--master-port=21234",
        "--nproc-per-node=8",
        "-m",
        "ado.torch.launch",
        "--config",
        "c.json",
        "--result",
        "r.json",
    ]
    single = torchrun_command(Path("c.json"), Path("r.json"), Ranks(2, 1))
    assert single[3:6] == ["--standalone", "--nnodes=1", "--nproc-per-node=2"]
