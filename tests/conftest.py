"""Suite-wide test settings."""

from __future__ import annotations

import os
import signal

from hypothesis import settings

# Property tests draw the same examples on every run (CI must not depend on luck); explore new
# ones with ``pytest --hypothesis-seed=N`` or ``HYPOTHESIS_PROFILE=explore``.
settings.register_profile("default", derandomize=True, deadline=None)
settings.register_profile("explore", derandomize=False, deadline=None, max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# The Ctrl-C tests send SIGINT to child processes, which must turn it into KeyboardInterrupt. A
# shell without job control starts background commands (`.ci/run &`) with SIGINT ignored, and an
# ignored signal stays ignored across exec: Python then never installs its handler. Restore it
# here so that every child starts with SIGINT at its default.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
