"""``ado compare``: train the same model from the same seed under each policy, then report.

Layout of ``--out``::

    compare.json                     what was asked (checked on resume)
    runs/<policy>/seed<k>/ckpt/      per-run checkpoints (a killed compare resumes from them)
    runs/<policy>/seed<k>/train.jsonl   the run log (ado.runlog): per-step statistics, weights and
                                        timings, periodic policy metrics, held-out evaluations
    runs/<policy>/seed<k>/result.json   written when the run finished (finished runs are skipped)
    runs/<policy>/seed<k>/torchrun.log  the ranks' output of a run trained under torchrun
    runs/<policy>/seed<k>/slurm.json    the run's Slurm job ids (--launcher slurm; see slurm.py)
    slurm/<job id>/                      submitit's job scripts and logs
    report.md, report.json, metrics.jsonl, plots/*.png

DoReMi needs reference losses: the ``natural`` run (same model, seed and tokens) is trained first
and its final held-out loss per domain is DoReMi's reference table; without ``natural`` in the list
a ``reference`` natural-mix run is trained for that purpose.

A policy with a held-out target set (ADO's ``target_set``, the ``ado-target-set`` preset) is
served ``target_manifest`` (``--target-manifest``): the training loop evaluates it every
``target_set.every`` steps and hands the loss to the policy. It is refused when it reads any
shard of the corpus's out-of-distribution sets (by path or by content): those only measure.

Data parallel: with ``ranks`` of more than one process (``--nproc-per-node``, ``--nnodes``) each
run trains under ``torchrun`` (gloo on CPU, NCCL on CUDA); the preset's ``batch_size`` stays the
global batch (each rank draws ``batch_size / ranks`` rows of it, :class:`~ado.data.MixtureLoader`'s
rank slice), so the tokens per run do not depend on the number of ranks. ``launcher="slurm"``
sends each run to a Slurm cluster as a job (:mod:`ado.compare.slurm`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from tqdm import tqdm

from ado._io import atomic_write_text
from ado.compare.presets import Preset
from ado.compare.report import train_domains
from ado.errors import ConfigError, InternalError, RunFailedError
from ado.policy import PolicyConfig, load_policy_config, presets
from ado.runlog import read_run_log
from ado.torch.launch import Ranks, torchrun_command

if TYPE_CHECKING:  # submitit is imported only with launcher="slurm"
    from ado.compare.slurm import SlurmOptions

__all__ = ["CompareConfig", "Ranks", "RunSpec", "report_finished", "run_compare"]

logger = logging.getLogger(__name__)

REFERENCE = "reference"


@dataclass(frozen=True)
class RunSpec:
    """One training run: a policy file under a seed.

    Attributes:
        label: the policy's name in the report (the YAML file's stem).
        path: the policy YAML.
        seed: model-init and data seed.
    """

    label: str
    path: Path
    seed: int

    @property
    def key(self) -> str:
        """``<label>/seed<k>``."""
        return f"{self.label}/seed{self.seed}"


@dataclass
class CompareConfig:
    """A comparison.

    Attributes:
        corpus: a built corpus folder (``manifest.yaml``, ``val.yaml``, ``corpus.json``).
        policies: policy YAML files (labels are their stems and must be distinct).
        preset: run size.
        out: output folder.
        seeds: seeds of every policy.
        extra_seeds: more seeds, only for ``extra_for``.
        extra_for: policy labels that get ``extra_seeds``; ``best`` means the baseline with the
            lowest uniform-average held-out loss after the first seeds.
        force: wipe a non-empty ``out`` that holds another comparison.
        progress: progress bars.
        command: the command line, recorded in the report.
        jobs: runs trained at once, each in its own process.
        threads: torch CPU threads per run; None: the preset's, or else the usable cores
            divided by ``jobs`` (never more threads than cores in all). Split among the run's
            ranks on a node.
        ranks: processes per run (``nproc_per_node`` x ``nnodes``); more than one trains the run
            under torchrun. The preset's ``batch_size`` is the global batch: it must divide by
            the number of ranks.
        launcher: ``local`` (this machine, ``jobs`` runs at once) or ``slurm`` (one job per run).
        slurm: the Slurm submission options (``launcher="slurm"``).
        target_manifest: the held-out target set of every policy that asks for one
            (``"target_set"`` in its harness needs, e.g. the ``ado-target-set`` preset): a
            manifest of the user's target data or of a held-out split of the training domains.
            Never the corpus's out-of-distribution sets (refused). Other policies train without
            it; it is part of the identity of the runs that use it.
    """

    corpus: Path
    policies: list[Path]
    preset: Preset
    out: Path
    seeds: list[int] = field(default_factory=lambda: [0])
    extra_seeds: list[int] = field(default_factory=list)
    extra_for: list[str] = field(default_factory=list)
    force: bool = False
    progress: bool = True
    command: str | None = None
    jobs: int = 1
    threads: int | None = None
    ranks: Ranks = field(default_factory=Ranks)
    launcher: Literal["local", "slurm"] = "local"
    slurm: SlurmOptions | None = None
    target_manifest: Path | None = None

    def __post_init__(self) -> None:
        seeds = [*self.seeds, *self.extra_seeds]
        repeated = sorted({s for s in seeds if seeds.count(s) > 1})
        if repeated:  # a repeated seed is the same run: it would count twice in the spread
            raise ConfigError(
                f"seeds must be distinct (seeds and extra seeds); repeated: {repeated}"
            )
        if not self.seeds:
            raise ConfigError("at least one seed is needed")
        if self.jobs < 1:
            raise ConfigError(f"jobs must be >= 1, got {self.jobs}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1, got {self.threads}")
        if min(self.ranks.nproc_per_node, self.ranks.nnodes) < 1:
            raise ConfigError(f"nproc_per_node and nnodes must be >= 1, got {self.ranks}")
        if self.launcher not in ("local", "slurm"):
            raise ConfigError(f"launcher must be 'local' or 'slurm', got {self.launcher!r}")
        if self.ranks.nnodes > 1 and self.launcher == "local":
            raise ConfigError("a run on several nodes (nnodes > 1) needs launcher 'slurm'")
        batch = self.preset.config().batch_size
        if batch % self.ranks.world:
            raise ConfigError(
                f"the preset's batch size {batch} (the global batch) does not divide by the "
                f"{self.ranks.world} ranks of a run; pick ranks that divide it"
            )

    def run_threads(self) -> int:
        """torch threads of each run (see ``threads``)."""
        if self.threads is not None:
            return self.threads
        if self.preset.threads is not None:
            return self.preset.threads
        return max(1, len(os.sched_getaffinity(0)) // self.jobs)

    def rank_threads(self) -> int:
        """torch threads of each rank: the run's threads split among its ranks on a node."""
        return max(1, self.run_threads() // self.ranks.nproc_per_node)

    def launch(self) -> dict[str, Any]:
        """How each run runs (recorded in every ``result.json`` and the report)."""
        device = str(self.preset.config().device)
        return {
            "launcher": self.launcher,
            "nnodes": self.ranks.nnodes,
            "nproc_per_node": self.ranks.nproc_per_node,
            "world_size": self.ranks.world,
            "torchrun": self.ranks.distributed,
            "backend": ("nccl" if device.startswith("cuda") else "gloo")
            if self.ranks.distributed
            else None,
        }

    def identity(self) -> dict[str, Any]:
        """What makes runs comparable: the corpus and the preset (what a resume must match).

        Seeds and policies are not part of it: each run folder records the policy it trained
        (``run.json``: the policy's configuration fingerprint, with compare's overrides) and is
        reused only by a run of that same policy and seed. So adding seeds or policies to a
        comparison trains only the new runs, and a run folder copied from another comparison of
        the same corpus and preset is reused when its policy matches.
        """
        return {
            "corpus": str(Path(self.corpus).resolve()),
            "preset": self.preset.model_dump(exclude={"seeds"}),
        }

    def describe(self) -> dict[str, Any]:
        """JSON-safe record of the comparison (``compare.json``): its identity and its seeds."""
        return {
            **self.identity(),
            "policies": [str(p) for p in self.policies],
            "seeds": self.seeds,
            "extra_seeds": self.extra_seeds,
            "extra_for": self.extra_for,
            "target_manifest": str(self.target_manifest) if self.target_manifest else None,
        }


def _stored_identity(meta: Any) -> dict[str, Any] | None:
    """The identity part of a ``compare.json`` (see :meth:`CompareConfig.identity`), or ``None``
    when it is not a comparison's. Comparisons written before a preset's default seeds left the
    identity recorded them in the preset; they are dropped here, so those runs still resume."""
    if not isinstance(meta, dict):
        return None
    preset = meta.get("preset")
    if isinstance(preset, dict):
        preset = {k: v for k, v in preset.items() if k != "seeds"}
    return {"corpus": meta.get("corpus"), "preset": preset}


def _differences(have: Any, want: Any, where: str = "") -> list[str]:
    """The fields (dotted paths) whose values differ, ``path: stored -> this run``."""
    if isinstance(have, dict) and isinstance(want, dict):
        return [
            line
            for key in sorted(set(have) | set(want), key=str)
            for line in _differences(have.get(key), want.get(key), f"{where}{key}.")
        ]
    return [] if have == want else [f"{where.rstrip('.')}: {have!r} there, {want!r} here"]


def check_device(device: str) -> None:
    """Refuse a device this machine does not have, before anything is written.

    Raises:
        ConfigError: not a device name, or CUDA (MPS) asked for where there is none.
    """
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as err:
        raise ConfigError(f"device {device!r} is not a torch device: {err}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {device!r}: CUDA is not available on this machine (torch "
                f"{torch.__version__}); use --device cpu"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {device!r}: MPS is not available on this machine")


def _prepare_out(cfg: CompareConfig) -> None:
    out = cfg.out
    meta = out / "compare.json"
    want = cfg.identity()
    if out.exists() and any(out.iterdir()):
        have = _stored_identity(json.loads(meta.read_text())) if meta.exists() else None
        if have != want:
            if not cfg.force:
                what = "other files"
                if have:
                    what = f"another comparison ({'; '.join(_differences(have, want))})"
                raise ConfigError(
                    f"{out} holds {what}; pass --force to replace it, or use another --out"
                )
            if have is None:
                raise ConfigError(f"{out} holds files that are not a comparison; not deleting")
            for name in ("runs", "plots", "report.md", "report.json", "metrics.jsonl"):
                p = out / name
                if p.is_dir():
                    shutil.rmtree(p)
                elif p.exists():
                    p.unlink()
        else:
            logger.info("resuming the comparison in %s", out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(meta, json.dumps(cfg.describe(), indent=2) + "\n")


def corpus_info(corpus: Path) -> dict[str, Any]:
    """``corpus.json`` of a built corpus.

    Raises:
        ConfigError: not a built corpus.
    """
    if not Path(corpus).is_dir():
        raise ConfigError(
            f"{corpus}: no such corpus folder (build one with `ado corpus build --out "
            f"{corpus}`, or use --corpus builtin)"
        )
    path = Path(corpus) / "corpus.json"
    if not path.exists():
        raise ConfigError(f"{corpus}: no corpus.json (build one with `ado corpus build`)")
    info: dict[str, Any] = json.loads(path.read_text())
    return info


def _configs(cfg: CompareConfig) -> dict[str, PolicyConfig]:
    """Policy label → its validated configuration (each file read once)."""
    return {p.stem: load_policy_config(p) for p in cfg.policies}


def _with_ood(cfg: CompareConfig, folder: Path, result: dict[str, Any]) -> dict[str, Any]:
    """A finished run scored on the corpus's out-of-distribution sets that it was not evaluated
    on during training (a corpus that gained ``ood.yaml`` after the run): its final checkpoint is
    evaluated exactly as the training loop would have (``evaluate_checkpoint``) and
    ``result.json`` updated, so adding held-out sets never needs a retrain."""
    from ado.data import Manifest
    from ado.torch import evaluate_checkpoint

    ood = Path(cfg.corpus) / "ood.yaml"
    have = result.get("ood_loss") or {}
    if not ood.exists() or set(Manifest.load(ood).names) <= set(have):
        return result
    final = folder / "ckpt" / "rank_0" / f"step_{int(result['steps']):08d}.pt"
    if not final.exists():
        logger.warning(
            "%s: no checkpoint of the final step (%s), so its out-of-distribution sets stay "
            "unscored; remove the folder to train it again",
            folder,
            final.name,
        )
        return result
    losses = evaluate_checkpoint(final, ood, prefix="ood/")
    result["ood_loss"] = {k[len("loss/ood/") :]: v for k, v in losses.items()}
    result["ood_scored_after_training"] = True
    atomic_write_text(folder / "result.json", json.dumps(result, indent=2) + "\n")
    return result


def run_folder(cfg: CompareConfig, spec: RunSpec) -> Path:
    """``out/runs/<policy>/seed<k>``."""
    return cfg.out / "runs" / spec.label / f"seed{spec.seed}"


def _run_identity(
    cfg: CompareConfig, spec: RunSpec, overrides: dict[str, Any]
) -> dict[str, Any]:
    """What a run folder must have trained to be resumed or reused: the policy configuration
    (compare's overrides included), the seed, and the number of ranks (each rank reads its own
    slice of every domain, so runs on different numbers of ranks draw different documents)."""
    identity: dict[str, Any] = {
        "policy_fingerprint": load_policy_config(spec.path, overrides).fingerprint(),
        "seed": spec.seed,
    }
    if cfg.ranks.world > 1:  # one-rank folders keep the record they had
        identity["world_size"] = cfg.ranks.world
    target = _target_of(cfg, spec)
    if target is not None:  # folders of policies without a target keep the record they had
        identity["target_manifest"] = target
    return identity


def _target_of(cfg: CompareConfig, spec: RunSpec) -> str | None:
    """The held-out target set served to ``spec`` (its policy asks for one), else None."""
    if cfg.target_manifest is None:
        return None
    if "target_set" not in load_policy_config(spec.path).harness_needs():
        return None
    return str(Path(cfg.target_manifest).resolve())


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def check_target(cfg: CompareConfig, needs: dict[str, frozenset[str]]) -> None:
    """Refuse a held-out target set that cannot be served, before anything is written.

    Raises:
        ConfigError: a policy asks for a target set and there is none; a target set and no
            policy takes one; the target manifest cannot be read; or it reads a shard of the
            corpus's out-of-distribution sets (the same file, or a file of the same content):
            those only measure, never a target.
    """
    from ado.data import Manifest

    wanting = sorted(label for label, need in needs.items() if "target_set" in need)
    path = cfg.target_manifest
    if path is None:
        if wanting:
            raise ConfigError(
                f"{', '.join(wanting)}: the policy evaluates a held-out target set (target_set); "
                "name it with --target-manifest (CompareConfig.target_manifest): a manifest of "
                "the target data or of a held-out split of the training domains"
            )
        return
    if not wanting:
        raise ConfigError(
            f"--target-manifest {path}: no policy of the comparison takes a held-out target set "
            "(one with target_set, e.g. the ado-target-set preset)"
        )
    if not Path(path).is_file():
        raise ConfigError(f"--target-manifest {path}: no such manifest file")
    try:
        target = Manifest.load(path)
    except (OSError, ValueError) as err:
        raise ConfigError(f"--target-manifest {path}: not a readable manifest: {err}") from None
    if Path(path).resolve() == (Path(cfg.corpus) / "val.yaml").resolve():
        logger.warning(
            "the target set %s is the held-out set the comparison measures with: the target's "
            "rows are drawn with another seed, but from the same documents, so the held-out "
            "losses of %s do not measure them independently",
            path,
            ", ".join(wanting),
        )
    ood_path = Path(cfg.corpus) / "ood.yaml"
    if not ood_path.is_file():
        return
    why = "the out-of-distribution sets only measure, never a target"
    if Path(path).resolve() == ood_path.resolve():
        raise ConfigError(f"--target-manifest {path} is the corpus's {ood_path.name}: {why}")
    ood = {
        Path(s).resolve(): name
        for name, shards in Manifest.load(ood_path).sources().items()
        for s in shards
    }
    by_size: dict[int, list[Path]] = {}
    for shard in ood:
        if shard.is_file():
            by_size.setdefault(shard.stat().st_size, []).append(shard)
    for domain, shards in target.sources().items():
        for s in shards:
            shard = Path(s).resolve()
            same = ood.get(shard)
            if same is None and shard.is_file():  # a copy of an OOD shard is the OOD set too
                alike = by_size.get(shard.stat().st_size, [])
                if alike:
                    digest = _sha256(shard)
                    same = next((ood[o] for o in alike if _sha256(o) == digest), None)
            if same is not None:
                raise ConfigError(
                    f"--target-manifest {path}: its domain {domain!r} reads {s}, a shard of the "
                    f"out-of-distribution set {same!r}: {why}"
                )


def train_one(
    cfg: CompareConfig,
    spec: RunSpec,
    overrides: dict[str, Any],
    info: dict[str, Any],
) -> dict[str, Any]:
    """Train (or resume, or skip) one run; returns its ``result.json`` content.

    In a Slurm job of several nodes every node calls this; the first writes the result (the
    others return an empty dict)."""
    folder = run_folder(cfg, spec)
    done = folder / "result.json"
    identity = _run_identity(cfg, spec, overrides)
    _check_run_identity(folder, identity, spec)
    if done.exists():
        result: dict[str, Any] = json.loads(done.read_text())
        result["policy"] = spec.label  # a folder copied from another comparison
        return _with_ood(cfg, folder, result)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "run.json", json.dumps(identity, indent=2) + "\n")
    tok = info["tokenizer"]
    ckpt_dir = folder / "ckpt"
    ckpt = latest_checkpoint_step(ckpt_dir)
    ood = Path(cfg.corpus) / "ood.yaml"
    target = identity.get("target_manifest")
    tcfg = cfg.preset.train_config(
        manifest=str(Path(cfg.corpus) / "manifest.yaml"),
        eval_manifest=str(Path(cfg.corpus) / "val.yaml"),
        ood_manifest=str(ood) if ood.exists() else None,
        target_manifest=target,
        policy=str(spec.path),
        overrides=overrides,
        vocab_size=int(tok["vocab_size"]),
        eos_id=int(tok["eos_id"]),
        field=str(info.get("field", "u16")),
        seed=spec.seed,
        batch_size=cfg.preset.config().batch_size // cfg.ranks.world,
        threads=cfg.rank_threads(),
        log_path=str(folder / "train.jsonl"),
        ckpt_dir=str(ckpt_dir),
        progress=cfg.progress and not cfg.ranks.distributed and cfg.launcher == "local",
    )
    res = _train(cfg, tcfg, folder)
    if res is None:  # another node of a multi-node job: the first node writes the result
        return {}
    log = read_run_log(folder / "train.jsonl")  # the run log: step records survive a resume
    evals = log.events("eval")
    if not evals:
        raise ConfigError(f"{spec.key}: the run logged no held-out evaluation")
    final = evals[-1]
    domains = list(info["domains"])  # the held-out sets (a clustered corpus keeps its source's)
    trained = train_domains(info)
    steps = log.events("step")
    if [r["step"] for r in steps] != list(range(res["steps"])):
        raise ConfigError(
            f"{folder / 'train.jsonl'}: the run log does not hold one step record per step "
            "(a run begun by an older ado?); remove the folder to train it again"
        )
    samples = np.sum([r["counts"] for r in steps], axis=0)
    result = {
        "policy": spec.label,
        "policy_path": str(spec.path),
        "seed": spec.seed,
        "overrides": overrides,
        "steps": res["steps"],
        "tokens": res["tokens"],
        "final_eval_step": final["step"],
        "heldout_loss": {d: final[f"loss/{d}"] for d in domains},
        "ood_loss": {
            k[len("loss/ood/") :]: v for k, v in final.items() if k.startswith("loss/ood/")
        },
        "tokens_seen": {d: int(s * tcfg.seq_len) for d, s in zip(trained, samples, strict=True)},
        "final_weights": res["weights"],
        "wall_seconds": float(sum(r["step_s"] for r in steps)),
        "policy_seconds": float(sum(r["policy_s"] for r in steps)),
        "resumed": ckpt is not None and ckpt > 0,
        "launch": _launch_record(cfg, folder),
    }
    if target is not None:  # the held-out target set: where, how often, at what cost
        targets = log.events("target")
        result["target_manifest"] = target
        result["target_evals"] = len(targets)
        result["target_tokens"] = int(sum(r["tokens"] for r in targets))
        result["target_token_fraction"] = result["target_tokens"] / res["tokens"]
    atomic_write_text(done, json.dumps(result, indent=2) + "\n")
    return result


def latest_checkpoint_step(ckpt_dir: Path) -> int | None:
    """The step of the newest rank-0 checkpoint in ``ckpt_dir`` (None: none)."""
    from ado.torch import latest_checkpoint

    ckpt = latest_checkpoint(ckpt_dir / "rank_0") if ckpt_dir.exists() else None
    return int(ckpt.stem.split("_")[1]) if ckpt is not None else None


def _launch_record(cfg: CompareConfig, folder: Path) -> dict[str, Any]:
    """How the run ran: :meth:`CompareConfig.launch`, plus its Slurm jobs (oldest first)."""
    out = cfg.launch()
    if cfg.launcher == "slurm":
        from ado.compare.slurm import read_jobs

        jobs = read_jobs(folder)
        current = os.environ.get("SLURM_JOB_ID")
        if current and current not in jobs:  # the job started before its id was recorded
            jobs.append(current)
        out["slurm_jobs"] = jobs
    return out


def _train(cfg: CompareConfig, tcfg: Any, folder: Path) -> dict[str, Any] | None:
    """Train ``tcfg``: in this process (one rank), or under torchrun on this node. Returns
    ``{"steps", "tokens", "weights"}`` (None on a node other than a multi-node job's first)."""
    if not cfg.ranks.distributed:
        from ado.torch import train

        res = train(tcfg)
        return {"steps": res.steps, "tokens": res.tokens, "weights": res.weights}
    node_rank, master, port = 0, None, None
    if cfg.ranks.nnodes > 1:
        from ado.compare.slurm import node_role

        node_rank, master, port = node_role()
    config, summary = folder / "train_config.json", folder / "torchrun_result.json"
    atomic_write_text(config, tcfg.model_dump_json(indent=2) + "\n")
    summary.unlink(missing_ok=True)
    cmd = torchrun_command(
        config, summary, cfg.ranks, node_rank=node_rank, master_addr=master, master_port=port
    )
    log = folder / ("torchrun.log" if node_rank == 0 else f"torchrun-node{node_rank}.log")
    logger.debug("%s: %s", folder, " ".join(cmd))
    with log.open("ab") as fh:
        fh.write(f"$ {' '.join(cmd)}\n".encode())
        fh.flush()
        code = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=False).returncode
    if code != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RunFailedError(f"{folder}: torchrun exited with {code}; {log} ends:\n{tail}")
    if node_rank != 0:
        return None
    out: dict[str, Any] = json.loads(summary.read_text())
    return out


def _check_run_identity(folder: Path, identity: dict[str, Any], spec: RunSpec) -> None:
    """Refuse to resume or reuse a run folder that trained another policy or seed.

    Raises:
        ConfigError: the folder's ``run.json`` (or, for folders written before it existed, its
            ``result.json``) names another policy configuration or seed.
    """
    have: dict[str, Any] | None = None
    if (folder / "run.json").exists():
        have = json.loads((folder / "run.json").read_text())
    elif (folder / "result.json").exists():  # a run finished before run.json was written
        old = json.loads((folder / "result.json").read_text())
        path = Path(old.get("policy_path", ""))
        fingerprint = (
            load_policy_config(path, old.get("overrides") or {}).fingerprint()
            if path.is_file()
            else None
        )
        have = {"policy_fingerprint": fingerprint, "seed": old.get("seed")}
    if have is not None and have != identity:
        raise ConfigError(
            f"{folder} holds a run of another policy configuration, seed or number of ranks "
            f"than {spec.key} ({spec.path}); use another --out, or remove that folder to train "
            "it again"
        )


def _expand(cfg: CompareConfig) -> list[RunSpec]:
    labels = [p.stem for p in cfg.policies]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"policy files must have distinct names, got {labels}")
    return [RunSpec(p.stem, p, s) for s in cfg.seeds for p in cfg.policies]


