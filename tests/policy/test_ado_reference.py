"""ADO against the reference: the recorded reference stream, and a step-by-step re-statement."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from ado import StepStats, load_policy
from ado.policy import ADO
from helpers import POLICIES, TESTDATA
from scipy.signal import savgol_filter

STREAM = TESTDATA / "ado_reference_stream.npz"

F = npt.NDArray[np.float64]


def _load() -> dict[str, Any]:
    with np.load(STREAM) as data:
        return {k: data[k] for k in data.files}


def _stats(d: dict[str, Any], t: int) -> StepStats:
    k = d["mu"].shape[0]
    ids = d["task_ids"][t]
    return StepStats(
        step=t,
        counts=np.bincount(ids, minlength=k),
        loss_sums=np.bincount(ids, weights=d["losses"][t], minlength=k),
    )


def _reference_policy(d: dict[str, Any], **overrides: Any) -> ADO:
    schedule = {
        "ignore_steps": int(d["ignore_steps"]),
        "start_step": int(d["start_step"]),
        "update_interval": int(d["update_interval"]),
    }
    policy = load_policy(
        POLICIES / "ado-reference.yaml",
        domains=[f"d{k}" for k in range(d["mu"].shape[0])],
        prior=d["mu"],
        overrides={**schedule, **overrides},
    )
    assert isinstance(policy, ADO)
    return policy


def restate(
    task_ids: npt.NDArray[np.int32], mu: F, fits: dict[int, tuple[Any, Any, Any]], start_step: int
) -> F:
    """The reference rules (see ado.policy.ado), written out step by step, given the fits
    ``{step: (eps, beta, alpha)}`` accepted at each refit step."""
    k = mu.shape[0]
    h, pi_bar, params = mu.copy(), mu.copy(), None
    total = 0
    out = np.empty((task_ids.shape[0], k))
    for t in range(task_ids.shape[0]):
        counts = np.bincount(task_ids[t], minlength=k)
        total += int(counts.sum())
        h = 0.9 * h + 0.1 * counts / counts.sum()
        params = fits.get(t, params)
        if params is None or t < start_step:
            out[t] = mu
            continue
        eps, beta, alpha = params
        current = eps + beta / np.full(k, total) ** alpha
        slope = np.maximum(alpha, 0.05) * (current - eps) / np.float32(total)
        rho = mu * h**0.5 * slope
        rho = rho / rho.sum()
        deficit = max(0.01 * k - rho.sum(), 0)  # clip_min_probability
        rho = np.maximum(rho * (1 - deficit) / rho.sum(), 0.01)
        rho = rho / rho.sum()
        out[t] = 0.9 * pi_bar + 0.1 * rho
        pi_bar = (1 - 1 / (t + 1)) * pi_bar + 1 / (t + 1) * rho
    return out


def test_restatement_with_the_reference_fits_reproduces_the_reference() -> None:
    d = _load()
    fits = {
        int(s): (np.exp(p[:, 1]), np.exp(p[:, 0]), p[:, 2])
        for s, p in zip(d["fit_steps"], d["fit_params"], strict=True)
    }
    ours = restate(d["task_ids"], d["mu"], fits, int(d["start_step"]))
    ref = np.where(np.isnan(d["pi"]), d["mu"], d["pi"])
    assert np.abs(ours - ref).max() < 1e-12


def test_reference_preset_matches_the_recorded_reference_stream() -> None:
    d = _load()
    policy = _reference_policy(d)
    ref = np.where(np.isnan(d["pi"]), d["mu"], d["pi"])
    got = np.empty_like(ref)
    for t in range(ref.shape[0]):
        policy.update(_stats(d, t))
        got[t] = policy.weights
    dev = np.abs(got - ref).max()
    # Same rules, a different fitter reaching the same optimum: measured 8.6e-6.
    assert dev < 1e-4, dev
    assert policy.estimator.num_fits == len(d["fit_steps"])
    np.testing.assert_array_equal(got[: int(d["fit_steps"][0])], ref[: int(d["fit_steps"][0])])


def test_reference_preset_follows_the_restated_rules_on_a_short_stream() -> None:
    """Refit every 250 steps on the first 2,300 steps; feed the policy's own fits to the
    re-statement, and check the fit points against the batch pipeline (SG 101/3, every 10th)."""
    d = _load()
    steps, ignore = 2300, int(d["ignore_steps"])
    policy = _reference_policy(d, update_interval=250)
    batch = d["task_ids"].shape[1]
    fits: dict[int, tuple[Any, Any, Any]] = {}
    got = np.empty((steps, d["mu"].shape[0]))
    loss_hist: list[F] = []
    for t in range(steps):
        stats = _stats(d, t)
        mean = stats.mean_losses()
        last = loss_hist[-1] if loss_hist else np.full_like(mean, stats.loss_sums.sum() / batch)
        loss_hist.append(np.where(np.isnan(mean), last, mean))
        policy.update(stats)
        got[t] = policy.weights
        if policy.estimator.last_fit_step == t:
            fit = policy.estimator.current
            assert fit is not None
            fits[t] = (fit.eps.copy(), fit.beta.copy(), fit.alpha.copy())
            smooth = savgol_filter(np.array(loss_hist).T, 101, 3, axis=-1)[:, ignore::10]
            x = (np.arange(t + 1) + 1.0)[ignore::10] * batch
            for k in range(3):
                n, y = policy.estimator.points(k)
                np.testing.assert_array_equal(n, x)
                np.testing.assert_allclose(y, smooth[k], rtol=1e-12, atol=1e-12)
    assert sorted(fits) == [1500, 1750, 2000, 2250]
    expected = restate(d["task_ids"][:steps], d["mu"], fits, int(d["start_step"]))
    assert np.abs(got - expected).max() < 1e-12
