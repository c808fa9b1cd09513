"""Bringing the new collection up to date with what changed, before and after the switch.

Before the switch the old collection is the truth and only the re-embed writes the new one: a
changed memory is copied again if the old one differs, removed if the old one is gone, and a
forgotten user's points are removed except those written after the forget.

After the switch writers write the new collection, but one that looked the alias up before the
switch may still write the old one (``MemoryStore.apply`` then writes the new one too, and this
pass is the safety net). The last event of a memory says what its final state is: after an
insert or update, the newer alive point of the two wins (conditional copy); after a delete or
merge, an alive point in the new collection whose old twin is gone or tombstoned is removed
(only if unchanged since it was looked at). A forget removes the user everywhere by itself;
the pass only takes back what it copied for that user.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from worker.features.reembed.changes import Changes, PointId
from worker.features.reembed.transfer import Transfer, alive, freshness

UPSERTS = ("insert", "update")


def _chunks(items: list[PointId], size: int) -> list[list[PointId]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _own(payload: dict[str, Any] | None, user_id: str) -> bool:
    """Defence in depth: an event's memory id must be its user's point."""
    return payload is None or payload.get("user_id") == user_id


def before_switch(transfer: Transfer, changes: Changes, batch: int) -> int:
    """Make the new collection match the old one for every changed memory; returns how many
    points were copied or removed."""
    done = 0
    for user_id, keep in changes.forgotten.items():
        transfer.purge_user(user_id, keep)
    for chunk in _chunks(list(changes.last), batch):
        old = transfer.fetch(transfer.source, chunk)
        new = transfer.fetch(transfer.target, chunk)
        stale = [
            (pid, old[pid])
            for pid in chunk
            if pid in old and _own(old[pid], changes.last[pid][0]) and new.get(pid) != old[pid]
        ]
        gone = [pid for pid in chunk if pid not in old and pid in new]
        done += transfer.copy(stale) + transfer.delete(gone)
    return done


@dataclass
class AfterSwitch:
    """The passes after the switch; remembers what it copied, to take it back after a forget."""

    transfer: Transfer
    batch: int
    copied: dict[str, dict[PointId, dict[str, Any]]] = field(default_factory=dict)

    def apply(self, changes: Changes) -> int:
        done = 0
        for user_id, keep in changes.forgotten.items():
            for pid, payload in self.copied.pop(user_id, {}).items():
                if pid not in keep:
                    self.transfer.delete_if_unchanged(pid, payload)
        for chunk in _chunks(list(changes.last), self.batch):
            old = self.transfer.fetch(self.transfer.source, chunk)
            new = self.transfer.fetch(self.transfer.target, chunk)
            for pid in chunk:
                user_id, op = changes.last[pid]
                if _own(old.get(pid), user_id) and _own(new.get(pid), user_id):
                    done += self._one(pid, user_id, op, old.get(pid), new.get(pid))
        return done

    def _one(self, pid: PointId, user_id: str, op: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> int:
        if op in UPSERTS:
            if alive(old) and (not alive(new) or freshness(old) > freshness(new)):  # type: ignore[arg-type]
                return self._copy(pid, user_id, old)  # type: ignore[arg-type]
            return 0
        if not alive(new):  # deleted in the new collection (or never there): done
            return 0
        if old is None:
            self.transfer.delete_if_unchanged(pid, new)  # type: ignore[arg-type]
            return 1
        if not alive(old):  # a tombstone written to the old collection
            return self._copy(pid, user_id, old)
        return 0

    def _copy(self, pid: PointId, user_id: str, payload: dict[str, Any]) -> int:
        self.transfer.copy([(pid, payload)], conditional=True)
        self.copied.setdefault(user_id, {})[pid] = payload
        return 1


def compare_all(transfer: Transfer, batch: int, on_page: Callable[[], None] | None = None) -> int:
    """Before the switch: page through both collections and fix every difference (used once, and
    whenever events were trimmed unread: events lost by a crashed non-journaled writer or a small
    ``REVERIE_EVENTS_MAX_LEN`` cannot leave a difference behind). Returns the points fixed."""
    fixed = 0
    for collection, other in ((transfer.source, transfer.target), (transfer.target, transfer.source)):
        offset: PointId | None = None
        while True:
            points, offset = transfer.page(collection, offset, batch)
            there = transfer.fetch(other, [p.id for p in points])
            if collection == transfer.source:  # missing or different in the new collection
                fixed += transfer.copy(
                    [(p.id, p.payload or {}) for p in points if there.get(p.id) != (p.payload or {})]
                )
            else:  # in the new collection only: gone from the old one
                fixed += transfer.delete([p.id for p in points if p.id not in there])
            if on_page is not None:
                on_page()
            if offset is None or not points:
                break
    return fixed
