"""Seeded synthetic loss curves shared by the fitter tests and benchmarks."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["CASES", "CURVE_KINDS", "curve_checksum", "make_curve"]

F64 = npt.NDArray[np.float64]

#: Each kind: (eps, beta, alpha, relative noise, points).
CURVE_KINDS: dict[str, tuple[float, float, float, float, int]] = {
    "clean": (1.8, 30.0, 0.3, 0.0, 120),
    "noisy": (2.1, 12.0, 0.25, 0.03, 200),
    "very_noisy": (1.5, 8.0, 0.35, 0.08, 250),
    "near_flat": (3.0, 0.05, 0.1, 0.005, 100),
    "eps_below_1_65": (0.9, 6.0, 0.3, 0.01, 150),
    "byte_level": (0.6, 2.0, 0.2, 0.01, 150),
    "few_points": (2.0, 20.0, 0.4, 0.02, 5),
    "three_points": (1.7, 9.0, 0.3, 0.0, 3),
    "steep": (1.2, 300.0, 0.7, 0.02, 120),
    "large_eps": (6.0, 40.0, 0.2, 0.01, 120),
}


def make_curve(kind: str, seed: int) -> tuple[F64, F64]:
    """``(n, loss)``: n = (t+1)*B on a subsampled step grid, loss = law * lognormal noise."""
    eps, beta, alpha, noise, points = CURVE_KINDS[kind]
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.8, 1.25)
    steps = np.linspace(1000, 60000, points).round()
    n = (steps + 1.0) * 256.0
    law = eps * scale + beta * scale * n**-alpha
    return n, law * np.exp(noise * rng.standard_normal(points))


#: 20 seeded curves for the reference objective (the one the 512-start grid was made for), 10 for
#: the default objective.
CASES: list[tuple[str, str, int]] = [
    ("reference", kind, seed) for kind in CURVE_KINDS for seed in (0, 1)
] + [("default", kind, 2) for kind in CURVE_KINDS]


def curve_checksum(n: F64, losses: F64) -> str:
    """A digest of a curve, so stored baseline values are only used for the very same data."""
    import hashlib

    return hashlib.sha256(n.tobytes() + losses.tobytes()).hexdigest()[:16]
