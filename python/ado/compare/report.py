"""The comparison report: JSON, Markdown, JSONL metrics and PNG plots.

``report.json`` (schema version :data:`REPORT_VERSION`)::

    {"version", "headline", "corpus": {...}, "preset": {...}, "domains": [...],
     "natural_weights": {...},
     "reference": {"policy", "note", "losses": {seed: {domain: loss}}},
     "ood_sets": [set, ...],
     "runs": [{"policy", "kind", "seed", "heldout_loss": {domain: loss}, "uniform_avg",
               "natural_avg", "ood_loss": {set: loss}, "tokens_seen": {domain: n},
               "wall_seconds", "policy_seconds",
               "launch": {"launcher", "nnodes", "nproc_per_node", "world_size", "torchrun",
                          "backend", "slurm_jobs"}, ...}],
     "summary": [{"policy", "kind", "seeds", "uniform_avg_mean", "uniform_avg_std",
                  "natural_avg_mean", "natural_avg_std", "heldout_loss_mean": {...},
                  "ood_loss_mean": {...}, "ood_loss_std": {...}, "wall_seconds_mean",
                  "policy_seconds_mean"}],
     "ado_vs_baselines": [{"baseline", "ado", "delta", "relative_delta", "spread",
                           "delta_over_spread", "ado_lower",
                           "paired_deltas": {seed: delta}, "paired_ci95", "lower_on_seeds",
                           "paired_natural_avg_deltas", "paired_natural_avg_ci95",
                           "ood": {set: {"delta", "paired_deltas", "paired_ci95",
                                         "lower_on_seeds"}}}],

Out-of-distribution sets (``ood.yaml`` of the corpus: text no training domain draws from) are
scored beside the in-domain averages; every ADO-vs-baseline difference is paired by seed (same
model init, data seed and held-out rows) with a Student-t 95 % interval over seeds.
     "files": {"markdown", "metrics", "plots": [...]}}
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ado._deps import require
from ado._io import atomic_write_text
from ado.runlog import read_records

__all__ = [
    "REPORT_VERSION",
    "format_table",
    "headline",
    "paired_interval",
    "train_domains",
    "write_report",
]

logger = logging.getLogger(__name__)

REPORT_VERSION = 1

#: Above this many training domains the report shows no per-domain table of tokens seen.
MAX_TABLE_DOMAINS = 16


def _avg(losses: dict[str, float], weights: dict[str, float] | None = None) -> float:
    if weights is None:
        return float(np.mean(list(losses.values())))
    total = sum(weights[d] for d in losses)
    return float(sum(losses[d] * weights[d] for d in losses) / total)


def _std(xs: Sequence[float]) -> float | None:
    return float(np.std(xs, ddof=1)) if len(xs) >= 2 else None


def train_domains(info: dict[str, Any]) -> list[str]:
    """The training domains of a corpus: its domains, or the clusters of a corpus made by ``ado
    corpus cluster`` (whose ``domains`` are the source's, the ones its held-out sets score)."""
    return list(info.get("clusters") or info["domains"])


def _ood_sets(runs: list[dict[str, Any]]) -> list[str]:
    """The out-of-distribution sets every run was scored on, in order."""
    sets: list[str] | None = None
    for r in runs:
        have = list(r.get("ood_loss") or {})
        sets = have if sets is None else [x for x in sets if x in have]
    return sets or []


def _summary(
    runs: list[dict[str, Any]], domains: list[str], trained: list[str]
) -> list[dict[str, Any]]:
    order: list[str] = []
    for r in runs:
        if r["policy"] not in order:
            order.append(r["policy"])
    out = []
    for name in order:
        rs = [r for r in runs if r["policy"] == name]
        ua = [r["uniform_avg"] for r in rs]
        out.append(
            {
                "policy": name,
                "kind": rs[0]["kind"],
                "seeds": [r["seed"] for r in rs],
                "uniform_avg_mean": float(np.mean(ua)),
                "uniform_avg_std": _std(ua),
                "natural_avg_mean": float(np.mean([r["natural_avg"] for r in rs])),
                "natural_avg_std": _std([r["natural_avg"] for r in rs]),
                "ood_loss_mean": {
                    o: float(np.mean([r["ood_loss"][o] for r in rs])) for o in _ood_sets(rs)
                },
                "ood_loss_std": {o: _std([r["ood_loss"][o] for r in rs]) for o in _ood_sets(rs)},
                "uniform_avg_text_mean": (
                    float(np.mean([r["uniform_avg_text"] for r in rs]))
                    if "uniform_avg_text" in rs[0]
                    else None
                ),
                "heldout_loss_mean": {
                    d: float(np.mean([r["heldout_loss"][d] for r in rs])) for d in domains
                },
                "tokens_seen_mean": {
                    d: float(np.mean([r["tokens_seen"][d] for r in rs])) for d in trained
                },
                "wall_seconds_mean": float(np.mean([r["wall_seconds"] for r in rs])),
                "policy_seconds_mean": float(np.mean([r["policy_seconds"] for r in rs])),
            }
        )
    return out


def paired_interval(deltas: Sequence[float], level: float = 0.95) -> tuple[float, float] | None:
    """Student-t confidence interval of the mean of paired differences (None below 2 pairs)."""
    if len(deltas) < 2:
        return None
    stats = require("scipy.stats", "compare", "the paired confidence interval")
    d = np.asarray(deltas, dtype=np.float64)
    half = float(stats.t.ppf(0.5 + level / 2, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)))
    return float(d.mean() - half), float(d.mean() + half)