def run_compare(cfg: CompareConfig) -> dict[str, Any]:
    """Run (or resume) every run of the comparison, then write the report.

    Returns:
        The report (also written as ``report.json``).

    Raises:
        ConfigError: bad corpus or policy list, or ``out`` holds something else.
    """
    from ado.compare.report import write_report

    info = corpus_info(cfg.corpus)
    for p in cfg.policies:
        if not Path(p).is_file():
            raise ConfigError(f"{p}: no such policy file")
    configs = _configs(cfg)
    kinds = {label: c.kind for label, c in configs.items()}
    # what each policy needs compare to serve it (PolicyConfig.harness_needs)
    needs = {label: c.harness_needs() for label, c in configs.items()}
    check_target(cfg, needs)  # before compare.json is written
    check_device(cfg.preset.config().device)
    _prepare_out(cfg)
    specs = _expand(cfg)
    natural_path = next((p for p in cfg.policies if p.stem == "natural"), None)
    needs_ref = any("reference_losses" in n for n in needs.values())
    if needs_ref:
        # the natural run of each seed is DoReMi's reference: train it first
        specs.sort(key=lambda s: (s.seed, s.label != "natural"))
        if natural_path is None:
            # a natural.yaml beside the policy files, else the shipped preset
            nat = next(
                (
                    p.parent / "natural.yaml"
                    for p in cfg.policies
                    if (p.parent / "natural.yaml").is_file()
                ),
                presets()["natural"],
            )
            for s in sorted(set(cfg.seeds)):
                specs.insert(0, RunSpec(REFERENCE, nat, s))
            specs.sort(key=lambda s: (s.seed, s.label not in ("natural", REFERENCE)))
    outer = tqdm(total=len(specs), desc="compare", unit="run", disable=not cfg.progress, position=0)
    reference: dict[int, dict[str, float]] = {}
    results = _execute(cfg, specs, kinds, needs, info, reference, outer)
    if cfg.extra_seeds and cfg.extra_for:
        targets = _extra_targets(cfg, results, kinds)
        extra = [
            RunSpec(p.stem, p, s)
            for s in cfg.extra_seeds
            for p in cfg.policies
            if p.stem in targets
        ]
        ref_path = natural_path or cfg.policies[0]
        for s in sorted({x.seed for x in extra if "reference_losses" in needs.get(x.label, ())}):
            if s not in reference and not any(x.seed == s and x.label == "natural" for x in extra):
                extra.insert(0, RunSpec(REFERENCE, ref_path, s))
        outer.total = (outer.total or 0) + len(extra)
        results += _execute(cfg, extra, kinds, needs, info, reference, outer)
    outer.close()
    return write_report(cfg, info, results, kinds, command=cfg.command)


