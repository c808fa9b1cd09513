"""Journaled changes outside reflections (``worker.memory.changes``): the record step is a no-op
once the journal entry is gone, and the next reflection of the user replays what a dead tool
call or consolidation run left, found by the snapshot it takes anyway."""

from __future__ import annotations

import time

import pytest

from tests.conftest import uid
from tests.support.crash import Died, assert_one_event_per_change, die_at, user_events
from worker.features.agent_tools import MANAGE, MemoryTools

DIE = "change_after_qdrant_write"


def _dead_tool_call(runtime, user: str, content: str) -> None:
    with pytest.raises(Died):
        MemoryTools(runtime, user, fault=die_at(DIE)).execute(MANAGE, {"action": "create", "content": content})


def test_two_replayers_of_one_change_record_it_once(make_system) -> None:
    """Both replayers write Qdrant; the record script of the second finds the journal entry
    gone and writes no history entry, no event and no changed mark."""
    system = make_system()
    runtime, user = system.runtime, uid("u")
    _dead_tool_call(runtime, user, "Keeps bees")
    [journal] = runtime.changes.pending(user)
    record = {"events": journal.events, "change_id": journal.change_id}
    assert runtime.history.record(user, journal.entries, **record) == 1
    runtime.redis.zrem(runtime.coordinator.keys.changed_ss, user)
    assert runtime.history.record(user, journal.entries, **record) == -1
    assert runtime.redis.zscore(runtime.coordinator.keys.changed_ss, user) is None
    assert len(assert_one_event_per_change(system, user)) == 1
    assert runtime.changes.pending(user) == []


def test_the_next_reflection_replays_an_abandoned_tool_change(make_system) -> None:
    """The snapshot script reports the user's change journal (no extra round trip when there is
    none); the reflection replays an abandoned entry under its lease before reflecting."""
    system = make_system(lease_s=1.1)
    runtime, user = system.runtime, uid("u")
    assert runtime.coordinator.snapshot(user, "t", 10).changes is False
    _dead_tool_call(runtime, user, "Keeps bees")
    assert runtime.coordinator.snapshot(user, "t", 10).changes is True
    assert user_events(system, user) == []
    time.sleep(1.2)  # older than the lease: abandoned
    system.producer.submit(user, "t", [{"role": "user", "content": "I live in Kyoto"}])
    system.wait_for(lambda: len(system.committed(user)) == 1, what="reflection")
    assert runtime.changes.pending(user) == []
    events = assert_one_event_per_change(system, user)
    bees = [m.id for m in runtime.store.list(user) if m.content == "Keeps bees"]
    assert [e.memory_id for e in events if e.memory_id in bees] == bees, "the tool change, once"
    assert len(events) >= 2, "and the reflection's own"
