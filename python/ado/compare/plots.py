"""PNG plots of a comparison: weights over time, held-out loss curves, ADO's fitted power laws."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ado._deps import require
from ado.runlog import read_records

__all__ = ["fit_curves", "fits_figure", "heldout_panels", "make_plots"]


def _over_seeds(
    folders: list[Path], event: str, keys: list[str]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """``(steps, values[seed, step, key])`` of ``event`` records, on the steps all seeds logged."""
    per_seed = []
    for folder in folders:
        recs = [r for r in read_records(folder / "train.jsonl") if r.get("event") == event]
        per_seed.append({r["step"]: [r.get(k, np.nan) for k in keys] for r in recs})
    common = sorted(set.intersection(*(set(p) for p in per_seed))) if per_seed else []
    values = np.asarray([[p[t] for t in common] for p in per_seed], dtype=np.float64)
    return np.asarray(common, dtype=np.float64), values.reshape(
        len(folders), len(common), len(keys)
    )


def _band(ax: Any, steps: Any, values: Any, color: Any, label: str, marker: str = "") -> None:
    """Mean over seeds (rows of ``values``) as a line, min to max as a shaded band."""
    if values.shape[1] == 0:
        return
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        mean = np.nanmean(values, axis=0)
        ax.plot(steps, mean, color=color, label=label, marker=marker)
        if values.shape[0] > 1:
            lo, hi = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
            ax.fill_between(steps, lo, hi, color=color, alpha=0.2, linewidth=0)


def _grid(n: int) -> tuple[int, int]:
    cols = min(n, 4)
    return math.ceil(n / cols), cols


def heldout_panels(domains: Sequence[str], ood_sets: Sequence[str]) -> list[str]:
    """Eval-record keys (without ``loss/``) of the held-out figure's panels, in order.

    One panel per domain, the uniform average, then one per out-of-distribution set.
    """
    return [*domains, "uniform_avg", *(f"ood/{s}" for s in ood_sets)]


#: Above this many training domains the weights are a heatmap, not lines.
MAX_LINE_DOMAINS = 20


def weights_heatmap(plt: Any, seeds: dict[str, list[Path]], domains: list[str], path: Path) -> None:
    """One heatmap per policy of its sampling weights (rows: domains, sorted by their mean
    weight; columns: steps; mean over seeds; log colour scale)."""
    from matplotlib.colors import LogNorm

    fig, axes = plt.subplots(
        len(seeds), 1, figsize=(10, 3.2 * len(seeds)), squeeze=False, constrained_layout=True
    )
    for ax, (policy, fs) in zip(axes[:, 0], seeds.items(), strict=True):
        steps, w = _over_seeds(fs, "train", [f"weight/{d}" for d in domains])
        mean = np.nanmean(w, axis=0).T if w.size else np.zeros((len(domains), 1))
        order = np.argsort(-np.nanmean(mean, axis=1), kind="stable")
        floor = max(float(np.nanmin(mean[mean > 0])) if np.any(mean > 0) else 1e-6, 1e-6)
        extent = (float(steps[0]), float(steps[-1]), len(domains), 0) if len(steps) else None
        im = ax.imshow(
            np.clip(mean[order], floor, None),
            aspect="auto",
            interpolation="nearest",
            norm=LogNorm(vmin=floor, vmax=float(np.nanmax(mean)) if mean.size else 1.0),
            extent=extent,
            cmap="viridis",
        )
        ax.set_title(
            f"{policy}: sampling weight of {len(domains)} domains "
            f"({len(fs)} seed{'s' if len(fs) > 1 else ''}, mean)"
        )
        ax.set_xlabel("step")
        ax.set_ylabel("domain (by mean weight)")
        fig.colorbar(im, ax=ax, label="weight")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def make_plots(
    out: Path,
    runs: list[dict[str, Any]],
    domains: list[str],
    kinds: dict[str, str],
    ood_sets: Sequence[str] = (),
    *,
    train_domains: Sequence[str] | None = None,
) -> list[str]:
    """Write ``plots/weights.png``, ``plots/heldout.png`` and (with ADO) ``plots/ado_fits.png``.

    Weights and held-out losses show every seed (mean line, min-max band); the held-out figure
    has a panel per domain, the uniform average and a panel per out-of-distribution set (from
    the runs' eval records: a set scored only after training, from the final checkpoint, has
    no curve). The fitted power laws are those of every seed of the first ADO policy. Returns
    the paths written, relative to ``out``.

    ``train_domains`` (default ``domains``) are the domains the runs sampled from (the clusters of
    a corpus made by ``ado corpus cluster``, whose held-out ``domains`` are the source's). Above
    :data:`MAX_LINE_DOMAINS` of them the weights are drawn as a heatmap per policy (domains x
    steps, mean over seeds) and there is no ``ado_fits.png``.

    Raises:
        MissingDependencyError: matplotlib is missing (``pip install 'ado[plot]'``).
    """
    require("matplotlib", "plot", "the comparison plots").use("Agg")
    plt = require("matplotlib.pyplot", "plot", "the comparison plots")

    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    seeds: dict[str, list[Path]] = {}
    for r in runs:
        seeds.setdefault(r["policy"], []).append(out / "runs" / r["policy"] / f"seed{r['seed']}")
    written = []
    colors = plt.get_cmap("tab10" if len(domains) <= 10 else "tab20")

    trained = list(train_domains) if train_domains is not None else list(domains)
    # 1. weights over time, one panel per policy: mean over seeds, band from min to max (a
    #    heatmap of the mean when there are too many domains for lines)
    rows, cols = _grid(len(seeds))
    if len(trained) > MAX_LINE_DOMAINS:
        weights_heatmap(plt, seeds, trained, plots / "weights.png")
    else:
        fig, axes = plt.subplots(
            rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False, sharey=True
        )
        for ax, (policy, fs) in zip(axes.flat, seeds.items(), strict=False):
            steps, w = _over_seeds(fs, "train", [f"weight/{d}" for d in trained])
            for i, d in enumerate(trained):
                _band(ax, steps, w[:, :, i], colors(i), d)
            ax.set_title(f"{policy} ({len(fs)} seed{'s' if len(fs) > 1 else ''})")
            ax.set_xlabel("step")
        _finish_grid(
            fig, axes, len(seeds), "sampling weight", min(len(trained), 6), plots / "weights.png"
        )
    written.append("plots/weights.png")

    # 2. held-out loss curves, one panel per domain, the uniform average and each
    #    out-of-distribution set (mean and band)
    names = heldout_panels(domains, ood_sets)
    rows, cols = _grid(len(names))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for j, (policy, fs) in enumerate(seeds.items()):
        steps, losses = _over_seeds(fs, "eval", [f"loss/{d}" for d in names])
        for i, ax in enumerate(axes.flat[: len(names)]):
            _band(ax, steps, losses[:, :, i], plt.get_cmap("tab10")(j % 10), policy, marker=".")
    for ax, d in zip(axes.flat, names, strict=False):
        ax.set_title(d.replace("ood/", "out-of-distribution: "))
        ax.set_xlabel("step")
    _finish_grid(fig, axes, len(names), "held-out loss", min(len(seeds), 7), plots / "heldout.png")
    written.append("plots/heldout.png")

    # 3. ADO's fitted power laws L(n) = eps + beta n^-alpha against the observed training
    #    losses, every seed of the first ADO policy (mean and band)
    ado = [p for p in seeds if kinds.get(p) == "ado"]
    if ado and len(trained) <= MAX_LINE_DOMAINS:
        _ado_fits(plt, ado[0], seeds[ado[0]], trained, plots / "ado_fits.png")
        written.append("plots/ado_fits.png")
    return written


def fit_curves(
    folders: list[Path], domains: list[str], points: int = 200
) -> tuple[npt.NDArray[np.float64], ...]:
    """What ``ado_fits.png`` draws, from the run logs of ``folders`` (the seeds of one ADO policy).

    Returns ``(n, observed, grid, curves, fit_steps)``: ``n[step]``, samples trained after each
    step (the shortest run's); ``observed[seed, step, domain]``, the training loss of each
    domain's rows at each step (NaN where it had none); ``grid[points]``, samples from ``n[0]`` to
    ``n[-1]``; ``curves[fit, points, domain]``, each seed's last fitted law ``eps + beta *
    grid^-alpha`` (seeds that made no fit have no row); ``fit_steps[fit]``, the step of that fit.
    """
    observed, curves, steps, n = [], [], [], None
    fits = []
    for folder in folders:
        log = read_records(folder / "train.jsonl")
        # runs logged before the run log had step records kept them in steps.jsonl
        stream = [r for r in log if r.get("event") == "step"] or read_records(
            folder / "steps.jsonl"
        )
        if not stream:
            continue
        counts = np.asarray([s["counts"] for s in stream], dtype=np.float64)
        sums = np.asarray([s["loss_sums"] for s in stream], dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            observed.append(np.where(counts > 0, sums / np.maximum(counts, 1), np.nan))
        seen = np.cumsum(counts.sum(axis=1))
        n = seen if n is None or len(seen) < len(n) else n
        recs = [r for r in log if r.get("event") == "train"]
        fit = next((r for r in reversed(recs) if f"eps/{domains[0]}" in r), None)
        if fit is not None:
            fits.append(fit)
    if n is None:
        empty = np.zeros(0)
        return empty, np.zeros((0, 0, len(domains))), empty, np.zeros((0, 0, len(domains))), empty
    grid = np.linspace(max(n[0], 1.0), n[-1], points)
    for fit in fits:
        eps, beta, alpha = (
            np.asarray([fit[f"{q}/{d}"] for d in domains], dtype=np.float64)
            for q in ("eps", "beta", "alpha")
        )
        curves.append(eps + beta * grid[:, None] ** (-alpha))
        steps.append(float(fit["last_fit_step"]))
    return (
        n,
        np.stack([o[: len(n)] for o in observed]),
        grid,
        np.asarray(curves, dtype=np.float64).reshape(len(fits), len(grid), len(domains)),
        np.asarray(steps, dtype=np.float64),
    )


def _ado_fits(plt: Any, policy: str, folders: list[Path], domains: list[str], path: Path) -> None:
    """Write :func:`fits_figure` to ``path``."""
    fig = fits_figure(plt, policy, folders, domains)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def fits_figure(plt: Any, policy: str, folders: list[Path], domains: list[str]) -> Any:
    """``ado_fits.png``: one panel per domain, the observed training loss (mean over seeds,
    grey) and each seed's last fitted power law against samples trained: one curve, or with
    several seeds their mean and a min-max band (the title says which)."""
    n, observed, grid, curves, fit_steps = fit_curves(folders, domains)
    rows, cols = _grid(len(domains))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    several = len(curves) > 1
    if len(n):
        for k, (ax, d) in enumerate(zip(axes.flat, domains, strict=False)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a step no seed saw
                mean = np.nanmean(observed[:, :, k], axis=0)
            ax.plot(n, mean, ".", ms=2, alpha=0.4, color="grey", label="observed")
            if np.isfinite(mean).any():  # the observed range: a fit's extrapolation to n -> 0
                lo, hi = np.nanmin(mean), np.nanmax(mean)  # would squash the curve
                ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo) + 1e-9)
            if len(curves):
                label = "fitted power law" + (" (mean, min-max band)" if several else "")
                _band(ax, grid, curves[:, :, k], "C3", label)
                ax.legend(fontsize=7)
            ax.set_title(d)
            ax.set_xlabel("samples trained (all domains)")
            if k % cols == 0:
                ax.set_ylabel("training loss (nats/token)")
    for ax in axes.flat[len(domains) :]:
        ax.axis("off")
    if len(fit_steps):
        when = f"last fit at step {', '.join(str(int(t)) for t in sorted(set(fit_steps)))}"
    else:
        when = "no fit was made"
    runs = f"{len(folders)} seed{'s' if len(folders) > 1 else ''}"
    if several:
        runs += f", {len(curves)} fits: mean and min-max band"
    fig.suptitle(f"{policy}: {when}; {runs}")
    fig.tight_layout()
    return fig


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
