"""PNG plots of a comparison: weights over time, held-out loss curves, ADO's fitted power laws."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["make_plots"]


def _records(path: Path) -> list[dict[str, Any]]:
    out = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def _grid(n: int) -> tuple[int, int]:
    cols = min(n, 4)
    return math.ceil(n / cols), cols


def make_plots(
    out: Path, runs: list[dict[str, Any]], domains: list[str], kinds: dict[str, str]
) -> list[str]:
    """Write ``plots/weights.png``, ``plots/heldout.png`` and (with ADO) ``plots/ado_fits.png``.

    Each policy is drawn from its first seed. Returns the paths written, relative to ``out``.

    Raises:
        ImportError: matplotlib is missing.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    first: dict[str, dict[str, Any]] = {}
    for r in runs:
        first.setdefault(r["policy"], r)
    folders = {p: out / "runs" / p / f"seed{r['seed']}" for p, r in first.items()}
    written = []
    colors = plt.get_cmap("tab10" if len(domains) <= 10 else "tab20")

    # 1. weights over time, one panel per policy
    rows, cols = _grid(len(first))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False, sharey=True)
    for ax, (policy, folder) in zip(axes.flat, folders.items(), strict=False):
        recs = [r for r in _records(folder / "train.jsonl") if r.get("event") == "train"]
        steps = [r["step"] for r in recs]
        for i, d in enumerate(domains):
            ax.plot(steps, [r.get(f"weight/{d}", np.nan) for r in recs], color=colors(i), label=d)
        ax.set_title(policy)
        ax.set_xlabel("step")
    _finish_grid(
        fig, axes, len(first), "sampling weight", min(len(domains), 6), plots / "weights.png"
    )
    written.append("plots/weights.png")

    # 2. held-out loss curves, one panel per domain plus the uniform average
    names = [*domains, "uniform_avg"]
    rows, cols = _grid(len(names))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for j, (policy, folder) in enumerate(folders.items()):
        evals = [r for r in _records(folder / "train.jsonl") if r.get("event") == "eval"]
        steps = [r["step"] for r in evals]
        for ax, d in zip(axes.flat, names, strict=False):
            ax.plot(
                steps,
                [r.get(f"loss/{d}", np.nan) for r in evals],
                marker=".",
                color=plt.get_cmap("tab10")(j % 10),
                label=policy,
            )
    for ax, d in zip(axes.flat, names, strict=False):
        ax.set_title(d)
        ax.set_xlabel("step")
    _finish_grid(
        fig, axes, len(names), "held-out loss", min(len(folders), 7), plots / "heldout.png"
    )
    written.append("plots/heldout.png")

    # 3. ADO's fitted power laws L(n) = eps + beta n^-alpha against the observed training losses
    ado = [p for p in folders if kinds.get(p) == "ado"]
    if ado:
        folder = folders[ado[0]]
        steps = _records(folder / "steps.jsonl")
        recs = [r for r in _records(folder / "train.jsonl") if r.get("event") == "train"]
        fit = next((r for r in reversed(recs) if f"eps/{domains[0]}" in r), None)
        rows, cols = _grid(len(domains))
        fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
        if steps:
            counts = np.asarray([s["counts"] for s in steps], dtype=np.float64)
            sums = np.asarray([s["loss_sums"] for s in steps], dtype=np.float64)
            n = np.cumsum(counts.sum(axis=1))
            with np.errstate(invalid="ignore", divide="ignore"):
                losses = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
            for k, (ax, d) in enumerate(zip(axes.flat, domains, strict=False)):
                ax.plot(n, losses[:, k], ".", ms=2, alpha=0.4, color="grey", label="observed")
                if fit is not None:
                    grid = np.linspace(max(n[0], 1.0), n[-1], 200)
                    eps, beta, alpha = (fit[f"{q}/{d}"] for q in ("eps", "beta", "alpha"))
                    ax.plot(
                        grid,
                        eps + beta * grid ** (-alpha),
                        color="C3",
                        label=f"fit alpha={alpha:.2f}",
                    )
                    ax.legend(fontsize=7)
                ax.set_title(d)
                ax.set_xlabel("samples trained (all domains)")
        for ax in axes.flat[len(domains) :]:
            ax.axis("off")
        title = f"{ado[0]}: last fit" + (
            f" at step {int(fit['last_fit_step'])}" if fit else " (no fit was made)"
        )
        fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(plots / "ado_fits.png", dpi=90)
        plt.close(fig)
        written.append("plots/ado_fits.png")
    return written


def _finish_grid(fig: Any, axes: Any, used: int, ylabel: str, ncol: int, path: Path) -> None:
    """Hide the unused panels, label the first, put one shared legend on top, save and close."""
    import matplotlib.pyplot as plt

    for ax in axes.flat[used:]:
        ax.axis("off")
    axes[0][0].set_ylabel(ylabel)
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="upper center", ncol=ncol, fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    fig.savefig(path, dpi=90)
    plt.close(fig)
