"""The comparison plots draw every seed: the data behind ``ado_fits.png`` and the figure itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from ado.compare.plots import fit_curves, fits_figure, make_plots
from ado.compare.report import headline
from ado.runlog import RunLogWriter, start_record, step_record
from ado.stats import StepStats

DOMAINS = ["a", "b"]


def _law(n: np.ndarray, eps: float, beta: float, alpha: float) -> np.ndarray:
    return eps + beta * n ** (-alpha)


def _write_run(folder: Path, seed: int, steps: int, fit_at: int | None) -> dict[str, float]:
    """A run log of ``steps`` steps of 3 rows of ``a`` and 1 of ``b`` (none of ``b`` on odd
    steps), losses on a known law, and (when ``fit_at``) a fit logged at that step and a later,
    different one: the plot must take the last."""
    rng = np.random.default_rng(seed)
    log = RunLogWriter(str(folder / "train.jsonl"))
    log.write(start_record(DOMAINS, [0.5, 0.5]))
    fit: dict[str, float] = {}
    seen = 0
    for t in range(steps):
        counts = np.array([3.0, 0.0 if t % 2 else 1.0])
        seen += int(counts.sum())
        losses = np.array([_law(seen, 2.0, 5.0, 0.3), _law(seen, 1.0, 3.0, 0.5)])
        losses += rng.normal(0, 0.01, 2)
        log.write(step_record(StepStats(step=t, counts=counts, loss_sums=counts * losses)))
        if fit_at is not None and t + 1 in (fit_at, fit_at + 5):
            fit = {"last_fit_step": float(t + 1)}
            for i, d in enumerate(DOMAINS):
                fit |= {f"eps/{d}": 2.0 - i + t / 100, f"beta/{d}": 5.0, f"alpha/{d}": 0.3 + i / 5}
            log.write({"event": "train", "step": t + 1, "loss": 3.0, **fit})
    log.close()
    return fit


def test_ado_fits_draw_every_seed_with_its_last_fit(tmp_path: Path) -> None:
    folders = [tmp_path / "runs" / "ado" / f"seed{s}" for s in range(3)]
    fits = [
        _write_run(folders[0], 0, 40, fit_at=20),
        _write_run(folders[1], 1, 30, fit_at=10),  # a shorter run: the x axis is its own
        _write_run(folders[2], 2, 40, fit_at=None),  # made no fit: observed, but no curve
    ]
    n, observed, grid, curves, fit_steps = fit_curves(folders, DOMAINS, points=50)

    np.testing.assert_array_equal(n, np.cumsum(np.where(np.arange(30) % 2, 3, 4)))
    assert observed.shape == (3, 30, 2)
    assert np.isnan(observed[:, 1::2, 1]).all()  # no rows of b on odd steps
    for run in observed:  # the losses logged, each domain's own
        np.testing.assert_allclose(run[0::2, 1], _law(n[0::2], 1.0, 3.0, 0.5), atol=0.05)
        np.testing.assert_allclose(run[:, 0], _law(n, 2.0, 5.0, 0.3), atol=0.05)
    np.testing.assert_array_equal(grid[[0, -1]], n[[0, -1]])
    assert len(grid) == 50
    assert curves.shape == (2, 50, 2)
    np.testing.assert_array_equal(fit_steps, [25, 15])  # the last fit of each run
    for row, fit in zip(curves, fits[:2], strict=True):
        for k, d in enumerate(DOMAINS):
            want = _law(grid, fit[f"eps/{d}"], fit[f"beta/{d}"], fit[f"alpha/{d}"])
            np.testing.assert_allclose(row[:, k], want)

    runs = [{"policy": "ado", "seed": s} for s in range(3)]
    written = make_plots(tmp_path, runs, DOMAINS, {"ado": "ado"})
    assert "plots/ado_fits.png" in written
    assert (tmp_path / "plots" / "ado_fits.png").read_bytes()[:4] == b"\x89PNG"


def test_fit_curves_of_runs_without_step_records_are_empty(tmp_path: Path) -> None:
    folder = tmp_path / "seed0"
    folder.mkdir()
    (folder / "train.jsonl").write_text("")
    n, observed, grid, curves, fit_steps = fit_curves([folder], DOMAINS)
    assert len(n) == len(grid) == len(fit_steps) == 0
    assert observed.shape[-1] == curves.shape[-1] == len(DOMAINS)


@pytest.mark.parametrize(("seeds", "band"), [(1, False), (3, True)])
def test_ado_fits_label_the_loss_and_claim_a_band_only_when_drawn(
    tmp_path: Path, seeds: int, band: bool
) -> None:
    """``ado_fits.png`` had no y label and its title claimed a band a single seed never draws."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folders = [tmp_path / f"seed{s}" for s in range(seeds)]
    for s, folder in enumerate(folders):
        _write_run(folder, s, 30, fit_at=10)
    fig = fits_figure(plt, "ado", folders, DOMAINS)
    try:
        assert fig.axes[0].get_ylabel() == "training loss (nats/token)"
        title = fig._suptitle.get_text()
        assert ("band" in title) is band, title
        shaded = [c for ax in fig.axes for c in ax.collections]
        assert bool(shaded) is band  # the band is drawn exactly when it is claimed
    finally:
        plt.close(fig)


def _report(losses: dict[str, list[float]], steps: int = 120) -> dict[str, object]:
    runs = [
        {"policy": p, "seed": s, "uniform_avg": v}
        for p, vs in losses.items()
        for s, v in enumerate(vs)
    ]
    summary = [{"policy": p, "uniform_avg_mean": float(np.mean(vs))} for p, vs in losses.items()]
    return {"runs": runs, "summary": summary, "preset": {"effective": {"steps": steps}}}


def test_the_report_says_which_policy_won_and_whether_the_run_can_tell() -> None:
    """The report's first sentence (``report.md``'s first line under the title, and the CLI's
    first line): one seed cannot tell; a paired interval that excludes 0 can."""
    one = headline(_report({"natural": [3.10], "ado": [3.05]}))
    assert one.startswith("`ado` had the lowest uniform-average held-out loss (3.0500, 0.0500 ")
    assert "this run cannot tell" in one
    assert "1 seed per policy and 120 steps" in one
    clear = headline(_report({"natural": [3.10, 3.20, 3.15], "ado": [3.00, 3.11, 3.04]}))
    assert "`ado` had the lowest" in clear
    assert "this run can tell: over 3 seeds the paired 95 % interval" in clear
    assert "excludes 0" in clear
    noisy = headline(_report({"natural": [3.10, 3.00, 3.15], "ado": [3.00, 3.12, 3.05]}))
    assert "cannot tell it from `natural`" in noisy
    assert "contains 0" in noisy
