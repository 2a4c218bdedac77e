"""``ado compare``: the same model and seed under several mixing policies, with a report.

Needs ``pip install 'ado[compare]'`` (torch, tokenizers, matplotlib, scipy); runs sent to a Slurm
cluster (``--launcher slurm``) need ``pip install 'ado[slurm]'`` (adds submitit).
"""

from __future__ import annotations

from ado.compare.presets import PRESETS, Preset
from ado.compare.report import REPORT_VERSION, format_table, write_report
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
