"""Suite-wide test settings."""

from __future__ import annotations

import os

from hypothesis import settings

# Property tests draw the same examples on every run (CI must not depend on luck); explore new
# ones with ``pytest --hypothesis-seed=N`` or ``HYPOTHESIS_PROFILE=explore``.
settings.register_profile("default", derandomize=True, deadline=None)
settings.register_profile("explore", derandomize=False, deadline=None, max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
