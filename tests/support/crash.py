"""A worker that dies between journaling its commit and finalizing it, played in-process: the
state a SIGKILL at that step leaves (journal in Redis, memories in Qdrant, lease run out); the
same for a journaled tool or consolidation change (``die_at``); and the events check."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from schemas import MemorySource
from schemas.events import ChangeEvent
from schemas.reflection import CommitPlan
from worker.memory.events import read_events
from worker.memory.extraction.base import PlannedOp
from worker.memory.planning import build_plan


def journal_then_die(system: Any, user: str, thread: str, contents: list[str]) -> tuple[CommitPlan, int]:
    """Insert ``contents`` as a reflection of ``user``/``thread`` would, up to and including the
    Qdrant write, then drop the lease as an expired one would be. Returns the journaled plan and
    the dead worker's fencing token."""
    runtime, coordinator = system.runtime, system.runtime.coordinator
    token = coordinator.acquire_lease(user, 60_000)
    snap = coordinator.snapshot(user, thread, 100)
    plan = build_plan(
        user_id=user,
        thread_id=thread,
        generation=snap.generation,
        namespace=runtime.settings.namespace,
        turns=snap.turns,
        existing=[],
        ops=[PlannedOp("insert", "Memory", {"content": c}, c) for c in contents],
        embedder=runtime.embedder,
        kind="semantic",
        now_ms=1_000,
    )
    assert coordinator.prepare(token, plan, "rollback") == "ok"
    runtime.store.apply(user, plan.ops, source=MemorySource(thread_id=thread), now_ms=1_000)
    system.redis.delete(coordinator.keys.lease(user))  # the lease expired with the dead worker
    return plan, token


class Died(BaseException):
    """The in-process stand-in for a SIGKILL at a fault stage (a BaseException, so that no
    ``except Exception`` on the way handles it; ``finally`` blocks still run)."""


def die_at(stage: str) -> Callable[[str], None]:
    """A ``fault`` hook (``worker.memory.changes.Fault``) that dies at ``stage``."""

    def fault(at: str) -> None:
        if at == stage:
            raise Died(stage)

    return fault


def user_events(system: Any, user: str) -> list[ChangeEvent]:
    keys = system.runtime.coordinator.keys
    return [e for e in read_events(system.redis, keys.shard_for(user).events, count=100_000) if e.user_id == user]


def assert_one_event_per_change(system: Any, user: str) -> list[ChangeEvent]:
    """The user's events: no event id twice, and one event per history entry (same memory ids),
    none missing. Returns them."""
    events = user_events(system, user)
    ids = [e.event_id for e in events]
    assert len(ids) == len(set(ids)), f"an event written twice: {ids}"
    history = system.runtime.history.history(user)
    assert sorted(e.memory_id for e in events) == sorted(h.memory_id for h in history), "one event per change"
    return events