def _overrides(
    cfg: CompareConfig,
    spec: RunSpec,
    needs: frozenset[str],
    reference: dict[int, dict[str, float]],
) -> dict[str, Any]:
    """What compare serves a run on top of its policy file: the preset's schedule to a policy
    that has one, the reference run's losses to one that wants them."""
    out: dict[str, Any] = {}
    if "schedule" in needs:
        out.update(cfg.preset.ado_overrides)
    if "reference_losses" in needs:
        out["estimator.reference_losses"] = reference[spec.seed]
    return out


def _submit(
    pool: Any, spec: RunSpec, folder: Path, fn: Callable[..., dict[str, Any]], *args: Any
) -> Future[dict[str, Any]]:
    """Start ``fn(*args)`` (the run ``spec``) on ``pool``: a Slurm pool (one job per run), a
    process pool, or this process now (a finished future) without one."""
    if isinstance(pool, ProcessPoolExecutor):
        return pool.submit(fn, *args)
    if pool is not None:
        slurm_fut: Future[dict[str, Any]] = pool.submit(spec.key, folder, fn, *args)
        return slurm_fut
    fut: Future[dict[str, Any]] = Future()
    try:
        fut.set_result(fn(*args))
    except Exception as err:
        fut.set_exception(err)
    return fut


