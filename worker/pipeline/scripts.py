"""The pipeline's Lua scripts (``worker/pipeline/lua/*.lua``): claiming due threads, the per-user
lease, the snapshot and the prepare/finalize commit protocol, rescheduling and dead letters.

``run_many`` runs one script many times in one pipeline (one call per shard, say): on one Redis
that is one round trip, on Redis Cluster one per primary, sent together."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError

from producer.replicas import target
from producer.scripts import ScriptSet

ScriptCall = tuple[Sequence[str], Sequence[Any]]


class PipelineScripts(ScriptSet):
    PACKAGE = "worker.pipeline"
    NAMES = (
        "due_candidates",
        "claim",
        "requeue_expired",
        "lease_acquire",
        "lease_renew",
        "lease_release",
        "snapshot",
        "siblings",
        "prepare",
        "finalize",
        "release",
        "reschedule",
        "replay_dead",
        "flush_due",
        "heartbeat",
    )

    due_candidates: Any
    heartbeat: Any
    claim: Any
    requeue_expired: Any
    lease_acquire: Any
    lease_renew: Any
    lease_release: Any
    snapshot: Any
    siblings: Any
    prepare: Any
    finalize: Any
    release: Any
    reschedule: Any
    replay_dead: Any
    flush_due: Any


def _send(client: Any, script: Any, calls: Sequence[ScriptCall]) -> list[Any]:
    pipe = client.pipeline(transaction=False)
    for keys, args in calls:  # cluster pipelines refuse .evalsha(); the target spares a COMMAND GETKEYS
        pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args, **target(client, keys[0]))
    return list(pipe.execute(raise_on_error=False))


def run_many(client: Any, script: Any, calls: Sequence[ScriptCall]) -> list[Any]:
    """Replies of ``script`` for each ``(keys, args)``, pipelined (``EVALSHA``; a server that does
    not have the script yet gets it loaded, and those calls are sent again). Raises the first
    other error."""
    if not calls:
        return []
    replies = _send(client, script, calls)
    missing = [n for n, r in enumerate(replies) if isinstance(r, NoScriptError)]
    if missing:  # NOSCRIPT: the call did not run; load (every primary on a cluster) and resend those
        client.script_load(script.script)
        for n, reply in zip(missing, _send(client, script, [calls[n] for n in missing]), strict=True):
            replies[n] = reply
    for reply in replies:
        if isinstance(reply, BaseException):
            raise reply
    return replies
