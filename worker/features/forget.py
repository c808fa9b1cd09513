"""Forget a user everywhere: Qdrant memories and every Redis key that names the user.

Redis holds a user's state in per-thread keys (``p:<kind>:u:t``: thread hash, buffer, msg-id
set, journal), per-user keys (``p:history:u``, ``p:threads:u``, ``p:changes:u``, ``p:lease:u``,
``p:fence:u``), members ``u:t`` of the due/in-flight sorted sets and the dead-letter hash of the
user's shard, the webhook dead letters of the user's events (``worker.features.webhooks``: forget
may read that feature's letters; all of it in the user's shard, one slot on Redis Cluster), and Celery results
(``reflect:u:t:g…`` task ids, every outcome including failures; on Celery's own Redis when the
coordination state is on a cluster). Per-thread keys are found with ``SCAN MATCH`` (ids cannot
contain glob characters or ``:``), members with ``ZSCAN``/``HSCAN``; nothing is assumed about
which threads exist.

The user's lease is taken first so that no reflection of this user runs while we delete
(one that started earlier finishes or loses its lease; a plan journaled by it is deleted with
the journal key and never applied). Memories are deleted last, after the buffers, so a
reflection that sneaks in between finds nothing to reflect.

One ``forget`` change event (``memory_id`` empty) is added to the events stream in the same
MULTI that deletes the Redis state, so consumers can purge what they derived; the user's earlier
events stay (ids only) until the stream's cap trims them. Forget is idempotent: a run that
failed (say, at the Qdrant step) is run again, and each run adds its own ``forget`` event.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from producer.keys import SEP
from producer.text import as_text
from schemas.ids import check_id
from worker.errors import ReverieError
from worker.features.webhooks.dlq import letters_of_user
from worker.memory.events import forget_event
from worker.pipeline.keys import WorkerKeys

if TYPE_CHECKING:
    import redis

    from worker.runtime import Runtime

THREAD_KINDS = ("thread", "buf", "msgids", "journal")
LEASE_WAIT_S = 10.0
LEASE_TTL_MS = 60_000
SCAN_COUNT = 1000


class UserBusy(ReverieError):
    """A reflection of the user held the lease for longer than we waited."""


def thread_keys_of(client: redis.Redis, keys: WorkerKeys, user_id: str) -> dict[str, list[str]]:
    """Per-thread keys of ``user_id``, grouped by kind (``buf``, ``thread``...): in the user's
    shard (every primary is scanned on a cluster; the tag keeps the match to that shard)."""
    found: dict[str, list[str]] = {kind: [] for kind in THREAD_KINDS}
    base = keys.base(keys.shard_of(user_id))
    for raw in client.scan_iter(match=f"{base}{SEP}*{SEP}{user_id}{SEP}*", count=SCAN_COUNT):
        key = as_text(raw)
        parts = key.removeprefix(base + SEP).split(SEP)
        # exact shape check: p:<kind>:<user>:<thread>, never a longer key that merely contains the id
        if len(parts) == 3 and parts[0] in found and parts[1] == user_id:
            found[parts[0]].append(key)
    return found


def _members_of(client: redis.Redis, key: str, user_id: str, *, hash_: bool) -> list[str]:
    match = f"{user_id}{SEP}*"
    it = client.hscan_iter(key, match=match, count=SCAN_COUNT) if hash_ else client.zscan_iter(key, match=match)
    out = []
    for item in it:
        name = as_text(item[0])
        if name.partition(SEP)[0] == user_id:
            out.append(name)
    return out


def _celery_results(client: redis.Redis, celery_prefix: str, user_id: str) -> list[str]:
    """Result entries of this user's reflections, whatever their outcome (failures carry an
    exception, not a summary). Task ids are ``reflect:<user>:<thread>:g<gen>:<hex>`` and ids
    cannot contain ``:`` or glob characters, so the pattern matches this user only."""
    pattern = f"{celery_prefix}celery-task-meta-reflect:{user_id}:*"
    return [as_text(raw) for raw in client.scan_iter(match=pattern, count=SCAN_COUNT)]


def _take_lease(runtime: Runtime, user_id: str, wait_s: float) -> int:
    deadline = time.monotonic() + wait_s
    while True:
        token = runtime.coordinator.acquire_lease(user_id, LEASE_TTL_MS)
        if token > 0:
            return token
        if time.monotonic() >= deadline:
            raise UserBusy(f"a reflection of user {user_id} is still running; try again")
        time.sleep(0.1)


def _add_event(pipe: redis.client.Pipeline, key: str, user_id: str, max_len: int) -> None:
    """XADD the user's ``forget`` event inside the MULTI (no script here, so ``ts_ms`` is this
    process's clock)."""
    now_ms = int(time.time() * 1000)
    values = [*forget_event(user_id, now_ms).fields(), "ts_ms", str(now_ms)]
    pipe.xadd(key, dict(zip(values[::2], values[1::2], strict=True)), maxlen=max_len, approximate=True)