def _pool(cfg: CompareConfig) -> Any:
    """Where runs train: a :class:`~ado.compare.slurm.SlurmPool` (``launcher="slurm"``), a
    process pool (``jobs > 1``), or None (one at a time in this process)."""
    if cfg.launcher == "slurm":
        from ado.compare.slurm import SlurmOptions, SlurmPool

        device = str(cfg.preset.config().device)
        return SlurmPool(
            cfg.out / "slurm",
            cfg.slurm if cfg.slurm is not None else SlurmOptions(),
            nodes=cfg.ranks.nnodes,
            default_cpus=cfg.ranks.nproc_per_node,
            default_gpus=cfg.ranks.nproc_per_node if device.startswith("cuda") else None,
        )
    if cfg.jobs > 1:
        return ProcessPoolExecutor(cfg.jobs, mp_context=get_context("spawn"))
    return None


def _execute(
    cfg: CompareConfig,
    specs: Sequence[RunSpec],
    kinds: dict[str, str],
    needs: dict[str, frozenset[str]],
    info: dict[str, Any],
    reference: dict[int, dict[str, float]],
    outer: Any,
) -> list[dict[str, Any]]:
    """Train ``specs``, ``cfg.jobs`` at a time (every run at once on Slurm; in order; a run that
    needs reference losses waits for its seed's reference run). Fills ``reference``; returns
    the results in the order of ``specs``.

    Raises:
        RunFailedError: Slurm jobs that ended without their result (after every other run
            finished: the cluster's work is never thrown away).
    """
    pending = list(specs)
    running: dict[Future[dict[str, Any]], RunSpec] = {}
    done_by_spec: dict[RunSpec, dict[str, Any]] = {}
    failed: list[tuple[RunSpec, BaseException]] = []
    slurm = cfg.launcher == "slurm"
    at_once = len(specs) if slurm else cfg.jobs
    # a worker's inner progress bar would fight the others' for the terminal
    worker_cfg = replace(cfg, progress=cfg.progress and cfg.jobs == 1 and not slurm)
    pool = _pool(cfg)
    try:
        while pending or running:
            for spec in list(pending):
                if len(running) >= at_once:
                    break
                need = needs.get(spec.label, frozenset())
                if "reference_losses" in need and spec.seed not in reference:
                    continue
                pending.remove(spec)
                overrides = _overrides(cfg, spec, need, reference)
                folder = run_folder(cfg, spec)
                if slurm:  # refuse a folder of another run before a job is queued for it
                    _check_run_identity(folder, _run_identity(cfg, spec, overrides), spec)
                # a finished run needs no job: its result is read here
                where = None if slurm and (folder / "result.json").exists() else pool
                fut = _submit(where, spec, folder, train_one, worker_cfg, spec, overrides, info)
                running[fut] = spec
            keys = [s.key for s in running.values()]
            outer.set_postfix_str(f"{len(keys)} Slurm jobs" if slurm else ", ".join(keys))
            if not running:
                if failed:
                    break  # what is left waits for a reference run that failed
                raise InternalError(f"no reference run for {[s.key for s in pending]}")
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                spec = running.pop(fut)
                try:
                    res = fut.result()
                except RunFailedError as err:
                    if not slurm:
                        raise
                    failed.append((spec, err))
                    continue
                if spec.label in ("natural", REFERENCE):
                    reference.setdefault(spec.seed, res["heldout_loss"])
                res["kind"] = kinds.get(spec.label, "static")
                done_by_spec[spec] = res
                outer.update(1)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    if failed:
        why = "\n\n".join(str(err) for _, err in failed)
        if pending:
            waiting = [s.key for s in pending]
            why += f"\n\nnot started (they wait for a failed reference run): {waiting}"
        raise RunFailedError(why)
    return [done_by_spec[s] for s in specs]


