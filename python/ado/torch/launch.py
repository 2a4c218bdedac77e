"""One training run under ``torchrun`` (``torch.distributed.run``): the entry point every rank
runs, and the command line that starts it.

``python -m ado.torch.launch --config run.json --result result.json`` trains the
:class:`~ado.torch.TrainConfig` in ``run.json`` on every rank (the process group comes up in
:func:`ado.torch.train`: gloo on CPU, NCCL on CUDA); rank 0 then writes what the run log does not
hold (final weights, steps, tokens) to ``result.json``. :func:`torchrun_command` builds the
``torchrun`` line that starts it on one node of an ``nnodes``-node job.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Ranks", "main", "torchrun_command"]


@dataclass(frozen=True)
class Ranks:
    """How one run is laid out: ``nnodes`` nodes of ``nproc_per_node`` ranks each.

    Attributes:
        nproc_per_node: ranks (processes, one device each) on every node.
        nnodes: nodes.
    """

    nproc_per_node: int = 1
    nnodes: int = 1

    @property
    def world(self) -> int:
        """Ranks in all."""
        return self.nproc_per_node * self.nnodes

    @property
    def distributed(self) -> bool:
        """Whether the run needs torchrun (more than one rank)."""
        return self.world > 1


def torchrun_command(
    config: Path,
    result: Path,
    ranks: Ranks,
    *,
    node_rank: int = 0,
    master_addr: str | None = None,
    master_port: int | None = None,
) -> list[str]:
    """The ``torchrun`` command line of one node of a run.

    One node: ``--standalone`` (a rendezvous on a free local port). Several: a static rendezvous
    on ``master_addr:master_port`` (the first node), with this node's ``node_rank``.
    """
    cmd = [sys.executable, "-m", "torch.distributed.run"]
    if ranks.nnodes == 1:
        cmd += ["--standalone", "--nnodes=1"]
    else:
        if master_addr is None or master_port is None:
            raise ValueError("a multi-node run needs master_addr and master_port")
        cmd += [
            f"--nnodes={ranks.nnodes}",
            f"--node-rank={node_rank}",
            f"--master-addr={master_addr}",
            f"--master-port={master_port}",
        ]
    cmd += [f"--nproc-per-node={ranks.nproc_per_node}", "-m", "ado.torch.launch"]
    return [*cmd, "--config", str(config), "--result", str(result)]


def main(argv: Sequence[str] | None = None) -> int:
    """Train the run in ``--config`` (this rank's part); rank 0 writes ``--result``."""
    from ado._io import atomic_write_text
    from ado.torch.train import TrainConfig, destroy_process_group, train

    p = argparse.ArgumentParser(prog="python -m ado.torch.launch", description=__doc__)
    p.add_argument("--config", type=Path, required=True, help="a TrainConfig as JSON")
    p.add_argument("--result", type=Path, required=True, help="rank 0 writes the summary here")
    args = p.parse_args(argv)
    cfg = TrainConfig(**json.loads(args.config.read_text()))
    res = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        summary = {
            "steps": res.steps,
            "tokens": res.tokens,
            "weights": res.weights,
            "resumed_from": res.resumed_from,
            "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        }
        atomic_write_text(args.result, json.dumps(summary, indent=2) + "\n")
    destroy_process_group()
    return 0


if __name__ == "__main__":  # pragma: no cover - the torchrun entry point
    sys.exit(main())
