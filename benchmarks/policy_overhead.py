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

``--per-k`` measures the preset exactly as shipped (``policies/ado.yaml``, no overrides; its first
refit is at t = 2000) at ``--batch`` rows a step (512 here) for K = 10, 100, 1,000, 10,000
(``--ks``): it feeds steps 0..2000 (the refit at 2000 included), then times ``--samples`` updates
that do not refit. Per K it prints the median, mean and p95 update (wall time) and its mean CPU
time (``cpu us``: this thread's, without the waits for a core on a shared machine) in µs, the
median for the ``natural`` policy on the same statistics (the baseline: the policy contract's own
cost) and their ratio, the Rust estimator's ``update`` alone, and the state:
``json.dumps(policy.state_dict())`` bytes per domain after the 2001 steps, the estimator's part of
it (the arrays that grow with steps), that part's bound at any step
(``PowerLawEstimator.state_bytes_bound``, every domain holding ``cap`` = ``max_points`` after
``point_budget`` fit points), and the seconds to save (``state_dict`` + ``json.dumps``) and to load
(``json.loads`` + ``load_state_dict``) it. Each K also checks that a policy resumed from the state
gives bitwise the same weights for the next steps::

    python benchmarks/policy_overhead.py --per-k --batch 512     # ~1-3 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
from ado import StepStats, load_policy
from ado.policy import ADO, Policy

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


def _stream(
    k: int, batch: int, seed: int, pool: int = 64
) -> tuple[npt.NDArray[np.float64], Callable[[int], StepStats]]:
    """The prior and a synthetic stream of power-law losses (``batch`` rows a step; ``pool``
    pre-drawn batches reused cyclically, for cheap stream generation)."""
    rng = np.random.default_rng(seed)
    mu = rng.dirichlet(np.ones(k))
    eps, beta, alpha = rng.uniform(1.5, 3.0, k), rng.uniform(5.0, 30.0, k), rng.uniform(0.2, 0.5, k)
    counts_pool = rng.multinomial(batch, mu, size=pool).astype(np.float64)
    noise_pool = np.exp(0.05 * rng.standard_normal((pool, k)))

    def stats(t: int) -> StepStats:
        c = counts_pool[t % pool]
        mean = (eps + beta * ((t + 1.0) * batch) ** -alpha) * noise_pool[t % pool]
        return StepStats(step=t, counts=c, loss_sums=c * mean)

    return mu, stats


def _update_us(policy: Policy, batch: list[StepStats]) -> tuple[float, float, float, float]:
    """Median, mean and p95 of ``policy.update``'s wall time over ``batch``, and the mean of its
    CPU time (this thread's: on a shared machine the wall time also counts the waits for a
    core), in µs. The mean and p95 count the steps that smooth every domain's newest fit point,
    one in ``subsample``."""
    times, cpu = [], 0
    for s in batch:
        begin, begin_cpu = time.perf_counter_ns(), time.thread_time_ns()
        policy.update(s)
        times.append(time.perf_counter_ns() - begin)
        cpu += time.thread_time_ns() - begin_cpu
    return (
        float(np.median(times)) / 1e3,
        float(np.mean(times)) / 1e3,
        float(np.percentile(times, 95)) / 1e3,
        cpu / len(batch) / 1e3,
    )


def per_k(ks: list[int], batch: int, samples: int, seed: int) -> None:
    """The shipped preset's per-step update and state against K; one line per K."""
    preset = ROOT / "policies" / "ado.yaml"
    first_fit = 2000  # the preset's first refit (start_step 2000, update_interval 1000)
    print(
        f"ADO update (policies/ado.yaml as shipped), batch={batch}; median over {samples} "
        f"non-refit steps after t={first_fit}; state after {first_fit + 1} steps"
    )
    print(
        f"{'K':>6} {'ado us':>8} {'mean us':>8} {'p95 us':>8} {'cpu us':>8} {'natural us':>10} "
        f"{'x nat':>6} "
        f"{'rust us':>8} {'us/dom':>7} {'state B/dom':>11} {'est B/dom':>9} {'bound':>9} "
        f"{'cap':>6} {'save s':>7} {'load s':>7} {'resume':>7}"
    )
    for k in ks:
        names = [f"domain-{i:06d}" for i in range(k)]
        mu, stats = _stream(k, batch, seed)
        policy = load_policy(preset, domains=names, prior=mu)
        natural = load_policy("natural", domains=names, prior=mu)
        assert isinstance(policy, ADO)
        for t in range(first_fit + 1):
            policy.update(stats(t))
        assert policy.estimator.num_fits == 1, "the preset's first refit did not happen"
        begin = time.perf_counter()
        text = json.dumps(policy.state_dict())
        save = time.perf_counter() - begin
        est_bytes = len(json.dumps(json.loads(text)["state"]["estimator"]["estimator"])) / k
        begin = time.perf_counter()
        resumed = load_policy(preset, domains=names, prior=mu)
        resumed.load_state_dict(json.loads(text))
        load = time.perf_counter() - begin
        timed = [stats(t) for t in range(first_fit + 1, first_fit + 1 + samples)]
        ado_us, ado_mean, ado_p95, ado_cpu = _update_us(policy, timed)
        natural_us = _update_us(natural, timed)[0]
        for s in timed:
            resumed.update(s)
        resumed_ok = np.array_equal(resumed.weights, policy.weights)
        # the Rust estimator alone, on a copy of the state
        probe = policy.estimator._est.copy()
        losses, x = np.full(k, 2.0), np.full(k, 1.0)
        raw = []
        for j in range(samples):
            x.fill((first_fit + 1.0 + samples + j) * batch)
            begin = time.perf_counter_ns()
            probe.update(first_fit + 1 + samples + j, losses, x, 2.0)
            raw.append(time.perf_counter_ns() - begin)
        rust_us = float(np.median(raw)) / 1e3
        bound = (policy.estimator._est.state_bytes_bound() or float("nan")) / k
        cap = policy.estimator._est.config.max_points
        print(
            f"{k:>6} {ado_us:>8.1f} {ado_mean:>8.1f} {ado_p95:>8.1f} {ado_cpu:>8.1f} "
            f"{natural_us:>10.1f} "
            f"{ado_us / natural_us:>6.1f} {rust_us:>8.1f} {ado_us / k:>7.3f} "
            f"{len(text) / k:>11.0f} {est_bytes:>9.0f} {bound:>9.0f} {cap!s:>6} "
            f"{save:>7.2f} {load:>7.2f} {'bitwise' if resumed_ok else 'DIFFERS':>7}",
            flush=True,
        )


def main() -> None:
    """Run the benchmark and print one line per checkpoint."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", type=int, default=22)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--max-steps", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=None, help="timed steps (2000; --per-k 300)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scaling", action="store_true", help="construction/update against K")
    parser.add_argument("--ks", default=None, help="K values for --scaling / --per-k")
    parser.add_argument("--per-k", action="store_true", help="the preset's update and state vs K")
    args = parser.parse_args()
    if args.per_k:
        ks = [int(x) for x in (args.ks or "10,100,1000,10000").split(",")]
        per_k(ks, args.batch, args.samples or 300, args.seed)
        return
    if args.scaling:
        scaling([int(x) for x in (args.ks or "1000,10000,100000").split(",")])
        return

    k, batch = args.domains, args.batch
    mu, stats = _stream(k, batch, args.seed, pool=1024)
    # the preset, with the first fit moved before the first checkpoint (t = 10^3)
    policy = load_policy(
        ROOT / "policies" / "ado.yaml",
        domains=[f"d{i}" for i in range(k)],
        prior=mu,
        overrides={"ignore_steps": 0, "start_step": 500, "min_points": 50},
    )
    assert isinstance(policy, ADO)
    interval = policy.config.update_interval

    checkpoints = [c for c in (1_000, 100_000, 1_000_000) if c <= args.max_steps]
    print(
        f"ADO update (policies/ado.yaml), K={k}, batch={batch}; median/p90 over "
        f"{args.samples or 2000} non-refit steps"
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
        while len(samples) < (args.samples or 2000):
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
        probe = est.copy()
        for j in range(args.samples or 2000):
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
