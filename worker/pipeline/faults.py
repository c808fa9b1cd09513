"""Fault-injection seam for the crash tests, inert unless ``REVERIE_TEST_CRASH_AT`` is set.

A test starts a worker process with ``REVERIE_TEST_CRASH_AT=<stage>``; when a reflection
reaches that stage the process SIGKILLs itself, exactly as if the machine had pulled the plug
there. Production never sets the variable; the check is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

CRASH_ENV = "REVERIE_TEST_CRASH_AT"
STAGES = (
    "before_llm",
    "after_journal",
    "after_qdrant_write",
    "after_sibling_finalize",
    "change_after_journal",
    "change_after_qdrant_write",
)
"""A reflection's stages, then those of a journaled tool or consolidation change (``worker.memory.changes``)."""


def crash_point(stage: str) -> None:
    """SIGKILL this process if the crash tests asked for a crash at ``stage``."""
    if os.environ.get(CRASH_ENV) == stage:
        os.kill(os.getpid(), signal.SIGKILL)
