"""Memory history: an audit record of every insert, update and delete, and the per-user
"changed" marks that batch consolidation picks up.

Storage choice: a capped Redis list per user, not Qdrant. History is an audit log, not memory:
it is never searched by similarity, is read by ops for one (user, memory) at a time, and must be
appended in the same atomic step that commits a change (the pipeline's FINALIZE script for a
reflection, ``record_changes.lua`` for a journaled tool call or consolidation run: see
``worker.memory.changes``), so a crash can neither lose an entry nor write it twice. Retention: the newest
``history_max_entries`` entries per user, kept ``history_retention_s`` after the user's last
change (both settings). Qdrant stays the only memory store.

Key names come from the caller (``HistoryKeys``: the pipeline's ``WorkerKeys`` fits), so the
memory model names no Redis key of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, Protocol

from producer.scripts import ScriptSet
from producer.text import as_text
from schemas.events import ChangeEvent, encode_events
from schemas.memory import HistoryEntry
from schemas.reflection import CommitPlan, MemoryOp


class ShardChangeKeys(Protocol):
    """A shard's "changed" set and events stream."""

    @property
    def changed_ss(self) -> str: ...

    @property
    def events(self) -> str: ...


class HistoryKeys(Protocol):
    def history(self, user_id: str) -> str: ...

    def changes(self, user_id: str) -> str: ...

    def shard_for(self, user_id: str) -> ShardChangeKeys: ...

    def all_shards(self) -> Sequence[ShardChangeKeys]: ...


class HistoryScripts(ScriptSet):
    PACKAGE: ClassVar[str] = "worker.memory"
    NAMES: ClassVar[tuple[str, ...]] = ("record_changes", "clear_changed")

    record_changes: Any
    clear_changed: Any


def reflection_id(thread_id: str, generation: int) -> str:
    return f"{thread_id}:g{generation}"


def entry_for_op(op: MemoryOp, *, at_ms: int, reflection: str, thread_id: str | None) -> HistoryEntry:
    """The history entry of one planned write (pure)."""
    return HistoryEntry(
        memory_id=op.id,
        op="tombstone" if op.op == "delete" and op.tombstone else op.op,
        old_content=op.previous_content,
        new_content=None if op.op == "delete" else op.content,
        version=None if op.op == "delete" else op.version,
        reflection_id=reflection,
        thread_id=thread_id,
        at_ms=at_ms,
    )


def entries_from_plan(plan: CommitPlan) -> list[HistoryEntry]:
    """History of a committed reflection, derived from its journal alone (so a replay after a
    crash records exactly the same entries)."""
    rid = reflection_id(plan.thread_id, plan.generation)
    return [entry_for_op(op, at_ms=plan.created_ms, reflection=rid, thread_id=plan.thread_id) for op in plan.ops]


def encode(entries: Iterable[HistoryEntry]) -> list[str]:
    return [e.model_dump_json(exclude_none=True) for e in entries]


class HistoryLog:
    """Append history (and the change events) outside reflections (tools, consolidation), read
    it back, and clear a user's "changed" mark once consolidated."""

    def __init__(
        self, client: Any, keys: HistoryKeys, *, retention_s: int, max_entries: int, events_max_len: int = 0
    ) -> None:
        self.r = client
        self.keys = keys
        self.retention_s = retention_s
        self.max_entries = max_entries
        self.events_max_len = events_max_len
        self.scripts = HistoryScripts(client)

    def record(
        self,
        user_id: str,
        entries: list[HistoryEntry],
        *,
        mark_changed: bool = True,
        events: list[ChangeEvent] | None = None,
        change_id: str = "",
    ) -> int:
        """Append entries and their change events in one script (and mark the user changed for
        the next consolidation). With ``change_id``, also delete that change's journal entry;
        if it is gone already (recorded before), write nothing and return -1."""
        if not entries and not events and not mark_changed and not change_id:
            return 0
        shard = self.keys.shard_for(user_id)
        return int(
            self.scripts.record_changes(
                keys=[self.keys.history(user_id), shard.changed_ss, shard.events, self.keys.changes(user_id)],
                args=[
                    user_id,
                    self.retention_s,
                    self.max_entries,
                    1 if mark_changed else 0,
                    self.events_max_len,
                    encode_events(events or []),
                    change_id,
                    *encode(entries),
                ],
            )
        )

    def history(self, user_id: str, memory_id: str | None = None, *, limit: int | None = None) -> list[HistoryEntry]:
        """A user's history, oldest first; only ``memory_id``'s entries when given. Scans the
        newest ``limit`` entries (default: all kept, at most ``max_entries``)."""
        raw = self.r.lrange(self.keys.history(user_id), -(limit or self.max_entries), -1)
        entries = [HistoryEntry.model_validate_json(x) for x in raw]
        return [e for e in entries if memory_id is None or e.memory_id == memory_id]

    def changed_users(self, limit: int) -> list[tuple[str, float]]:
        """Users marked changed (every shard's), oldest change first, with the mark's score."""
        pipe = self.r.pipeline(transaction=False)
        for shard in self.keys.all_shards():
            pipe.zrange(shard.changed_ss, 0, limit - 1, withscores=True)
        raw = sorted(((score, u) for reply in pipe.execute() for u, score in reply), key=lambda x: x[0])
        return [(as_text(u), float(score)) for score, u in raw[:limit]]

    def clear_changed(self, user_id: str, seen_score: float) -> bool:
        """Unmark a consolidated user, unless it changed again after ``seen_score``."""
        key = self.keys.shard_for(user_id).changed_ss
        return bool(self.scripts.clear_changed(keys=[key], args=[user_id, seen_score]))
