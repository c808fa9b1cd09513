"""What changed during the re-embed, from the change events (``WorkerKeys.event_streams()``).

Every committed memory change is one event, written after its Qdrant write (a forget's event
comes first, then its deletion), so replaying the events from a position taken before the copy
finds every memory written since. Reading stops at each stream's tail as of the start of the
pass, and the stream's ``entries-added`` counter tells whether entries were trimmed unread
(``REVERIE_EVENTS_MAX_LEN`` too small for the re-embed): then the caller compares the whole
collections instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import redis

from producer.memories.layout import point_id
from producer.text import as_text
from schemas.events import ChangeEvent
from schemas.reembed import StreamCursor
from worker.memory.events import decode_entries
from worker.pipeline.keys import WorkerKeys

CHUNK = 1000
PointId = str | int


@dataclass
class Changes:
    """The last change of each memory, and the users forgotten meanwhile (pure fold)."""

    last: dict[PointId, tuple[str, str]] = field(default_factory=dict)
    """point id → (user id, op of its last event after its user's last forget)."""
    forgotten: dict[str, set[PointId]] = field(default_factory=dict)
    """user → the point ids written after the user's last forget (the only ones that may stay)."""

    def __len__(self) -> int:
        return len(self.last) + len(self.forgotten)


def fold(events: Iterable[ChangeEvent], into: Changes | None = None) -> Changes:
    """Fold events, oldest first (one user's events are in one stream, in commit order)."""
    out = Changes() if into is None else into
    for event in events:
        if event.op == "forget":
            out.forgotten[event.user_id] = set()
            out.last = {pid: v for pid, v in out.last.items() if v[0] != event.user_id}
            continue
        try:
            pid = point_id(event.memory_id)
        except ValueError:
            continue  # not a memory of the store (nothing to copy)
        out.last[pid] = (event.user_id, event.op)
        if event.user_id in out.forgotten:
            out.forgotten[event.user_id].add(pid)
    return out


def tail(client: redis.Redis, stream: str) -> StreamCursor:
    """The stream's newest id and its ``entries-added`` counter, read together (``XINFO``)."""
    try:
        info = client.xinfo_stream(stream)
    except redis.exceptions.ResponseError:  # no such key: no event yet
        return StreamCursor()
    return StreamCursor(last_id=as_text(info["last-generated-id"]), added=int(info["entries-added"]))


def positions(client: redis.Redis, keys: WorkerKeys) -> dict[str, StreamCursor]:
    """Where every stream stands now: the re-embed replays what comes after."""
    return {stream: tail(client, stream) for stream in keys.event_streams()}


def read_changes(
    client: redis.Redis, keys: WorkerKeys, cursors: dict[str, StreamCursor]
) -> tuple[Changes, dict[str, StreamCursor], bool]:
    """The changes after ``cursors``, the cursors after them, and whether entries were lost."""
    changes = Changes()
    after: dict[str, StreamCursor] = {}
    lost = False
    for stream in keys.event_streams():
        start = cursors.get(stream, StreamCursor())
        end = tail(client, stream)
        read = 0
        position = start.last_id
        while end.last_id != position:
            entries = client.xrange(stream, min=f"({position}", max=end.last_id, count=CHUNK)
            if not entries:
                break
            read += len(entries)
            position = as_text(entries[-1][0])
            fold(decode_entries(entries), changes)
        lost |= end.added - start.added != read
        after[stream] = end
    return changes, after, lost
