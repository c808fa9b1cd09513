"""Why a re-embed did not run. Each message is one sentence an operator can act on."""

from __future__ import annotations

from worker.errors import ReverieError


class ReembedError(ReverieError):
    """Base class: nothing was written (or the checkpoint says where to continue)."""


class ReembedRefused(ReembedError):
    """Bad input: unknown model, the live model, the per-user strategy, events off… (exit 2)."""


class ReembedBusy(ReembedError):
    """Another re-embed of this namespace holds the lock (exit 1)."""


class LockLost(ReembedError):
    """This run stopped renewing its lock in time and another may have taken over: it stops."""
