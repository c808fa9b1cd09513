"""``reverie reshard S``: move the coordination state of a deployment to another shard count
(or from the unsharded key names to hash-tagged ones), without stranding a buffered turn.

1. **Close** every old shard (field ``closed`` in its stats hash). From then on the SUBMIT script
   refuses writes to it (a producer reads the layout record again and resends, or applies its
   ``on_unavailable`` policy while the move runs) and the CLAIM script claims nothing from it.
2. **Wait** until no reflection is in flight in the old shards (their finalize, release and
   reschedule still run there). If some are still running after ``wait_s``, the shards are
   opened again and nothing was moved.
3. **Move** every per-thread and per-user key (thread hash, buffer, msg-ids, journal, thread
   index, lease, fence, waiters, history) with ``DUMP``/``RESTORE`` (TTL kept), re-add the due
   times, dead letters and "changed" marks to the users' new shards, add the counters to the new
   first shard, and rename prompt keys if their hash tags change.
4. **Record** the new layout (``p:layout``). Workers and dispatchers started with the old
   ``REVERIE_SHARDS`` refuse to run from now on; restart them with the new one.

A run that dies midway is run again: the old shards stay closed, the record still names the old
layout (so nothing writes to the new keys meanwhile), moved keys are gone from the old layout and
a key copied but not yet deleted is copied again (``RESTORE … REPLACE``). Only the counters of a
shard whose move was cut short between adding and deleting them would be counted twice.

Not moved: the old shards' change-event streams (consumers should read them to the end first;
``reverie events`` reads the current layout's) and Celery's keys (not sharded)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from producer.keys import SEP, split_member
from producer.text import as_text
from worker.pipeline.keys import WorkerKeys

THREAD_KINDS = ("thread", "buf", "msgids", "journal")
USER_KINDS = ("threads", "lease", "fence", "waiters", "history")
PROMPT_KINDS = ("prompt", "prompthist", "promptex")
BATCH = 200
METHOD = {
    "thread": "thread",
    "buf": "buffer",
    "msgids": "msgids",
    "journal": "journal",
    "threads": "user_threads",
    "lease": "lease",
    "fence": "fence",
    "waiters": "waiters",
    "history": "history",
    "prompt": "prompt",
    "prompthist": "prompt_history",
    "promptex": "prompt_examples",
}


class ReshardBlocked(RuntimeError):
    """Reflections were still in flight when the wait ran out; nothing was moved."""


@dataclass
class ReshardReport:
    old: str
    new: str
    keys: int = 0
    due: int = 0
    dead_letters: int = 0
    changed: int = 0
    waited_s: float = 0.0

    def counts(self) -> dict[str, Any]:
        return asdict(self)


def new_name(old: WorkerKeys, new: WorkerKeys, key: str) -> str | None:
    """The new layout's name of an old layout's key, or None if it is not one we move."""
    rest = key.removeprefix(old.prefix + SEP)
    if rest == key:
        return None
    if old.tagged and rest.startswith("{"):
        tag, _, rest = rest.partition("}" + SEP)
        if tag[1:] not in _tags(old):
            return None
    elif old.tagged and rest.split(SEP, 1)[0] not in PROMPT_KINDS:
        return None
    parts = rest.split(SEP)
    kind = parts[0]
    if kind in THREAD_KINDS and len(parts) == 3:
        return str(getattr(new, METHOD[kind])(parts[1], parts[2]))
    if kind in USER_KINDS and len(parts) == 2:
        return str(getattr(new, METHOD[kind])(parts[1]))
    if kind in PROMPT_KINDS and len(parts) >= 2:
        name = rest.removeprefix(kind + SEP)
        if old.tagged:
            if not (name.startswith("{") and name.endswith("}")):
                return None
            name = name[1:-1]
        return str(getattr(new, METHOD[kind])(name))
    return None


def _tags(keys: WorkerKeys) -> set[str]:
    return {s.base.removeprefix(keys.prefix + SEP)[1:-1] for s in keys.all_shards()}


def close(client: Any, old: WorkerKeys, new: WorkerKeys) -> None:
    for shard in old.all_shards():
        client.hset(shard.stats, "closed", new.layout)


def reopen(client: Any, keys: WorkerKeys) -> None:
    for shard in keys.all_shards():
        client.hdel(shard.stats, "closed")


def in_flight(client: Any, keys: WorkerKeys) -> int:
    return sum(int(client.zcard(shard.inflight_ss)) for shard in keys.all_shards())


def _move_keys(client: Any, old: WorkerKeys, new: WorkerKeys, progress: Callable[[int], None]) -> int:
    moves = []
    for raw in client.scan_iter(match=f"{old.prefix}{SEP}*", count=1000):
        key = as_text(raw)
        target = new_name(old, new, key)
        if target is not None and target != key:
            moves.append((key, target))
    for n in range(0, len(moves), BATCH):
        batch = moves[n : n + BATCH]
        pipe = client.pipeline(transaction=False)
        for key, _ in batch:
            pipe.dump(key)
            pipe.pttl(key)
        dumped = pipe.execute()
        pipe = client.pipeline(transaction=False)
        for (key, target), data, ttl in zip(batch, dumped[::2], dumped[1::2], strict=True):
            if data is None:  # expired meanwhile
                continue
            pipe.restore(target, max(int(ttl), 0), data, replace=True)
            pipe.delete(key)
        pipe.execute()
        progress(len(batch))
    return len(moves)


def _move_shard(client: Any, shard: Any, new: WorkerKeys, report: ReshardReport) -> None:
    """Re-add one old shard's due times, in-flight entries (as due), dead letters and changed
    marks to their users' new shards; add its counters to the new first shard."""
    due = client.zrange(shard.due_ss, 0, -1, withscores=True) + client.zrange(shard.inflight_ss, 0, -1, withscores=True)
    dead = client.hgetall(shard.dlq)
    changed = client.zrange(shard.changed_ss, 0, -1, withscores=True)
    stats = {k: v for k, v in client.hgetall(shard.stats).items() if as_text(k) != "closed"}
    pipe = client.pipeline(transaction=False)
    for m, score in due:
        pipe.zadd(new.shard_for(split_member(m)[0]).due_ss, {m: score}, lt=True)
    for m, letter in dead.items():
        pipe.hset(new.shard_for(split_member(m)[0]).dlq, m, letter)
    for user, score in changed:
        pipe.zadd(new.shard_for(as_text(user)).changed_ss, {user: score}, gt=True)
    for field, value in stats.items():
        pipe.hincrby(new.shard(0).stats, field, int(value))
    pipe.execute()
    for key in (shard.due_ss, shard.inflight_ss, shard.dlq, shard.changed_ss):
        client.delete(key)
    if stats:
        client.hdel(shard.stats, *stats)
    report.due += len(due)
    report.dead_letters += len(dead)
    report.changed += len(changed)


def reshard(
    client: Any,
    old: WorkerKeys,
    new: WorkerKeys,
    *,
    wait_s: float = 60.0,
    progress: Callable[[str, int], None] | None = None,
) -> ReshardReport:
    """Move the state of layout ``old`` to layout ``new`` (see the module docstring)."""
    report = ReshardReport(old.layout, new.layout)
    step = progress or (lambda _what, _n: None)
    close(client, old, new)
    started = time.monotonic()
    while (left := in_flight(client, old)) > 0:
        if time.monotonic() - started > wait_s:
            reopen(client, old)
            raise ReshardBlocked(
                f"{left} reflection(s) still in flight after {wait_s:g} s; the shards are open again and nothing "
                "moved. Stop the workers (a dead worker's claims come back after REVERIE_INFLIGHT_TIMEOUT_S) and retry"
            )
        time.sleep(0.2)
    report.waited_s = round(time.monotonic() - started, 3)
    report.keys = _move_keys(client, old, new, lambda n: step("keys", n))
    for shard in old.all_shards():
        _move_shard(client, shard, new, report)
        step("shards", 1)
    for shard in new.all_shards():
        client.hdel(shard.stats, "closed")
    client.set(new.layout_key, new.layout)
    return report
