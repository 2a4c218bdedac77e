"""``ado compare``: the same model and seed under several mixing policies, with a report.

Needs ``pip install 'ado[compare]'`` (torch, tokenizers, matplotlib, scipy). Importing this package
(or :mod:`ado.compare.plots`, :mod:`ado.compare.report`) does not import torch: the names that
need it (the presets, which are training-config overrides, and the runner) are loaded on first
use. Runs sent to a Slurm cluster (``--launcher slurm``) need ``pip install 'ado[slurm]'``
(adds submitit).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ado.compare.report import REPORT_VERSION, format_table, write_report

if TYPE_CHECKING:
    from ado.compare.presets import PRESETS, Preset
    from ado.compare.run import CompareConfig, Ranks, RunSpec, run_compare

__all__ = [
    "PRESETS",
    "REPORT_VERSION",
    "CompareConfig",
    "Preset",
    "Ranks",
    "RunSpec",
    "format_table",
    "run_compare",
    "write_report",
]

#: Names loaded on first use (their modules import torch), by module.
_LAZY = {
    "PRESETS": "ado.compare.presets",
    "Preset": "ado.compare.presets",
    "CompareConfig": "ado.compare.run",
    "Ranks": "ado.compare.run",
    "RunSpec": "ado.compare.run",
    "run_compare": "ado.compare.run",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ado.compare' has no attribute {name!r}")
