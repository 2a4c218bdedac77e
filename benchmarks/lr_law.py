"""Final-loss prediction from the first 60 % of a run: the learning-rate-aware law vs the power law.

Both laws are fitted to the same points of the first ``--fit-fraction`` of each curve; the error
is |predicted - observed| at the end of the run (nats), per curve.

* **synthetic**: ``--curves`` random laws ``L0 + A*S1^-alpha - C*S2`` per schedule (cosine to
  10 %, WSD decaying over the last 20 % and the last 50 %), 0.5 % multiplicative noise, 3000 steps;
  the truth is the noiseless final loss.
* **real**: a small GPT trained on the built-in corpus (byte tokens) under a cosine and a WSD
  schedule (natural mixture, one seed); per domain, the held-out loss (the same rows every
  ``--eval-every`` steps, as the paper's validation curves), or with ``--train-loss`` the
  per-step training loss averaged over windows of ``--window`` steps; the truth is the last
  point. The first ``--skip`` of each run (the fall from the initial loss) is not fitted.

The plain law is ``eps + beta * n^-alpha`` over samples (``n = (step + 1) * batch``), the fitter
ADO uses; the LR-aware law is :func:`ado.estimators.fit_lr_laws` under the run's schedule.

    python benchmarks/lr_law.py                           # synthetic + real, ~3 min on 2 cores
    python benchmarks/lr_law.py --skip-real               # synthetic only, seconds
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from ado.estimators import LrLawFit, fit_lr_laws, fit_power_laws
from ado.schedule import LrSchedule


def _errors(
    lr: np.ndarray,
    steps: np.ndarray,
    losses: np.ndarray,
    last: np.ndarray,
    truth: np.ndarray,
    batch: int,
) -> dict[str, list[float]]:
    """Fit both laws to ``losses`` (K, T) at ``steps``; errors of their mean prediction over the
    steps ``last`` against ``truth`` (K,)."""
    lr_fit = fit_lr_laws(lr, steps, losses)
    plain = fit_power_laws((steps + 1.0) * batch, losses)
    pred_lr = lr_fit.predict(last).mean(axis=1)
    pred_plain = plain.predict((last + 1.0) * batch).mean(axis=1)
    return {
        "lr_law": np.abs(pred_lr - truth).tolist(),
        "power_law": np.abs(pred_plain - truth).tolist(),
    }


def _summary(err: dict[str, list[float]]) -> dict[str, Any]:
    a, b = np.asarray(err["lr_law"]), np.asarray(err["power_law"])
    return {
        "curves": int(a.size),
        "lr_law_median_abs_err": float(np.median(a)),
        "power_law_median_abs_err": float(np.median(b)),
        "lr_law_mean_abs_err": float(a.mean()),
        "power_law_mean_abs_err": float(b.mean()),
        "lr_law_better_fraction": float(np.mean(a < b)),
    }


def synthetic(curves: int, fraction: float, seed: int) -> dict[str, Any]:
    """Random laws under three schedules."""
    rng = np.random.default_rng(seed)
    total = 3000
    schedules = {
        "cosine": LrSchedule(kind="cosine", peak=3e-3, total=total, warmup=100),
        "wsd-20%": LrSchedule(kind="wsd", peak=3e-3, total=total, warmup=100, decay_steps=600),
        "wsd-50%": LrSchedule(kind="wsd", peak=3e-3, total=total, warmup=100, decay_steps=1500),
    }
    out = {}
    for name, schedule in schedules.items():
        lr = schedule.values()
        truth = LrLawFit.from_params(
            lr,
            l0=rng.uniform(1.0, 3.0, curves),
            a=rng.uniform(0.3, 2.0, curves),
            alpha=rng.uniform(0.2, 1.0, curves),
            c=rng.uniform(0.05, 0.4, curves),
        )
        steps = np.arange(20, int(fraction * total), 5)
        y = truth.predict(steps) * np.exp(0.005 * rng.standard_normal((curves, steps.size)))
        last = np.array([total - 1])
        out[name] = _summary(_errors(lr, steps, y, last, truth.predict(last)[:, 0], 64))
    return out


def _train_curves(
    root: Path, steps: int, threads: int, kind: str, eval_every: int
) -> dict[str, Any]:
    """Per-step, per-domain mean training loss and held-out loss every ``eval_every`` steps of
    one natural-mixture run under ``kind`` on the byte-token corpus ``root``."""
    from ado.data import Manifest
    from ado.torch import TrainConfig, train

    names = list(Manifest.load(root / "manifest.yaml").domains)
    losses: list[np.ndarray] = []
    evals: dict[int, list[float]] = {}

    def on_step(step: int, stats: Any, mixer: Any) -> None:
        losses.append(stats.mean_losses())

    def on_eval(step: int, rec: dict[str, float]) -> None:
        evals[step] = [rec[f"loss/{d}"] for d in names]

    cfg = TrainConfig(
        manifest=str(root / "manifest.yaml"),
        policy="natural",
        steps=steps,
        schedule=kind,
        decay_fraction=0.2,
        batch_size=16,
        seq_len=128,
        vocab_size=257,
        n_layer=2,
        n_embd=64,
        lr=3e-3,
        warmup=20,
        threads=threads,
        progress=False,
        eval_manifest=str(root / "val.yaml"),
        eval_every=eval_every,
        eval_batches=4,
    )
    train(cfg, on_step=on_step, on_eval=on_eval)
    return {
        "domains": names,
        "lr": cfg.lr_schedule().values().tolist(),
        "batch_size": cfg.batch_size,
        # (K, steps), NaN (null) where a domain was absent from the step's batch
        "losses": [[None if np.isnan(x) else float(x) for x in row] for row in np.array(losses).T],
        # held-out loss after `step` steps: the model has trained steps 0..step-1
        "eval_steps": sorted(evals),
        "eval_losses": np.array([evals[k] for k in sorted(evals)]).T.tolist(),
    }


def real(
    curves: dict[str, Any], window: int, fraction: float, skip: float, train_loss: bool
) -> dict[str, Any]:
    """Fit each domain's held-out (or windowed training) loss of the recorded runs; ``skip``:
    the share of the run left out at its start (where the loss falls from ``ln 257``)."""
    out: dict[str, Any] = {}
    for kind, run in curves.items():
        names = run["domains"]
        per_step = np.array(run["losses"], dtype=np.float64)
        k, steps = per_step.shape
        if train_loss:
            windows = steps // window
            means = np.array(
                [
                    np.nanmean(per_step[:, i * window : (i + 1) * window], axis=1)
                    for i in range(windows)
                ]
            ).T  # (K, windows)
            at = np.arange(windows) * window + window // 2
            last = np.arange((windows - 1) * window, windows * window)
        else:
            # the evaluation after `s` steps sees the model of step s - 1's update
            at = np.asarray(run["eval_steps"]) - 1
            means = np.array(run["eval_losses"], dtype=np.float64)
            last = at[-1:]
        fit_w = (at < fraction * steps) & (at >= skip * steps)
        err = _errors(
            np.asarray(run["lr"]), at[fit_w], means[:, fit_w], last, means[:, -1], run["batch_size"]
        )
        out[kind] = {
            **_summary(err),
            "per_domain": {names[i]: {m: err[m][i] for m in err} for i in range(k)},
        }
    return out


def main() -> None:
    """Print the figures as JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--curves", type=int, default=50, help="synthetic curves per schedule")
    p.add_argument("--fit-fraction", type=float, default=0.6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-real", action="store_true")
    p.add_argument("--corpus", help="a built-in corpus folder (default: build a small one)")
    p.add_argument("--steps", type=int, default=800, help="steps of each real run")
    p.add_argument("--window", type=int, default=20, help="steps averaged per real point")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip", type=float, default=0.1, help="share of each real run not fitted")
    p.add_argument("--eval-every", type=int, default=20, help="steps between held-out points")
    p.add_argument("--train-loss", action="store_true", help="fit the training loss instead")
    p.add_argument("--save-curves", help="write the real runs' loss curves to this JSON file")
    p.add_argument("--load-curves", help="fit these recorded curves instead of training")
    args = p.parse_args()
    result: dict[str, Any] = {
        "fit_fraction": args.fit_fraction,
        "synthetic": synthetic(args.curves, args.fit_fraction, args.seed),
    }
    if not args.skip_real:
        if args.load_curves:
            curves = json.loads(Path(args.load_curves).read_text())
        else:
            from ado.corpus import build_builtin

            with tempfile.TemporaryDirectory() as tmp:
                root = Path(args.corpus or Path(tmp) / "corpus")
                if not (root / "manifest.yaml").exists():
                    # the default cap: each domain is trained on less than once
                    build_builtin(root, tokenizer="bytes", progress=False)
                curves = {
                    kind: _train_curves(root, args.steps, args.threads, kind, args.eval_every)
                    for kind in ("cosine", "wsd")
                }
            if args.save_curves:
                Path(args.save_curves).write_text(json.dumps(curves))
        result["real"] = real(curves, args.window, args.fit_fraction, args.skip, args.train_loss)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
