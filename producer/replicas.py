"""A write that waits for one replica: a script's ``EVALSHA`` and ``WAIT 1 <ms>`` in one pipeline,
so it stays one round trip (the producer's SUBMIT, the worker's commit journal). On Redis Cluster
both go to the primary of the user's shard (``WAIT`` is routed to the node that owns the script's
first key).

Redis replication is asynchronous: without ``WAIT`` a primary that dies right after answering
can take the write with it when its replica is promoted. ``WAIT`` returns how many replicas have
the write; 0 after the timeout means the write is on the primary only (still applied, not
refused): ``SubmitReceipt.replicas`` says so and the producer logs it."""

from __future__ import annotations

from typing import Any

from redis.exceptions import NoScriptError

from producer.connect import is_cluster


def target(client: Any, key: str) -> dict[str, Any]:
    """On a cluster, the node that serves ``key``, named explicitly for a pipelined command:
    ``WAIT`` has no key, and without it redis-py asks the default node for an ``EVALSHA``'s keys
    (``COMMAND GETKEYS``: another round trip, and stuck while that node is down)."""
    return {"target_nodes": client.get_node_from_key(key)} if is_cluster(client) else {}


def _queue(client: Any, script: Any, keys: list[str], argv: list[Any], wait_ms: int) -> Any:
    pipe = client.pipeline(transaction=False)
    node = target(client, keys[0])
    pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *argv, **node)
    pipe.execute_command("WAIT", 1, wait_ms, **node)
    return pipe


def _result(results: list[Any]) -> tuple[Any, int] | None:
    """(script reply, replicas), or None when the script was not loaded on that server."""
    reply, acked = results
    if isinstance(reply, NoScriptError):
        return None
    if isinstance(reply, BaseException):
        raise reply
    return reply, acked if isinstance(acked, int) else 0


def call_and_wait(client: Any, script: Any, keys: list[str], argv: list[Any], wait_ms: int) -> tuple[Any, int]:
    """Sync: run ``script`` then ``WAIT 1 wait_ms`` in one round trip; (reply, replicas)."""
    done = _result(_queue(client, script, keys, argv, wait_ms).execute(raise_on_error=False))
    if done is None:  # first call on this server: load (every primary on a cluster), send again
        client.script_load(script.script)
        done = _result(_queue(client, script, keys, argv, wait_ms).execute(raise_on_error=False))
    if done is None:
        raise NoScriptError("script still missing after SCRIPT LOAD")
    return done


async def call_and_wait_async(
    client: Any, script: Any, keys: list[str], argv: list[Any], wait_ms: int
) -> tuple[Any, int]:
    """Async form of ``call_and_wait``."""
    done = _result(await _queue(client, script, keys, argv, wait_ms).execute(raise_on_error=False))
    if done is None:
        await client.script_load(script.script)
        done = _result(await _queue(client, script, keys, argv, wait_ms).execute(raise_on_error=False))
    if done is None:
        raise NoScriptError("script still missing after SCRIPT LOAD")
    return done
