"""The feature's Redis keys and names, on top of ``WorkerKeys``. The events streams themselves
come from ``WorkerKeys.event_streams()`` (one today, one per shard once sharded).

- ``p:webhook_dlq``  hash  ``<endpoint>|<event id>`` → dead letter (JSON, ``WebhookDeadLetter``)
- consumer group ``webhook:<endpoint>`` on every events stream
"""

from __future__ import annotations

import os
import socket
import uuid

from worker.pipeline.keys import WorkerKeys

RETRY_CONSUMER = "retrying"
"""The consumer a delivery claims its entry to (resetting its idle time) while it runs or waits
for a retry, so the relay does not send it again meanwhile."""


def dlq_key(keys: WorkerKeys) -> str:
    return f"{keys.prefix}:webhook_dlq"


def group(endpoint: str) -> str:
    return f"webhook:{endpoint}"


def consumer_name() -> str:
    """Unique per relay: host, process and a random tail (a forked child gets its own)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
