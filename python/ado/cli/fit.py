"""``ado fit``: fit power laws to loss curves stored in a ``.npz`` or ``.csv`` file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from ado._io import regular_file
from ado.errors import InvalidInputError
from ado.estimators import FitConfig, fit_power_laws

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``fit`` subcommand."""
    p: argparse.ArgumentParser = sub.add_parser(
        "fit",
        help="fit L(n) = eps + beta * n^-alpha to loss curves",
        description="Fit per-domain power laws. NPZ input: arrays 'n' (T,) or (K, T) and 'losses' "
        "(K, T). CSV input: first column n, one column per domain (header row required).",
    )
    p.add_argument("path", type=Path, help=".npz or .csv file")
    p.add_argument("--reference", action="store_true", help="use the reference objective")
    p.set_defaults(func=run)


#: The largest loss-curve file ``ado fit`` reads (it is read whole).
MAX_INPUT_BYTES = 1 << 30


def _load(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    regular_file(path, "loss-curve file", MAX_INPUT_BYTES)
    if path.suffix == ".npz":
        with np.load(path) as data:
            if "n" not in data or "losses" not in data:
                raise InvalidInputError(f"{path}: needs arrays 'n' and 'losses'")
            losses = np.atleast_2d(data["losses"])
            return data["n"], losses, [str(k) for k in range(losses.shape[0])]
    if path.suffix == ".csv":
        table = np.genfromtxt(path, delimiter=",", names=True)
        names = list(table.dtype.names or ())
        if len(names) < 2:
            raise InvalidInputError(f"{path}: needs a column n and at least one loss column")
        n = np.asarray(table[names[0]], dtype=np.float64)
        losses = np.stack([np.asarray(table[c], dtype=np.float64) for c in names[1:]])
        return n, losses, names[1:]
    raise InvalidInputError(f"{path}: unsupported file type {path.suffix!r} (use .npz or .csv)")


def run(args: argparse.Namespace) -> int:
    """Fit and print one JSON line per domain."""
    n, losses, names = _load(args.path)
    config = FitConfig.reference() if args.reference else FitConfig()
    fit = fit_power_laws(n, losses, config)
    for k, name in enumerate(names):
        row = {
            "domain": name,
            "eps": float(fit.eps[k]),
            "beta": float(fit.beta[k]),
            "alpha": float(fit.alpha[k]),
            "objective": float(fit.objective[k]),
            "n_points": int(fit.n_points[k]),
        }
        print(json.dumps(row))
    return 0
