"""The feature's Redis keys (on top of ``WorkerKeys``; the change events are ``keys.event_streams()``).

- ``p:reembed:{<ns>}``       string the checkpoint of the namespace's unfinished re-embed (``ReembedState`` JSON)
- ``p:reembed:{<ns>}:lock``  string the running re-embed's token (expires unless renewed: a dead process frees it)
- ``p:reembed:{<ns>}:old``   set    collections switched away from, kept until ``--drop-old``

Namespaces are ``[A-Za-z0-9_-]`` (settings), so the names cannot collide. The namespace is the
keys' hash tag: the checkpoint script reads the lock and writes the checkpoint in one slot on
Redis Cluster.
"""

from __future__ import annotations

from worker.pipeline.keys import WorkerKeys


def state_key(keys: WorkerKeys, namespace: str) -> str:
    return f"{keys.prefix}:reembed:{{{namespace}}}"


def lock_key(keys: WorkerKeys, namespace: str) -> str:
    return f"{state_key(keys, namespace)}:lock"


def old_key(keys: WorkerKeys, namespace: str) -> str:
    return f"{state_key(keys, namespace)}:old"


def all_keys(keys: WorkerKeys, namespace: str) -> list[str]:
    return [state_key(keys, namespace), lock_key(keys, namespace), old_key(keys, namespace)]
