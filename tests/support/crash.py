"""A worker that dies between journaling its commit and finalizing it, played in-process: the
state a SIGKILL at that step leaves (journal in Redis, memories in Qdrant, lease run out)."""

from __future__ import annotations

from typing import Any

from schemas import MemorySource
from schemas.reflection import CommitPlan
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
