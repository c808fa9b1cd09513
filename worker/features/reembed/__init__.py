"""Re-embedding with zero downtime: ``reverie reembed --to MODEL`` and the ``reverie.reembed`` task.

- ``run``: the phases (copy, catch up from the change events, switch the live alias, settle),
  checkpointed in Redis; ``checkpoint``: the namespace's lock and the fenced checkpoint writes.
- ``transfer``: point copies old → new (same id and payload, new vector), conditional after the
  switch; ``changes``: the change events read since a position; ``reconcile``: the rules that
  apply them before and after the switch.
- ``aliases``: the atomic alias switch; ``plan``: request checks and the ``--dry-run`` estimate;
  ``admin``: ``--drop-old`` and ``--abort``; ``keys``: the feature's Redis keys; ``task``: the
  ``reverie.reembed`` task's core (a time budget, then it continues in a new task).

Readers and writers follow the alias through ``producer.memories.live``. Removing the feature
means removing this folder, its task and its command.
"""

from worker.features.reembed.admin import abort, drop_old, kept_old
from worker.features.reembed.errors import LockLost, ReembedBusy, ReembedError, ReembedRefused
from worker.features.reembed.run import Context, Reembed

__all__ = [
    "Context",
    "LockLost",
    "Reembed",
    "ReembedBusy",
    "ReembedError",
    "ReembedRefused",
    "abort",
    "drop_old",
    "kept_old",
]