def forget_user(
    runtime: Runtime, user_id: str, *, lease_wait_s: float = LEASE_WAIT_S, celery_prefix: str | None = None
) -> dict[str, int]:
    """Remove everything Reverie holds about ``user_id``; returns counts by what was removed.
    ``celery_prefix`` defaults to the one ``create_app`` derives from the same key prefix."""
    check_id(user_id)
    client, keys = runtime.redis, runtime.coordinator.keys
    shard = keys.shard_for(user_id)
    celery = runtime.celery_redis if runtime.celery_redis is not None else client
    _take_lease(runtime, user_id, lease_wait_s)
    per_thread = thread_keys_of(client, keys, user_id)
    due = _members_of(client, shard.due_ss, user_id, hash_=False)
    inflight = _members_of(client, shard.inflight_ss, user_id, hash_=False)
    dead = _members_of(client, shard.dlq, user_id, hash_=True)
    webhook_dlq, webhook_dead = letters_of_user(client, keys, user_id)
    results = _celery_results(celery, celery_prefix or keys.celery_prefix(), user_id)
    pipe = client.pipeline(transaction=False)
    pipe.llen(keys.history(user_id))
    for key in per_thread["buf"]:
        pipe.llen(key)
    history_entries, *buffer_lengths = (int(n) for n in pipe.execute())
    buffered = sum(buffer_lengths)

    # One MULTI, in one slot on a cluster: every key below is in the user's shard.
    pipe = client.pipeline(transaction=True)
    if due:
        pipe.zrem(shard.due_ss, *due)
    if inflight:
        pipe.zrem(shard.inflight_ss, *inflight)
    if dead:
        pipe.hdel(shard.dlq, *dead)
    if webhook_dead:
        pipe.hdel(webhook_dlq, *webhook_dead)
    if runtime.settings.events_max_len:  # in the MULTI: no forget without its event, nor the reverse
        _add_event(pipe, shard.events, user_id, runtime.settings.events_max_len)
    pipe.zrem(shard.changed_ss, user_id)
    data_keys = [k for group in per_thread.values() for k in group]
    data_keys += [keys.history(user_id), keys.user_threads(user_id), keys.changes(user_id)]
    pipe.delete(*data_keys)
    pipe.delete(keys.fence(user_id), keys.lease(user_id), keys.waiters(user_id))  # ours now; not counted
    deleted_keys = int(pipe.execute()[-2])
    if results:  # Celery's results live on Celery's Redis (another server beside a cluster)
        deleted_keys += int(celery.delete(*results))
    memories = runtime.store.delete_user(user_id)
    return {
        "memories": memories,
        "threads": len({k.rsplit(SEP, 1)[1] for group in per_thread.values() for k in group}),
        "buffered_turns": buffered,
        "journals": len(per_thread["journal"]),
        "due": len(due),
        "in_flight": len(inflight),
        "dead_letters": len(dead),
        "webhook_dead_letters": len(webhook_dead),
        "task_results": len(results),
        "history_entries": history_entries,
        "redis_keys": deleted_keys,
    }