def _paired(a: dict[int, float], b: dict[int, float]) -> dict[str, Any]:
    """ADO minus baseline per seed both have, their mean, 95 % interval and sign count."""
    seeds = [k for k in sorted(a) if k in b]
    paired = {str(k): float(a[k] - b[k]) for k in seeds}
    ci = paired_interval(list(paired.values()))
    return {
        "delta": float(np.mean(list(paired.values()))) if paired else None,
        "paired_deltas": paired,
        "paired_ci95": list(ci) if ci is not None else None,
        "lower_on_seeds": sum(d < 0 for d in paired.values()),
    }


def _ado_vs(summary: list[dict[str, Any]], runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every ADO policy (there may be several variants) against every other policy."""

    def by_seed(policy: str, metric: str, ood: str | None = None) -> dict[int, float]:
        if ood is not None:
            return {r["seed"]: r["ood_loss"][ood] for r in runs if r["policy"] == policy}
        return {r["seed"]: r[metric] for r in runs if r["policy"] == policy}

    sets = _ood_sets(runs)

    out = []
    for a in (s for s in summary if s["kind"] == "ado"):
        a_by_seed = by_seed(a["policy"], "uniform_avg")
        a_nat = by_seed(a["policy"], "natural_avg")
        for s in summary:
            if s["kind"] == "ado" or s["policy"] == "reference":
                continue
            b_by_seed = by_seed(s["policy"], "uniform_avg")
            b_nat = by_seed(s["policy"], "natural_avg")
            # same seed = same model init, data order seed and held-out rows: a paired difference
            seeds = [k for k in sorted(a_by_seed) if k in b_by_seed]
            paired = {str(k): float(a_by_seed[k] - b_by_seed[k]) for k in seeds}
            nat = _paired(a_nat, b_nat)
            ci = paired_interval(list(paired.values()))
            delta = a["uniform_avg_mean"] - s["uniform_avg_mean"]
            sa, sb = _std(list(a_by_seed.values())), _std(list(b_by_seed.values()))
            stds = [x for x in (sa, sb) if x is not None]
            spread = float(math.sqrt(np.mean(np.square(stds)))) if stds else None
            out.append(
                {
                    "ado": a["policy"],
                    "baseline": s["policy"],
                    "ado_seeds": len(a_by_seed),
                    "baseline_seeds": len(b_by_seed),
                    "ado_uniform_avg": a["uniform_avg_mean"],
                    "baseline_uniform_avg": s["uniform_avg_mean"],
                    "delta": delta,
                    "relative_delta": delta / s["uniform_avg_mean"],
                    "spread": spread,
                    "delta_over_spread": (delta / spread) if spread else None,
                    "ado_lower": bool(delta < 0),
                    "paired_deltas": paired,
                    "paired_ci95": list(ci) if ci is not None else None,
                    "paired_natural_avg_deltas": nat["paired_deltas"],
                    "paired_natural_avg_ci95": nat["paired_ci95"],
                    "natural_avg_lower_on_seeds": nat["lower_on_seeds"],
                    "lower_on_seeds": sum(d < 0 for d in paired.values()),
                    "ood": {
                        o: _paired(by_seed(a["policy"], "", o), by_seed(s["policy"], "", o))
                        for o in sets
                    },
                }
            )
    return out


def format_table(report: dict[str, Any]) -> str:
    """The comparison table (Markdown): per policy, held-out loss per domain and the averages."""
    domains: list[str] = report["domains"]
    text = bool(report.get("noise_domains"))
    head = ["policy", "seeds", *domains, "uniform avg", "natural avg", "wall s", "policy s"]
    if text:
        head.insert(len(domains) + 4, "uniform avg w/o noise")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    best = min(s["uniform_avg_mean"] for s in report["summary"])
    for s in report["summary"]:
        ua = f"{s['uniform_avg_mean']:.4f}"
        if s["uniform_avg_std"] is not None:
            ua += f" ± {s['uniform_avg_std']:.4f}"
        if s["uniform_avg_mean"] == best:
            ua = f"**{ua}**"
        cells = [
            s["policy"],
            str(len(s["seeds"])),
            *(f"{s['heldout_loss_mean'][d]:.3f}" for d in domains),
            ua,
            f"{s['natural_avg_mean']:.4f}",
            *([f"{s['uniform_avg_text_mean']:.4f}"] if text else []),
            f"{s['wall_seconds_mean']:.0f}",
            f"{s['policy_seconds_mean']:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _verdicts(report: dict[str, Any]) -> list[str]:
    out = []
    several = len({v["ado"] for v in report["ado_vs_baselines"]}) > 1
    for v in report["ado_vs_baselines"]:
        word = "lower" if v["ado_lower"] else "higher"
        name = f"`{v['ado']}`" if several else "ADO"
        spread = (
            f" |Δ| is {abs(v['delta_over_spread']):.1f}x the seed-to-seed spread "
            f"(std {v['spread']:.4f}; {v['ado_seeds']} ADO seeds, "
            f"{v['baseline_seeds']} baseline seeds)."
            if v["delta_over_spread"] is not None
            else " One seed each: no spread."
        )
        paired = v.get("paired_deltas") or {}
        per_seed = (
            " Per seed (paired): "
            + ", ".join(f"seed {k} {d:+.4f}" for k, d in paired.items())
            + f"; lower on {v['lower_on_seeds']} of {len(paired)}."
            if paired
            else ""
        )
        ci = v.get("paired_ci95")
        if ci is not None:
            per_seed += f" Paired 95 % interval of Δ: [{ci[0]:+.4f}, {ci[1]:+.4f}]."
        out.append(
            f"- {name} vs **{v['baseline']}**: uniform-average held-out loss {word} by "
            f"{abs(v['delta']):.4f} ({100 * v['relative_delta']:+.2f} %; "
            f"{v['ado_uniform_avg']:.4f} vs {v['baseline_uniform_avg']:.4f}).{spread}" + per_seed
        )
    return out


def headline(report: dict[str, Any]) -> str:
    """One plain sentence: which policy had the lowest uniform-average held-out loss, and
    whether this comparison can tell it from the runner-up (several seeds and a paired 95 %
    interval of the difference that excludes 0) or not (one seed, or an interval containing 0).
    """
    ranked = sorted(report["summary"], key=lambda s: s["uniform_avg_mean"])
    steps = report["preset"]["effective"]["steps"]
    if len(ranked) < 2:
        return f"One policy (`{ranked[0]['policy']}`), {steps} steps: nothing to compare."
    best, second = ranked[0], ranked[1]
    by_seed = {
        name: {r["seed"]: r["uniform_avg"] for r in report["runs"] if r["policy"] == name}
        for name in (best["policy"], second["policy"])
    }
    seeds = [k for k in sorted(by_seed[best["policy"]]) if k in by_seed[second["policy"]]]
    deltas = [by_seed[best["policy"]][k] - by_seed[second["policy"]][k] for k in seeds]
    lead = second["uniform_avg_mean"] - best["uniform_avg_mean"]
    won = (
        f"`{best['policy']}` had the lowest uniform-average held-out loss "
        f"({best['uniform_avg_mean']:.4f}, {lead:.4f} below `{second['policy']}`)"
    )
    ci = paired_interval(deltas)
    if ci is None:
        return (
            f"{won}, but this run cannot tell whether that is more than chance: "
            f"{len(seeds) or 1} seed per policy and {steps} steps give no seed-to-seed spread "
            "(compare over three or more seeds, e.g. --seeds 0 1 2, for a paired interval)."
        )
    interval = f"[{ci[0]:+.4f}, {ci[1]:+.4f}]"
    if ci[1] < 0:
        return (
            f"{won}, and this run can tell: over {len(seeds)} seeds the paired 95 % interval of "
            f"its difference, {interval}, excludes 0."
        )
    return (
        f"{won}, but this run cannot tell it from `{second['policy']}`: over {len(seeds)} seeds "
        f"the paired 95 % interval of the difference, {interval}, contains 0."
    )


def _interval(ci: list[float] | None) -> str:
    return f"[{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci is not None else "n/a (1 seed)"


def _ood_section(report: dict[str, Any]) -> list[str]:
    """In-domain averages and each out-of-distribution set, per policy, then ADO's paired
    differences metric by metric."""
    sets: list[str] = report.get("ood_sets") or []
    if not sets:
        return []

    def cell(mean: float, std: float | None) -> str:
        return f"{mean:.4f}" + (f" ± {std:.4f}" if std is not None else "")

    head = ["policy", "seeds", "in-domain uniform avg", "in-domain natural avg", *sets]
    lines = [
        "## Out-of-distribution held-out sets",
        "",
        "Loss on text that no training domain draws from (`ood.yaml` of the corpus), beside the "
        "in-domain averages. Mean ± std over seeds.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for s in report["summary"]:
        cells = [
            s["policy"],
            str(len(s["seeds"])),
            cell(s["uniform_avg_mean"], s["uniform_avg_std"]),
            cell(s["natural_avg_mean"], s.get("natural_avg_std")),
            *(cell(s["ood_loss_mean"][o], s["ood_loss_std"][o]) for o in sets),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "ADO minus baseline, paired by seed (negative: ADO lower), with the 95 % interval of the "
        "mean difference:",
        "",
        "| ADO vs | metric | mean Δ | per seed | 95 % interval | ADO lower on |",
        "|---|---|---|---|---|---|",
    ]
    for v in report["ado_vs_baselines"]:
        n = len(v["paired_deltas"])
        rows = [
            (
                "in-domain uniform avg",
                v["paired_deltas"],
                v.get("paired_ci95"),
                v["lower_on_seeds"],
            ),
            (
                "in-domain natural avg",
                v["paired_natural_avg_deltas"],
                v.get("paired_natural_avg_ci95"),
                v.get("natural_avg_lower_on_seeds", 0),
            ),
            *(
                (f"ood `{o}`", d["paired_deltas"], d["paired_ci95"], d["lower_on_seeds"])
                for o, d in v.get("ood", {}).items()
            ),
        ]
        for metric, deltas, ci, lower in rows:
            mean = float(np.mean(list(deltas.values()))) if deltas else float("nan")
            per_seed = ", ".join(f"{k}: {d:+.4f}" for k, d in deltas.items())
            lines.append(
                f"| {v['ado']} vs {v['baseline']} | {metric} | {mean:+.4f} | {per_seed} | "
                f"{_interval(ci)} | {lower} of {n} |"
            )
    return [*lines, ""]


def _markdown(report: dict[str, Any]) -> str:
    name, p = report["preset"]["name"], report["preset"]["effective"]
    c = report["corpus"]
    tokens = report["tokens_per_run"]
    lines = [
        "# ado compare report",
        "",
        f"**Result:** {report['headline']}",
        "",
        f"Corpus: `{c['path']}` (recipe `{c.get('recipe')}`, tokenizer "
        f"{c['tokenizer']['kind']} with {c['tokenizer']['vocab_size']} ids, "
        f"{len(report['domains'])} domains). Preset `{name}`: GPT {p['n_layer']} layers x "
        f"{p['n_embd']} wide, {p['seq_len']}-token rows, batch {p['batch_size']}, {p['steps']} "
        f"steps = {tokens:,} training tokens per run, same model init and data seed per policy.",
        "",
        "Held-out loss (nats/token) per domain at the end of training; *uniform avg* is the "
        "unweighted mean over domains (the paper's validation metric), *natural avg* weights "
        "domains by their token share. Mean (± std over seeds where there are several).",
        *(
            [
                "*uniform avg w/o noise* leaves out the random-byte control domain(s) "
                f"{report['noise_domains']}: their loss cannot go below ln 256 per byte, and a "
                "policy that starves them (as it should) pays for it in the plain uniform avg.",
            ]
            if report.get("noise_domains")
            else []
        ),
        "",
        format_table(report),
        "",
        *(
            [f"**Incomplete:** these runs did not finish: {', '.join(report['missing_runs'])}.", ""]
            if report.get("missing_runs")
            else []
        ),
        "## ADO against each baseline",
        "",
        *(_verdicts(report) or ["(no ADO run in this comparison)"]),
        "",
        *_ood_section(report),
        "## Tokens seen per domain",
        "",
    ]
    trained = report.get("train_domains") or report["domains"]
    if len(trained) > MAX_TABLE_DOMAINS:
        lines.append(
            f"{len(trained)} training domains: see `tokens_seen_mean` in report.json and the "
            "weights' heatmap."
        )
    else:
        lines += [
            "| policy | " + " | ".join(trained) + " |",
            "|" + "---|" * (len(trained) + 1),
        ]
        for s in report["summary"]:
            lines.append(
                f"| {s['policy']} | "
                + " | ".join(f"{s['tokens_seen_mean'][d]:,.0f}" for d in trained)
                + " |"
            )
    ref = report["reference"]
    lines += ["", "## Setup", "", f"- DoReMi reference losses: {ref['note']}"]
    for seed, losses in ref["losses"].items():
        lines.append(f"  - seed {seed}: " + ", ".join(f"{d} {v:.3f}" for d, v in losses.items()))
    if report.get("ado_overrides"):
        lines.append(
            "- ADO's schedule, scaled to the run length (the rule's constants are the paper's): "
            + ", ".join(f"`{k}={v}`" for k, v in report["ado_overrides"].items())
        )
    lines += _launch_lines(report)
    lines.append(
        "- Natural weights (token shares): "
        + ", ".join(f"{d} {w:.3f}" for d, w in report["natural_weights"].items())
    )
    if report.get("command"):
        lines += ["", "Command:", "", "```", report["command"], "```"]
    if report.get("versions"):
        lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items())]
    lines += ["", "## Plots", ""]
    for f in report["files"]["plots"]:
        lines.append(f"![{Path(f).stem}]({f})")
    return "\n".join(lines) + "\n"


def _launch_lines(report: dict[str, Any]) -> list[str]:
    """How the runs ran: launcher, ranks and nodes (and each run's Slurm jobs)."""
    ways: dict[str, list[str]] = {}
    jobs = []
    for r in report["runs"]:
        launch = r.get("launch") or {"launcher": "local", "world_size": 1, "nnodes": 1}
        way = f"{launch['launcher']}, {launch['world_size']} rank(s)"
        if launch.get("torchrun"):
            way += (
                f" ({launch['nnodes']} node(s) x {launch['nproc_per_node']}, "
                f"{launch['backend']} under torchrun)"
            )
        ways.setdefault(way, []).append(f"{r['policy']}/seed{r['seed']}")
        if launch.get("slurm_jobs"):
            jobs.append(f"{r['policy']}/seed{r['seed']} {', '.join(launch['slurm_jobs'])}")
    out = [
        f"- Runs: {way}" + (f": {', '.join(keys)}" if len(ways) > 1 else "")
        for way, keys in ways.items()
    ]
    if jobs:
        out.append("- Slurm jobs of each run (resubmissions follow the first): " + "; ".join(jobs))
    return out


def _versions() -> dict[str, str]:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("ado", "torch", "numpy", "tokenizers"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


def write_report(
    cfg: Any,
    info: dict[str, Any],
    results: list[dict[str, Any]],
    kinds: dict[str, str],
    command: str | None = None,
    missing: Sequence[str] = (),
) -> dict[str, Any]:
    """Write ``report.json``, ``report.md``, ``metrics.jsonl`` and ``plots/*.png`` into ``cfg.out``.

    Args:
        cfg: the :class:`~ado.compare.run.CompareConfig`.
        info: the corpus' ``corpus.json``.
        results: one ``result.json`` per finished run.
        kinds: policy label → policy kind.
        command: the command line, recorded in the report.
        missing: runs (``policy/seedK``) that were asked for but did not finish.

    Returns:
        The report.
    """
    from ado.compare.plots import make_plots

    out = Path(cfg.out)
    domains = list(info["domains"])
    total = sum(d["train"]["tokens"] for d in info["domains"].values())
    natural = {d: info["domains"][d]["train"]["tokens"] / total for d in domains}
    noise = [d for d in domains if info["domains"][d].get("noise")]
    runs = []
    for r in results:
        r = dict(r)
        r["uniform_avg"] = _avg(r["heldout_loss"])
        if noise:
            r["uniform_avg_text"] = _avg(
                {d: v for d, v in r["heldout_loss"].items() if d not in noise}
            )
        r["natural_avg"] = _avg(r["heldout_loss"], natural)
        runs.append(r)
    compared = [r for r in runs if r["policy"] != "reference"]
    trained = train_domains(info)
    summary = _summary(compared, domains, trained)
    ref_runs = [r for r in runs if r["policy"] in ("reference", "natural")]
    served = [r.get("overrides") or {} for r in runs]  # what compare gave each run
    has_doremi = any("estimator.reference_losses" in o for o in served)
    scheduled = any(k in o for o in served for k in cfg.preset.ado_overrides)
    report: dict[str, Any] = {
        "version": REPORT_VERSION,
        "corpus": {
            "path": str(cfg.corpus),
            "recipe": info.get("recipe"),
            "tokenizer": info["tokenizer"],
            "python": info.get("python"),
        },
        "preset": cfg.preset.describe(),
        "tokens_per_run": cfg.preset.tokens_per_run(),
        "domains": domains,
        "train_domains": trained,
        "ood_sets": _ood_sets(compared),
        "natural_weights": natural,
        "noise_domains": noise,
        "ado_overrides": cfg.preset.ado_overrides if scheduled else {},
        "reference": {
            "policy": "natural",
            "note": (
                "final per-domain held-out losses of the natural-mix run (same model, seed and "
                "token count), trained by compare before the DoReMi run; DoReMi's excess loss is "
                "max(training-batch loss - reference, 0)"
                if has_doremi
                else "not needed (no DoReMi policy)"
            ),
            "losses": {str(r["seed"]): r["heldout_loss"] for r in ref_runs} if has_doremi else {},
        },
        "runs": runs,
        "summary": summary,
        "ado_vs_baselines": _ado_vs(summary, compared),
        "command": command,
        "missing_runs": list(missing),
        "versions": _versions(),
        "files": {"markdown": "report.md", "metrics": "metrics.jsonl", "plots": []},
    }
    report["headline"] = headline(report)
    lines = []
    for r in runs:
        folder = out / "runs" / r["policy"] / f"seed{r['seed']}"
        # steps.jsonl: the per-step log of runs trained before the run log had step records
        for path in (folder / "train.jsonl", folder / "steps.jsonl"):
            for rec in read_records(path):
                rec = {"policy": r["policy"], "seed": r["seed"], "source": path.stem, **rec}
                lines.append(json.dumps(rec) + "\n")
    atomic_write_text(out / "metrics.jsonl", "".join(lines))
    try:
        report["files"]["plots"] = make_plots(
            out, runs, domains, kinds, report["ood_sets"], train_domains=trained
        )
    except ImportError as err:
        logger.warning("no plots: %s", err)
    atomic_write_text(out / "report.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(out / "report.md", _markdown(report))
    return report
