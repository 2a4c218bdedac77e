"""``ado compare``: train the same model and seed under each policy and write a report.

Example::

    ado compare --corpus builtin --preset cpu-small --out runs/readme
    ado compare --corpus corpora/debian --policies policies/natural.yaml policies/ado.yaml \\
        --preset cpu-full --out runs/debian --seeds 0 1

    ado compare --corpus corpora/debian --policies natural ado-target-set \\
        --target-manifest corpora/my-target.yaml --preset cpu-full --out runs/target

    ado compare --corpus corpora/debian --preset gpu-124m --out runs/paper \\
        --launcher slurm --nproc-per-node 8 --slurm-partition gpu --slurm-time 120

``--nproc-per-node N`` trains each run under torchrun with N ranks (``--nnodes M``: on M nodes,
Slurm only); ``--launcher slurm`` submits each run as a Slurm job and waits for them (a second
compare with the same arguments attaches to the running jobs). ``--corpus builtin`` builds the
built-in corpus (once) under ``~/.cache/ado/corpus``. A killed
compare resumes when started again with the same arguments; started again with more seeds, it
trains only the new runs.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from ado._deps import require
from ado._io import atomic_write_text, cache_root
from ado.cli._common import non_negative_int, plain, positive_int
from ado.errors import ConfigError
from ado.policy.presets import resolve_policy

__all__ = ["DEFAULT_POLICIES", "builtin_corpus_dir", "register", "run"]

#: The policies compared by default (presets in ``policies/``).
DEFAULT_POLICIES = ("natural", "uniform", "temperature", "doremi", "odm", "ado")


def register(sub: Any) -> None:
    """Add the ``compare`` subcommand (without importing the harness: its presets are validated
    against the torch training config, and building the parser must not import torch)."""
    p: argparse.ArgumentParser = sub.add_parser(
        "compare",
        help="compare mixing policies on a corpus (train, evaluate, report)",
        description=plain(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--corpus",
        required=True,
        help="a folder built by `ado corpus build` (or its URL: s3://, gs://, http(s)://), "
        "or 'builtin'",
    )
    p.add_argument(
        "--policies",
        nargs="+",
        default=list(DEFAULT_POLICIES),
        help="preset names or policy YAML files (default: " + " ".join(DEFAULT_POLICIES) + ")",
    )
    p.add_argument(
        "--preset",
        default="cpu-small",
        help="run size: model, tokens, evaluation cadence, ADO schedule, seeds: cpu-small "
        "(default), cpu-full, gpu-short, gpu or gpu-124m (the paper's 124M model; a cluster "
        "recipe) (ado.compare.PRESETS)",
    )
    p.add_argument("--out", type=Path, required=True, help="output folder (runs, report, plots)")
    p.add_argument(
        "--target-manifest",
        type=Path,
        default=None,
        help="the held-out target set of the policies that take one (target_set, e.g. "
        "ado-target-set): a manifest of the target data or of a held-out split of the training "
        "domains; never the corpus's out-of-distribution sets (refused)",
    )
    p.add_argument(
        "--seeds",
        type=non_negative_int,
        nargs="+",
        default=None,
        help="seeds of every policy (default: the preset's, 0 1 2 for cpu-full and gpu-124m, "
        "else 0)",
    )
    p.add_argument(
        "--extra-seeds",
        type=non_negative_int,
        nargs="*",
        default=[],
        help="more seeds, only for the policies of --extra-for",
    )
    p.add_argument(
        "--extra-for",
        nargs="*",
        default=[],
        help="policy names for --extra-seeds; 'best' = the best baseline",
    )
    p.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help="override the preset's steps (cadences and ADO's schedule scale along)",
    )
    p.add_argument("--device", default=None, help="override the preset's device")
    p.add_argument(
        "--jobs",
        type=positive_int,
        default=1,
        help="runs trained at once, each in its own process (default 1)",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="torch CPU threads per run (default: the usable cores divided by --jobs)",
    )
    p.add_argument(
        "--nproc-per-node",
        type=positive_int,
        default=1,
        help="ranks per run on each node (more than 1: the run trains under torchrun, gloo on "
        "CPU, NCCL on GPU; the preset's batch size stays the global batch)",
    )
    p.add_argument(
        "--nnodes", type=positive_int, default=1, help="nodes per run (needs --launcher slurm)"
    )
    p.add_argument(
        "--launcher",
        choices=("local", "slurm"),
        default="local",
        help="where runs train: this machine (default) or one Slurm job per run (submitit)",
    )
    slurm = p.add_argument_group("Slurm (--launcher slurm; nothing here has a cluster default)")
    slurm.add_argument("--slurm-partition", default=None, help="partition of the jobs")
    slurm.add_argument(
        "--slurm-time", type=positive_int, default=None, help="time limit per job, in minutes"
    )
    slurm.add_argument(
        "--slurm-gpus-per-node",
        type=positive_int,
        default=None,
        help="GPUs per node (default: --nproc-per-node on a CUDA preset)",
    )
    slurm.add_argument(
        "--slurm-cpus-per-task",
        type=positive_int,
        default=None,
        help="CPUs of each node's task (default: --nproc-per-node)",
    )
    slurm.add_argument(
        "--sbatch",
        action="append",
        default=[],
        metavar="NAME[=VALUE]",
        help="any other sbatch option, e.g. --sbatch account=abc --sbatch exclusive (repeatable)",
    )
    slurm.add_argument(
        "--slurm-retries",
        type=non_negative_int,
        default=1,
        help="times a failed job is submitted again, resuming from its checkpoints (default 1)",
    )
    slurm.add_argument(
        "--slurm-poll",
        type=float,
        default=10.0,
        help="seconds between job-state checks (default 10)",
    )
    p.add_argument("--force", action="store_true", help="replace another comparison in --out")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="write the report from the runs finished so far, train nothing",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def builtin_corpus_dir() -> Path:
    """Where ``--corpus builtin`` lives: ``corpus/`` under :func:`ado._io.cache_root`."""
    import platform

    from ado.corpus import BUILTIN_CORPUS_VERSION

    name = f"builtin-v{BUILTIN_CORPUS_VERSION}-py{platform.python_version()}"
    return cache_root() / "corpus" / name


def remote_corpus(url: str) -> Path:
    """A local folder standing for the corpus at ``url`` (``s3://``, ``gs://``, ``http(s)://``):
    its ``corpus.json`` and manifests (``manifest.yaml``, ``val.yaml``, ``ood.yaml`` if there),
    each manifest pointing at the shards beside the original (``base_dir`` is the URL's
    folder). The shards stay where they are and are read through the node cache."""
    import hashlib

    from ado.data import Manifest
    from ado.data.manifest import _read_remote_config
    from ado.data.remote import RemoteConfig, redact
    from ado.errors import ShardNotFoundError

    base = url.rstrip("/")
    folder = cache_root() / "corpus-remote" / hashlib.sha256(base.encode()).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    info = _read_remote_config(base + "/corpus.json", None, RemoteConfig())
    if not isinstance(info, dict):
        raise ConfigError(f"{redact(base)}/corpus.json: not a corpus description")
    for name in ("manifest.yaml", "val.yaml", "ood.yaml"):
        try:
            manifest = Manifest.load(f"{base}/{name}")
        except ShardNotFoundError:
            if name == "ood.yaml":
                (folder / name).unlink(missing_ok=True)
                continue
            raise
        manifest.save(folder / name)
    atomic_write_text(folder / "corpus.json", json.dumps({**info, "remote": redact(base)}))
    return folder


def _corpus(arg: str, progress: bool) -> Path:
    from ado.data.remote import is_remote

    if is_remote(arg):
        return remote_corpus(arg)
    if arg != "builtin":
        return Path(arg)
    folder = builtin_corpus_dir()
    if (folder / "corpus.json").exists():
        return folder
    from ado.corpus import build_builtin
    from ado.corpus.build import build_lock

    with build_lock(folder):  # another compare may be building it: wait, then use its build
        if not (folder / "corpus.json").exists():
            print(f"building the built-in corpus in {folder}", file=sys.stderr)
            build_builtin(folder, force=True, progress=progress)
    return folder


def _slurm_options(args: argparse.Namespace) -> Any:
    """The Slurm submission options of the command line."""
    require("submitit", "slurm", "ado compare --launcher slurm")
    from ado.compare.slurm import SlurmOptions

    return SlurmOptions(
        partition=args.slurm_partition,
        time_min=args.slurm_time,
        gpus_per_node=args.slurm_gpus_per_node,
        cpus_per_task=args.slurm_cpus_per_task,
        sbatch=tuple(args.sbatch),
        retries=args.slurm_retries,
        poll_s=args.slurm_poll,
    )


def run(args: argparse.Namespace) -> int:
    """Run the comparison and print its table."""
    for module in ("torch", "tokenizers", "matplotlib", "scipy"):
        require(module, "compare", "ado compare")
    from ado.compare import PRESETS, CompareConfig, Ranks, format_table, run_compare

    if args.preset not in PRESETS:
        raise ConfigError(f"unknown preset {args.preset!r}; presets: {', '.join(sorted(PRESETS))}")
    preset = PRESETS[args.preset]
    if args.steps is not None:
        preset = preset.scaled(args.steps)
    if args.device is not None:
        preset = preset.with_train(device=args.device)
    start = time.perf_counter()
    corpus = _corpus(args.corpus, not args.no_progress)
    cfg = CompareConfig(
        corpus=corpus,
        policies=[resolve_policy(p) for p in args.policies],
        preset=preset,
        out=args.out,
        seeds=args.seeds if args.seeds is not None else preset.seeds,
        extra_seeds=args.extra_seeds,
        extra_for=args.extra_for,
        force=args.force,
        progress=not args.no_progress,
        command="ado " + shlex.join(sys.argv[1:]) if sys.argv[1:] else None,
        jobs=args.jobs,
        threads=args.threads,
        ranks=Ranks(args.nproc_per_node, args.nnodes),
        launcher=args.launcher,
        slurm=_slurm_options(args) if args.launcher == "slurm" else None,
        target_manifest=args.target_manifest,
    )
    if args.report_only:
        from ado.compare.run import report_finished

        report = report_finished(cfg)
    else:
        report = run_compare(cfg)
    print()
    print(report["headline"])
    print()
    print(format_table(report))
    for v in report["ado_vs_baselines"]:
        word = "lower" if v["ado_lower"] else "higher"
        print(
            f"{v['ado']} vs {v['baseline']}: uniform-avg loss {word} by {abs(v['delta']):.4f} "
            f"({100 * v['relative_delta']:+.2f} %)"
        )
    print(f"report: {args.out / 'report.md'} ({time.perf_counter() - start:.0f} s)")
    return 0
