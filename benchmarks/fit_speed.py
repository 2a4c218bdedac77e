"""Fitter speed and quality: ado's deterministic global fitter vs a 512-start L-BFGS-B (scipy).

Fits K = 22 domains x 5,900 points (the reference's size at step 59,000: rows 1000, 1010, ...,
59,990 of a smoothed loss history), reports the median wall time of the whole refit over repeated
runs, the time per domain, and compares objectives with the reference strategy (the 8x8x8 start grid
of L-BFGS-B on the same objective), which is timed on a few domains only because it is slow.

Then the per-domain cost of a refit against the points per curve (K = 1,000 curves) and against
the number of curves K (10 ... 10^5 curves of 11 points), for both configurations: wall time per
domain with all cores, and CPU time per domain (the sum over threads: what a refit costs a loaded
machine), each the median of refits repeated for 0.25 s (one refit where it takes longer).

Run: ``python benchmarks/fit_speed.py [--runs 15] [--baseline-domains 2] [--max-k 100000]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from ado.estimators import FitConfig, fit_power_laws
from ado.estimators.baseline import multistart_fit
from scipy.signal import savgol_filter

K, STEPS, BATCH = 22, 60_000, 256


def make_histories(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """22 noisy per-domain loss histories, smoothed and subsampled like the reference (SG 101/3)."""
    rng = np.random.default_rng(seed)
    steps = np.arange(STEPS)
    n_all = (steps + 1.0) * BATCH
    eps = rng.uniform(0.8, 3.0, K)
    beta = rng.uniform(5.0, 60.0, K)
    alpha = rng.uniform(0.15, 0.5, K)
    raw = (eps[:, None] + beta[:, None] * n_all[None, :] ** -alpha[:, None]) * np.exp(
        0.05 * rng.standard_normal((K, STEPS))
    )
    smooth = savgol_filter(raw, 101, 3, axis=1)
    rows = np.arange(1000, 59_991, 10)
    return n_all[rows], np.ascontiguousarray(smooth[:, rows])


def random_curves(k: int, points: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``k`` noisy curves (1 % log-normal noise) of ``points`` points on steps 1,000 ... 60,000."""
    rng = np.random.default_rng(seed)
    n = (np.linspace(1000, 60_000, points).round() + 1.0) * BATCH
    eps = rng.uniform(0.8, 3.0, k)
    beta = rng.uniform(5.0, 60.0, k)
    alpha = rng.uniform(0.15, 0.5, k)
    law = eps[:, None] + beta[:, None] * n[None, :] ** -alpha[:, None]
    return n, law * np.exp(0.01 * rng.standard_normal((k, points)))


def per_domain_cost(
    n: np.ndarray, losses: np.ndarray, config: FitConfig, budget_s: float = 0.25
) -> tuple[float, float]:
    """(wall, CPU) seconds per domain of a refit of all rows of ``losses``: the medians of refits
    repeated until ``budget_s`` has passed (one refit when it takes longer). A refit of a few
    domains takes a millisecond, and one timing of it is at the mercy of the scheduler on a
    shared machine (one descheduled thread doubles it)."""
    fit_power_laws(n, losses[:2], config)  # warm-up (thread pool)
    walls, cpus = [], []
    start = time.perf_counter()
    while not walls or time.perf_counter() - start < budget_s:
        w0, c0 = time.perf_counter(), time.process_time()
        fit_power_laws(n, losses, config)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return float(np.median(walls)) / len(losses), float(np.median(cpus)) / len(losses)


def cost_tables(max_k: int) -> None:
    """Print the per-domain cost against points and against K."""
    configs = (("reference", FitConfig.reference()), ("default", FitConfig()))
    print(
        "\nper-domain cost against points per curve (K = 1,000; 200 for >= 500 points;"
        " medians of refits repeated for 0.25 s):"
    )
    print(f"{'points':>7} {'config':>10} {'wall us/domain':>15} {'CPU us/domain':>14}")
    for points in (5, 11, 32, 64, 128, 500, 5900):
        k = 1000 if points < 500 else 200
        n, losses = random_curves(k, points)
        for name, config in configs:
            wall, cpu = per_domain_cost(n, losses, config)
            print(f"{points:>7} {name:>10} {wall * 1e6:>15.1f} {cpu * 1e6:>14.1f}")
    print("\nper-domain cost against K (curves of 11 points; medians as above):")
    print(f"{'K':>7} {'config':>10} {'refit s':>9} {'wall us/domain':>15} {'CPU us/domain':>14}")
    for k in (10, 100, 1000, 10_000, 100_000):
        if k > max_k:
            break
        n, losses = random_curves(k, 11, seed=1)
        for name, config in configs:
            wall, cpu = per_domain_cost(n, losses, config)
            print(f"{k:>7} {name:>10} {wall * k:>9.3f} {wall * 1e6:>15.1f} {cpu * 1e6:>14.1f}")


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--baseline-domains", type=int, default=2)
    parser.add_argument("--max-k", type=int, default=100_000, help="largest K of the K table")
    parser.add_argument("--skip-tables", action="store_true", help="only the K = 22 figures")
    args = parser.parse_args()
    print(f"cores usable: {len(os.sched_getaffinity(0))}; load average {os.getloadavg()}")

    n, losses = make_histories()
    print(f"data: K={losses.shape[0]} domains x {losses.shape[1]} points")
    for name, config in (("reference objective", FitConfig.reference()), ("default", FitConfig())):
        fit_power_laws(n, losses, config)  # warm-up (thread pool)
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            fit = fit_power_laws(n, losses, config)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        print(
            f"[{name}] ado refit of all {K} domains: median {med * 1e3:.2f} ms over {args.runs} "
            f"runs (min {min(times) * 1e3:.2f} ms) = {med / K * 1e6:.0f} us per domain; "
            f"Newton iterations per domain: median {int(np.median(fit.iterations))}"
        )
        base_times, worse = [], 0
        for k in range(args.baseline_domains):
            t0 = time.perf_counter()
            base = multistart_fit(n, losses[k], config)
            base_times.append(time.perf_counter() - t0)
            rel = (fit.objective[k] - base.objective) / abs(base.objective)
            worse += fit.objective[k] > base.objective + 1e-9 * abs(base.objective)
            print(
                f"  domain {k}: objective ado {fit.objective[k]:.12g} vs 512-start L-BFGS-B "
                f"{base.objective:.12g} (relative difference {rel:+.2e}); "
                f"baseline took {base_times[-1]:.1f} s"
            )
        if not base_times:
            continue
        per_domain = statistics.mean(base_times)
        print(
            f"  baseline: {per_domain:.1f} s per domain -> speed-up per domain "
            f"{per_domain / (med / K):,.0f}x; domains where ado is worse: {worse}/{len(base_times)}"
        )
    if not args.skip_tables:
        cost_tables(args.max_k)


if __name__ == "__main__":
    main()
