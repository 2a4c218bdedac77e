"""``import ado`` (and its torch-free subpackages) must never import torch."""

from __future__ import annotations

import subprocess
import sys


def _imports_none(statements: str, banned: str) -> None:
    """Run ``statements`` in a fresh interpreter; fail, naming them, if any module ``m`` in
    ``sys.modules`` afterwards makes the expression ``banned`` true."""
    code = (
        f"import sys; {statements}; "
        f"bad = sorted(m for m in sys.modules if {banned}); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_import_ado_does_not_import_torch() -> None:
    _imports_none(
        "import ado, ado.data, ado.policy, ado.estimators, ado.sim, ado.cli; "
        "ado.cli.build_parser()",
        "m == 'torch' or m.startswith('torch.')",
    )


def test_reading_a_comparison_does_not_import_torch() -> None:
    # plotting and reporting a finished comparison need matplotlib, not torch (the presets,
    # training-config overrides, are loaded only when used)
    _imports_none(
        "import ado.compare.plots, ado.compare.report, ado.compare; "
        "from ado.compare import format_table, write_report",
        "m == 'torch' or m.startswith('torch.')",
    )


def test_ado_torch_imports_torch() -> None:
    code = "import sys, ado.torch; sys.exit(0 if 'torch' in sys.modules else 1)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_the_library_proper_does_not_import_the_harness() -> None:
    # ado.compare and ado.corpus (the experiment harness, extra 'ado[compare]') are imported
    # only by the CLI commands that run them
    _imports_none(
        "import ado, ado.data, ado.policy, ado.estimators, ado.sim, ado.runlog; import ado.torch",
        "m.startswith(('ado.compare', 'ado.corpus', 'matplotlib', 'tokenizers', 'scipy'))",
    )


def test_no_import_of_ado_or_ado_torch_imports_a_training_stack() -> None:
    # transformers and lightning (extras 'ado[hf]', 'ado[lightning]') are imported only by
    # ado.integrations.hf and ado.integrations.lightning, never by ado, ado.torch or
    # ado.integrations itself
    _imports_none(
        "import ado, ado.data, ado.policy, ado.runlog, ado.torch, ado.integrations; "
        "import ado.integrations._common",
        "m.split('.')[0] in "
        "('transformers', 'lightning', 'pytorch_lightning', 'accelerate', 'lightning_fabric')",
    )


def test_a_missing_stack_names_its_extra() -> None:
    # with transformers/lightning unimportable, the adapters say which extra installs them
    for module, extra in (("hf", "transformers"), ("lightning", "lightning")):
        code = (
            f"import sys; sys.modules[{extra!r}] = None\n"
            "from ado.errors import MissingDependencyError\n"
            f"try:\n    import ado.integrations.{module}\n"
            "except MissingDependencyError as err:\n    print(err)\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
        )
        assert f"pip install 'ado[{module}]'" in proc.stdout, proc.stdout + proc.stderr
