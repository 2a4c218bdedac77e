"""Per-step overhead of the ADO policy (``policies/ado.yaml``), K = 22; and its scaling in K.

The preset's schedule is moved earlier (ignore_steps=0, start_step=500) so that a fit exists at
every checkpoint. Feeds a synthetic stream step by step up to ``--max-steps`` (default 10^6; every
step, refits included, so the state at each checkpoint is that of a real run) and, at t = 10^3,
10^5 and 10^6, times ``policy.update`` on the next ``--samples`` steps that do not refit: median and
p90 in µs, plus the resident memory. Also times the Rust estimator's ``update`` alone (part of the
policy's cost).

    python benchmarks/policy_overhead.py                 # 2-7 min on 2 cores (10^6 steps)
    python benchmarks/policy_overhead.py --max-steps 100000

``--scaling`` instead measures, for K = 10^3, 10^4, 10^5 domains (``--ks``): ``load_policy``
(construction, with the linear duplicate-name check), an ADO update that does not refit, and one
that refits all K domains (schedule ``ignore_steps=0, start_step=10, update_interval=5,
min_points=5, subsample=1, window=5``), each also per domain and relative to the smallest K (a
ratio near 1 is linear in K)::

    python benchmarks/policy_overhead.py --scaling --ks 1000,10000,100000
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
from ado import StepStats, load_policy
from ado.policy import ADO

ROOT = Path(__file__).resolve().parents[1]


def rss_mib() -> float:
    """Current resident set size (Linux /proc), else the peak."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * resource.getpagesize() / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def scaling(ks: list[int], batch_per_domain: int = 4) -> None:
    """Construction and update cost against K; one line per K."""
    print(
        f"{'K':>7} {'build s':>9} {'us/dom':>7} {'x':>5} {'update s':>9} {'us/dom':>7} {'x':>5} "
        f"{'refit s':>9} {'us/dom':>7} {'x':>5}"
    )
    base: list[float] | None = None
    overrides = {"ignore_steps": 0, "start_step": 10, "update_interval": 5}
    overrides |= {"min_points": 5, "subsample": 1, "window": 5}
    for k in ks:
        names = [f"domain-{i:06d}" for i in range(k)]
        rng = np.random.default_rng(k)
        mu = rng.dirichlet(np.ones(k))
        begin = time.perf_counter()
        policy = load_policy("ado", domains=names, prior=mu, overrides=overrides)
        build = time.perf_counter() - begin
        counts_all = np.maximum(rng.multinomial(batch_per_domain * k, mu, size=11), 1.0)
        update = 0.0
        for t in range(11):
            c = counts_all[t]
            stats = StepStats(step=t, counts=c, loss_sums=c * (2.0 + 3.0 / (t + 1.0) ** 0.3))
            begin = time.perf_counter()
            policy.update(stats)
            took = time.perf_counter() - begin
            if t == 9:
                update = took  # the last step before the first refit (t = 10)
        refit = took
        assert isinstance(policy, ADO)
        assert policy.estimator.num_fits == 1
        per = [build / k * 1e6, update / k * 1e6, refit / k * 1e6]
        base = base or per
        cols = " ".join(
            f"{s:>9.3f} {u:>7.1f} {u / b:>5.2f}"
            for s, u, b in zip((build, update, refit), per, base, strict=True)
        )
        print(f"{k:>7} {cols}", flush=True)


def main() -> None:
    """Run the benchmark and print one line per checkpoint."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", type=int, default=22)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--max-steps", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scaling", action="store_true", help="construction/update against K")
    parser.add_argument("--ks", default="1000,10000,100000", help="K values for --scaling")
    args = parser.parse_args()
    if args.scaling:
        scaling([int(x) for x in args.ks.split(",")])
        return

    k, batch = args.domains, args.batch
    rng = np.random.default_rng(args.seed)
    mu = rng.dirichlet(np.ones(k))
    # the preset, with the first fit moved before the first checkpoint (t = 10^3)
    policy = load_policy(
        ROOT / "policies" / "ado.yaml",
        domains=[f"d{i}" for i in range(k)],
        prior=mu,
        overrides={"ignore_steps": 0, "start_step": 500, "min_points": 50},
    )
    assert isinstance(policy, ADO)
    interval = policy.config.update_interval
    eps = rng.uniform(1.5, 3.0, k)
    beta = rng.uniform(5.0, 30.0, k)
    alpha = rng.uniform(0.2, 0.5, k)
    pool = 1024  # pre-drawn batches, reused cyclically (cheap stream generation)
    counts_pool = rng.multinomial(batch, mu, size=pool).astype(np.float64)
    noise_pool = np.exp(0.05 * rng.standard_normal((pool, k)))

    def stats(t: int) -> StepStats:
        c = counts_pool[t % pool]
        mean = (eps + beta * ((t + 1.0) * batch) ** -alpha) * noise_pool[t % pool]
        return StepStats(step=t, counts=c, loss_sums=c * mean)

    checkpoints = [c for c in (1_000, 100_000, 1_000_000) if c <= args.max_steps]
    print(
        f"ADO update (policies/ado.yaml), K={k}, batch={batch}; median/p90 over "
        f"{args.samples} non-refit steps"
    )
    print(
        f"{'t':>9} {'median us':>10} {'p90 us':>8} {'rust est. us':>13} {'RSS MiB':>8} "
        f"{'fit pts':>8} {'last fit ms':>12}"
    )
    t = 0
    started = time.perf_counter()
    for target in checkpoints:
        while t < target:
            policy.update(stats(t))
            t += 1
        samples: list[int] = []
        raw: list[int] = []
        while len(samples) < args.samples:
            s = stats(t)
            if t % interval == 0:
                policy.update(s)  # a refit step: not timed
            else:
                begin = time.perf_counter_ns()
                policy.update(s)
                samples.append(time.perf_counter_ns() - begin)
            t += 1
        # the Rust estimator alone, on a throwaway copy of the same state
        est = policy.estimator._est
        losses = np.full(k, 2.0)
        x = np.full(k, (t + 1.0) * batch)
        cfg = policy.config
        probe = type(est)(
            k,
            ignore_steps=cfg.ignore_steps,
            subsample=cfg.subsample,
            window=cfg.window,
            order=cfg.order,
            max_points=cfg.max_points,
        )
        probe.load_state_dict(est.state_dict())
        for j in range(args.samples):
            begin = time.perf_counter_ns()
            probe.update(t + j, losses, x, 2.0)
            raw.append(time.perf_counter_ns() - begin)
        med = float(np.median(samples)) / 1e3
        p90 = float(np.percentile(samples, 90)) / 1e3
        rust = float(np.median(raw)) / 1e3
        pts = int(policy.estimator._est.num_points().max())
        print(
            f"{target:>9} {med:>10.1f} {p90:>8.1f} {rust:>13.1f} {rss_mib():>8.1f} {pts:>8} "
            f"{policy.estimator.last_fit_ms:>12.1f}",
            flush=True,
        )
    print(f"total wall time {time.perf_counter() - started:.0f} s for {t} steps")


if __name__ == "__main__":
    main()
