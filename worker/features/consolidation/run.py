"""Scheduled batch consolidation (Celery beat via celery-redbeat): per user with memory changes
since the last run, merge near-duplicate memories and apply retention rules per kind; in
``flush`` mode also make every pending thread due now, regardless of its debounce.

- **Which users.** FINALIZE (and the agent tools) ``ZADD`` the user to ``changed_ss`` with the
  time of the change; a run takes the users it sees and un-marks each one only if it did not
  change again meanwhile (CLEAR_CHANGED), so no change is missed.
- **Serialised with reflections.** A user is consolidated under the same per-user lease as a
  reflection; a busy user is skipped and stays marked for the next run.
- **Merge.** Memories of one (kind, schema, namespace) whose vectors have cosine similarity
  >= ``consolidate_similarity`` form a group (single linkage). The newest survives and keeps its
  id and ``created_at``; with a model configured, its content becomes the model's merge of the
  group (validated against the schema; any failure falls back to newest-wins).
- **Retention.** ``retention={"episode": {"ttl_days": 90, "max_count": 200}}``: older than the TTL
  (by ``updated_at``) or beyond the newest ``max_count`` of the kind are deleted.
- Every removal and merge is written to the memory history, and as a change event (``merge`` for a
  memory folded into its survivor, ``update`` for the survivor's merged content, ``delete`` for
  expiry), exactly once: the run's ops, entries and events are journaled before Qdrant is
  written and recorded by one script that deletes the journal (``worker.memory.changes``). A run
  killed in between is finished by the user's next writer; each run first finishes what a dead
  one left.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from schemas.events import ChangeEvent
from schemas.memory import HistoryEntry, MemoryRecord, MemorySource
from schemas.reflection import ChangeJournal, JournaledWrite, MemoryOp
from worker.features.consolidation.decisions import Item, near_duplicate_groups, retention_victims
from worker.features.consolidation.merge import llm_merge
from worker.memory.changes import Fault
from worker.memory.events import event_for_op
from worker.memory.history import entry_for_op
from worker.pipeline.faults import crash_point

if TYPE_CHECKING:
    from worker.runtime import Runtime

Progress = Callable[[dict[str, int]], None]


@dataclass
class UserReport:
    user_id: str
    busy: bool = False
    merged: int = 0
    expired: int = 0
    llm_calls: int = 0

    def counts(self) -> dict[str, int]:
        """The summary a task result and ``reverie consolidate USER --json`` show."""
        return {"users": 1, "busy": int(self.busy), "merged": self.merged, "expired": self.expired}


@dataclass
class ConsolidationReport:
    users: int = 0
    done: int = 0
    busy: int = 0
    merged: int = 0
    expired: int = 0
    flushed: int = 0
    llm_calls: int = 0
    left: int = 0
    """Users not reached within the time budget (still marked: the next run takes them)."""
    reports: list[UserReport] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {k: v for k, v in asdict(self).items() if isinstance(v, int)}


def _delete(record: MemoryRecord, reason: str, survivor: str | None = None) -> tuple[MemoryOp, str]:
    op = MemoryOp(op="delete", id=record.id, kind=record.kind, previous_content=record.content)
    return op, reason if survivor is None else f"{reason}:{survivor}"


def consolidate_user(
    runtime: Runtime, user_id: str, *, now_ms: int | None = None, fault: Fault = crash_point
) -> UserReport:
    """Merge near-duplicates and apply retention for one user, under the user's lease (after
    finishing the user's changes a dead process left journaled). ``fault``: the crash tests' seam."""
    now_ms = now_ms or int(time.time() * 1000)
    settings = runtime.settings
    report = UserReport(user_id)
    coordinator = runtime.coordinator
    token = coordinator.acquire_lease(user_id, int(settings.lease_s * 1000))
    if token <= 0:  # a reflection of this user is running: skip, the user stays marked
        report.busy = True
        return report
    try:
        runtime.changes.replay(user_id, fault=fault)
        items = [Item(r, v) for r, v in runtime.store.list_vectors(user_id, limit=10_000)]
        updates: list[tuple[MemoryOp, MemoryRecord]] = []
        deletes: list[tuple[MemoryOp, str]] = []
        gone: set[str] = set()
        for group in near_duplicate_groups(items, settings.consolidate_similarity):
            survivor, *losers = sorted(group, key=lambda r: (r.updated_at, r.version, r.id), reverse=True)
            merged = llm_merge(runtime, survivor, losers) if settings.model else None
            if merged is not None:
                report.llm_calls += merged.llm_calls
                if merged.content != survivor.content:
                    updates.append((_merged_update(survivor, merged.content, merged.data), survivor))
            for loser in losers:
                deletes.append(_delete(loser, "merge", survivor.id))
                gone.add(loser.id)
            report.merged += len(losers)
        remaining = [i.record for i in items if i.record.id not in gone]
        for victim in retention_victims(remaining, settings.retention, now_ms):
            deletes.append(_delete(victim, "expire"))
            report.expired += 1
        journal = _journal(user_id, updates, deletes, now_ms)
        if journal.writes:
            runtime.changes.commit(journal, fault=fault)
    finally:
        coordinator.release_lease(user_id, token)
    return report


def _merged_update(survivor: MemoryRecord, content: str, data: dict[str, Any]) -> MemoryOp:
    return MemoryOp(
        op="update",
        id=survivor.id,
        kind=survivor.kind,
        schema_name=survivor.schema_name,
        content=content,
        data=data,
        created_at_ms=int(survivor.created_at.timestamp() * 1000),
        version=survivor.version + 1,
        ns=survivor.ns,
        previous_content=survivor.content,
    )


def _journal(
    user_id: str,
    updates: list[tuple[MemoryOp, MemoryRecord]],
    deletes: list[tuple[MemoryOp, str]],
    now_ms: int,
) -> ChangeJournal:
    """The run's change (pure): its Qdrant writes, history entries and events, from ``now_ms``."""
    rid = f"consolidate:{now_ms}"
    entries: list[HistoryEntry] = []
    events: list[ChangeEvent] = []
    writes: list[JournaledWrite] = []
    for op, record in updates:  # one write per survivor: its payload keeps its own source
        writes.append(JournaledWrite(ops=[op], source=record.source))
        entries.append(entry_for_op(op, at_ms=now_ms, reflection=rid, thread_id=None))
        events.append(event_for_op(user_id, op, source=rid, at_ms=now_ms, index=len(events)))
    if deletes:  # deletes carry no payload: the source is unused
        writes.append(JournaledWrite(ops=[op for op, _ in deletes], source=MemorySource()))
    for op, reason in deletes:
        entry = entry_for_op(op, at_ms=now_ms, reflection=rid, thread_id=None)
        entries.append(entry.model_copy(update={"op": reason.split(":", 1)[0], "new_content": reason}))
        why, _, survivor = reason.partition(":")
        merge = why == "merge"
        events.append(
            event_for_op(
                user_id,
                op,
                source=rid,
                at_ms=now_ms,
                index=len(events),
                event_op="merge" if merge else "delete",
                into=survivor if merge else "",
            )
        )
    return ChangeJournal(
        change_id=rid, user_id=user_id, at_ms=now_ms, writes=writes, entries=entries, events=events, mark_changed=False
    )


def consolidate_all(
    runtime: Runtime,
    *,
    flush: bool = False,
    limit: int = 10_000,
    progress: Progress | None = None,
    time_budget_s: float | None = None,
) -> ConsolidationReport:
    """Consolidate every user changed since the last run (and flush pending buffers first).
    With ``time_budget_s`` the run stops between users when the budget is spent (a Celery task
    must end within its time limit); users not reached stay marked for the next run."""
    deadline = None if time_budget_s is None else time.monotonic() + time_budget_s
    report = ConsolidationReport()
    if flush:
        report.flushed = runtime.coordinator.flush_due(limit)
    changed = runtime.history.changed_users(limit)
    report.users = len(changed)
    if progress is not None:
        progress(report.counts())
    for n, (user_id, score) in enumerate(changed):
        if n and deadline is not None and time.monotonic() > deadline:  # always make progress
            report.left = len(changed) - n
            break
        user = consolidate_user(runtime, user_id)
        report.reports.append(user)
        report.done += 1
        report.busy += user.busy
        report.merged += user.merged
        report.expired += user.expired
        report.llm_calls += user.llm_calls
        if not user.busy:
            runtime.history.clear_changed(user_id, score)
        if progress is not None:
            progress(report.counts())
    return report
