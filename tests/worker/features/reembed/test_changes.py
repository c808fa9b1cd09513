"""Reading what changed: the fold of events (pure) and the stream reads (real Redis)."""

from __future__ import annotations

import uuid

import redis

from schemas.events import ChangeEvent
from schemas.reembed import StreamCursor
from worker.features.reembed.changes import fold, positions, read_changes
from worker.pipeline.keys import WorkerKeys

A, B, C = (str(uuid.uuid4()) for _ in range(3))


def ev(op: str, memory_id: str = "", user: str = "u") -> ChangeEvent:
    return ChangeEvent(event_id=f"{user}:t:1:{uuid.uuid4().hex}", user_id=user, memory_id=memory_id, op=op)  # type: ignore[arg-type]


def test_the_last_event_of_a_memory_wins_and_a_forget_drops_what_came_before() -> None:
    changes = fold([ev("insert", A), ev("update", A), ev("insert", B), ev("insert", C, user="v"), ev("delete", A)])
    assert changes.last == {A: ("u", "delete"), B: ("u", "insert"), C: ("v", "insert")}
    changes = fold([ev("forget"), ev("insert", B)], changes)
    assert changes.last == {B: ("u", "insert"), C: ("v", "insert")}
    assert changes.forgotten == {"u": {B}}
    assert fold([ev("insert", "not-a-point-id")]).last == {}


def test_reads_stop_at_the_tail_and_notice_trimmed_entries(redis_client: redis.Redis, prefix: str) -> None:
    keys = WorkerKeys(prefix)
    stream = keys.events
    assert positions(redis_client, keys) == {stream: StreamCursor()}  # no stream yet
    start = positions(redis_client, keys)
    for memory_id in (A, B):
        redis_client.xadd(
            stream,
            dict(zip(ev("insert", memory_id).fields()[::2], ev("insert", memory_id).fields()[1::2], strict=True)),
        )
    changes, after, lost = read_changes(redis_client, keys, start)
    assert (set(changes.last), after[stream].added, lost) == ({A, B}, 2, False)
    nothing, again, lost = read_changes(redis_client, keys, after)
    assert (len(nothing), again, lost) == (0, after, False)
    fields = ev("update", C).fields()
    for _ in range(3):
        redis_client.xadd(stream, dict(zip(fields[::2], fields[1::2], strict=True)))
    redis_client.xtrim(stream, maxlen=1, approximate=False)  # two of the three unread entries are gone
    changes, _, lost = read_changes(redis_client, keys, after)
    assert lost and set(changes.last) == {C}
