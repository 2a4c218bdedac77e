"""``import ado`` (and its torch-free subpackages) must never import torch."""

from __future__ import annotations

import subprocess
import sys


def test_import_ado_does_not_import_torch() -> None:
    code = (
        "import sys; import ado, ado.data, ado.policy, ado.estimators, ado.sim, ado.cli; "
        "ado.cli.build_parser(); "
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ado_torch_imports_torch() -> None:
    code = "import sys, ado.torch; sys.exit(0 if 'torch' in sys.modules else 1)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_the_library_proper_does_not_import_the_harness() -> None:
    # ado.compare and ado.corpus (the experiment harness, extra 'ado[compare]') are imported
    # only by the CLI commands that run them
    code = (
        "import sys; import ado, ado.data, ado.policy, ado.estimators, ado.sim, ado.runlog; "
        "import ado.torch; "
        "bad = sorted(m for m in sys.modules if m.startswith(('ado.compare', 'ado.corpus', "
        "'matplotlib', 'tokenizers', 'scipy'))); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
