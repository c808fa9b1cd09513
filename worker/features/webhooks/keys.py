"""The feature's Redis keys and names, on top of ``WorkerKeys``. The events streams themselves
come from ``WorkerKeys.event_streams()`` (one per shard).

- ``p:webhook_dlq``  hash  ``<endpoint>|<event id>`` → dead letter (JSON, ``WebhookDeadLetter``)
  of the events of one stream, beside it: ``p:{tag}:webhook_dlq`` for ``p:{tag}:events`` when
  sharded, so a letter and the acknowledgement of its entry share a Redis Cluster slot
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


def dlq_key(stream: str) -> str:
    """The dead letters of the events of ``stream`` (``<p>[:{tag}]:events``), in its slot."""
    base, _, name = stream.rpartition(":")
    if name != "events" or not base:
        raise ValueError(f"stream: {stream!r} is not an events stream")
    return f"{base}:webhook_dlq"


def dlq_keys(keys: WorkerKeys) -> list[str]:
    """Every webhook dead-letter hash: one per events stream."""
    return [dlq_key(stream) for stream in keys.event_streams()]


def user_dlq_key(keys: WorkerKeys, user_id: str) -> str:
    """The hash holding ``user_id``'s letters: a user's events are all in their shard's stream."""
    return dlq_key(keys.shard_for(user_id).events)


def group(endpoint: str) -> str:
    return f"webhook:{endpoint}"


def consumer_name() -> str:
    """Unique per relay: host, process and a random tail (a forked child gets its own)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
