"""Job functions for the ``SlurmPool`` tests (sent to the job by value, see the test)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def fail_once(folder: str) -> dict[str, Any]:
    """Fail on the first attempt; on a later one write ``result.json`` as a run would."""
    marker = Path(folder) / "attempts"
    n = int(marker.read_text()) + 1 if marker.exists() else 1
    marker.write_text(str(n))
    if n == 1:
        raise RuntimeError("the first attempt fails")
    result = {"attempts": n}
    (Path(folder) / "result.json").write_text(json.dumps(result))
    return result