def report_finished(cfg: CompareConfig) -> dict[str, Any]:
    """Write the report from the runs that finished so far (nothing is trained).

    Raises:
        ConfigError: no finished run in ``cfg.out``.
    """
    from ado.compare.report import write_report

    meta = cfg.out / "compare.json"
    if not meta.is_file():
        raise ConfigError(f"{cfg.out}: no compare.json, so no comparison to report")
    try:
        have = json.loads(meta.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"{meta}: unreadable: {err}") from None
    want = cfg.identity()
    have = _stored_identity(have)
    for key in ("corpus", "preset"):  # a report labelled with another corpus would lie
        if have is None or have.get(key) != want[key]:
            got = have.get(key) if have is not None else None
            raise ConfigError(
                f"{cfg.out}: its runs were made with {key} {got!r}, not {want[key]!r}; "
                f"report them with the {key} they were made with"
            )
    info = corpus_info(cfg.corpus)
    kinds = {label: c.kind for label, c in _configs(cfg).items()}
    kinds.setdefault(REFERENCE, "static")
    results = []
    for path in sorted((cfg.out / "runs").glob("*/seed*/result.json")):
        res = json.loads(path.read_text())
        res["kind"] = kinds.get(res["policy"], "static")
        results.append(res)
    if not results:
        raise ConfigError(f"{cfg.out}: no finished run to report")
    order = {p.stem: i for i, p in enumerate(cfg.policies)}
    results.sort(key=lambda r: (order.get(r["policy"], -1), r["seed"]))
    have = {f"{r['policy']}/seed{r['seed']}" for r in results}
    missing = [s.key for s in _expand(cfg) if s.key not in have]
    if cfg.extra_seeds and cfg.extra_for:
        targets = _extra_targets(cfg, results, kinds)
        missing += [
            f"{p.stem}/seed{s}"
            for s in cfg.extra_seeds
            for p in cfg.policies
            if p.stem in targets and f"{p.stem}/seed{s}" not in have
        ]
    return write_report(cfg, info, results, kinds, command=cfg.command, missing=missing)


def _extra_targets(
    cfg: CompareConfig, results: Sequence[dict[str, Any]], kinds: dict[str, str]
) -> list[str]:
    targets = [t for t in cfg.extra_for if t != "best"]
    if "best" in cfg.extra_for:
        base = [r for r in results if kinds.get(r["policy"]) != "ado" and r["policy"] != REFERENCE]
        if base:
            best = min(base, key=lambda r: float(np.mean(list(r["heldout_loss"].values()))))
            targets.append(best["policy"])
    return sorted(set(targets))
