"""Exactly-once memory changes outside reflections (agent tool calls, consolidation runs), with
the journal idea of a reflection's commit, per user:

1. **Journal.** The change's plan (ops with final point ids, its history entries and its change
   events, all derived from one ``at_ms``) goes into the user's ``changes`` hash under its
   change id (``HSET``): the commit point.
2. **Qdrant.** The ops are written (idempotent upserts and deletes).
3. **Record.** One script (``record_changes.lua``) deletes the journal entry and, in the same
   step, appends the history, adds the events and marks the user changed; if the entry is gone
   (recorded already) it writes nothing.

A process killed between 1 and 3 leaves the entry. The next writer of that user (a tool call, a
consolidation run, a reflection: the snapshot script reports the key) replays it before anything
else: steps 2 and 3 again. A replay that dies is replayed again; two replayers at once record
once (step 3's guard). So a change gets one history entry and one event per op, never none, never two.

Concurrency: agent tools do not take the user's lease (a reflection holds it through its model
calls), so an entry may belong to a call that is still running. A replayer takes only entries
older than ``abandoned_after_ms`` (the lease TTL: a writer of Reverie is dead by then, and a
consolidation's own lease has run out), and each change deletes only its own hash field, so two
tool calls of one user at once never replay or delete each other's change.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from schemas.errors import DecodeError
from schemas.reflection import ChangeJournal
from worker.errors import ForeignMemoryError
from worker.memory.history import HistoryKeys, HistoryLog
from worker.observability.logs import get_logger

if TYPE_CHECKING:
    from worker.memory.store import MemoryStore

log = get_logger("reverie.changes")

Fault = Callable[[str], None]
"""Called with a stage name between the steps (``crash_point`` in workers; tests raise)."""


def no_fault(stage: str) -> None:
    """The default fault hook: nothing happens."""


def decode_journal(raw: bytes | str) -> ChangeJournal:
    try:
        return ChangeJournal.model_validate_json(raw)
    except ValueError as e:
        raise DecodeError("change journal does not match ChangeJournal") from e


class ChangeLog:
    """Journal, write and record the changes of tool calls and consolidation; replay leftovers."""

    def __init__(
        self, client: Any, keys: HistoryKeys, store: MemoryStore, history: HistoryLog, *, abandoned_after_ms: int
    ) -> None:
        self.r = client
        self.keys = keys
        self.store = store
        self.history = history
        self.abandoned_after_ms = abandoned_after_ms

    def commit(self, journal: ChangeJournal, *, fault: Fault = no_fault) -> None:
        """Journal the change, write Qdrant, record history and events (steps 1 to 3)."""
        self.r.hset(self.keys.changes(journal.user_id), journal.change_id, journal.model_dump_json())
        fault("change_after_journal")
        self._finish(journal, fault)

    def pending(self, user_id: str) -> list[ChangeJournal]:
        """The user's journaled, unrecorded changes, oldest first (one ``HGETALL``)."""
        raw = self.r.hgetall(self.keys.changes(user_id))
        return sorted((decode_journal(v) for v in raw.values()), key=lambda j: (j.at_ms, j.change_id))

    def replay(self, user_id: str, *, fault: Fault = no_fault, now_ms: int | None = None) -> int:
        """Finish the user's abandoned changes (steps 2 and 3); returns how many this call
        recorded. Entries younger than ``abandoned_after_ms`` may be in flight: left alone."""
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        done = 0
        for journal in self.pending(user_id):
            if now_ms - journal.at_ms < self.abandoned_after_ms:
                continue
            log.info("replaying change journal", user_id=user_id, change_id=journal.change_id)
            done += self._finish(journal, fault, replay=True)
        return done

    def _finish(self, journal: ChangeJournal, fault: Fault, *, replay: bool = False) -> bool:
        try:
            for write in journal.writes:
                self.store.apply(journal.user_id, write.ops, source=write.source, now_ms=journal.at_ms)
        except ForeignMemoryError:
            if not replay:  # refused before anything was written: no change, no journal
                self.r.hdel(self.keys.changes(journal.user_id), journal.change_id)
                raise
            # The journal is the commit point: the change was made, and a later change (one that
            # did not wait for this replay, such as a concurrent tool call) removed the memory.
            log.warning("replayed change targets a removed memory", change_id=journal.change_id)
        fault("change_after_qdrant_write")
        recorded = self.history.record(
            journal.user_id,
            journal.entries,
            mark_changed=journal.mark_changed,
            events=journal.events,
            change_id=journal.change_id,
        )
        return recorded >= 0
