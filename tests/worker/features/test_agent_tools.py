"""Memory tools for agents: manage_memory and search_memory, bound to one user."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import uid
from tests.support import food
from tests.support.crash import Died, assert_one_event_per_change, die_at, user_events
from worker.features.agent_tools import MANAGE, SEARCH, MemoryTools, memory_tool_specs


def test_tool_definitions_are_openai_format() -> None:
    specs = {s["function"]["name"]: s for s in memory_tool_specs()}
    assert set(specs) == {MANAGE, SEARCH}
    manage = specs[MANAGE]["function"]["parameters"]
    assert manage["properties"]["action"]["enum"] == ["create", "update", "delete"]
    assert "user_id" not in json.dumps(specs)  # the user is never a tool argument


def test_create_update_delete_and_search_within_one_user(make_system) -> None:
    """Update keeps id and created_at and bumps version; every change is in the history."""
    system = make_system()
    user = uid("alice")
    tools = MemoryTools(system.runtime, user, thread_id="chat-1")
    created = tools.execute(MANAGE, {"action": "create", "content": "Prefers window seats"})
    before = system.runtime.store.get(user, [created["id"]])[0]
    updated = tools.execute(
        MANAGE, json.dumps({"action": "update", "id": created["id"], "content": "Prefers aisle seats"})
    )
    assert updated == {"id": created["id"], "action": "update", "version": 2}
    [after] = system.runtime.store.list(user)
    assert (after.id, after.created_at, after.content) == (before.id, before.created_at, "Prefers aisle seats")
    found = tools.execute(SEARCH, {"query": "aisle seats"})
    assert [m["id"] for m in found["memories"]] == [created["id"]]
    assert tools.execute(MANAGE, {"action": "delete", "id": created["id"]})["action"] == "delete"
    assert system.runtime.store.list(user) == []
    history = system.runtime.history.history(user, created["id"])
    assert [(e.op, e.old_content) for e in history] == [
        ("insert", None),
        ("update", "Prefers window seats"),
        ("delete", "Prefers aisle seats"),
    ]
    assert all(e.reflection_id == "tool:manage_memory" for e in history)


def test_tools_cannot_reach_another_users_namespace(make_system) -> None:
    """Bob's tools see none of Alice's memories and cannot update or delete them by id; the
    answer for her real id is the same as for an id that does not exist."""
    system = make_system(profiles=food.ALL)
    alice, bob = uid("alice"), uid("bob")
    secret = MemoryTools(system.runtime, alice).execute(MANAGE, {"action": "create", "content": "Alice's PIN hint"})
    bob_tools = MemoryTools(system.runtime, bob)
    for action in ("update", "delete"):
        answer = bob_tools.execute(MANAGE, {"action": action, "id": secret["id"], "content": "pwned"})
        assert answer == {"error": f"no memory with id {secret['id']!r}"}
    assert bob_tools.execute(MANAGE, {"action": "delete", "id": "not-a-uuid"}) == {
        "error": "no memory with id 'not-a-uuid'"
    }
    assert bob_tools.execute(SEARCH, {"query": "Alice's PIN hint"}) == {"memories": []}
    assert bob_tools.execute(MANAGE, {"action": "create", "content": "x", "user_id": alice})["error"].startswith(
        "invalid arguments"
    )
    [kept] = system.runtime.store.list(alice)
    assert kept.content == "Alice's PIN hint" and kept.version == 1
    # Same user, other profile namespace: invisible too.
    food_tools = MemoryTools(system.runtime, alice, profile="food")
    assert food_tools.execute(SEARCH, {"query": "PIN"}) == {"memories": []}
    assert "error" in food_tools.execute(MANAGE, {"action": "delete", "id": secret["id"]})
    assert system.runtime.history.history(bob) == []


def test_history_api_for_ops(make_system) -> None:
    """``HistoryLog.history(user, memory_id)`` is what ``reverie history`` calls."""
    system = make_system()
    history = system.runtime.history.history
    user = uid("u")
    tools = MemoryTools(system.runtime, user)
    first = tools.execute(MANAGE, {"action": "create", "content": "one"})["id"]
    tools.execute(MANAGE, {"action": "create", "content": "two"})
    assert [e.new_content for e in history(user, first)] == ["one"]
    assert len(history(user)) == 2


def test_a_tool_write_killed_before_its_record_step_gets_exactly_one_event(make_system) -> None:
    """Killed between the Qdrant write and the record step: a call at once leaves that young
    journal alone (it may be in flight); once older than the lease, the next call replays it,
    and a replay killed at the same step is replayed again: one entry and one event per change."""
    system = make_system(lease_s=1.1)
    runtime, user = system.runtime, uid("u")
    with pytest.raises(Died):
        MemoryTools(runtime, user, fault=die_at("change_after_qdrant_write")).execute(
            MANAGE, {"action": "create", "content": "Keeps bees"}
        )
    [bees] = runtime.store.list(user)
    assert runtime.history.history(user) == [] and user_events(system, user) == []
    tools = MemoryTools(runtime, user)
    kyoto = tools.execute(MANAGE, {"action": "create", "content": "Lives in Kyoto"})["id"]
    assert [j.events[0].memory_id for j in runtime.changes.pending(user)] == [bees.id], "not replayed while young"
    assert [e.memory_id for e in user_events(system, user)] == [kyoto]

    time.sleep(1.2)  # the dead call's journal is older than the lease now: abandoned
    with pytest.raises(Died):  # the replay itself dies at the same step, before its own change
        MemoryTools(runtime, user, fault=die_at("change_after_qdrant_write")).execute(
            MANAGE, {"action": "delete", "id": kyoto}
        )
    assert len(runtime.changes.pending(user)) == 1
    tools.execute(MANAGE, {"action": "update", "id": kyoto, "content": "Lives in Osaka"})
    assert runtime.changes.replay(user, now_ms=int(time.time() * 1000) + 10**7) == 0, "nothing left"

    events = assert_one_event_per_change(system, user)
    assert [(e.memory_id, e.op) for e in events] == [(kyoto, "insert"), (bees.id, "insert"), (kyoto, "update")]
    assert not system.redis.exists(runtime.coordinator.keys.changes(user)), "journal deleted"
    assert sorted(m.content for m in runtime.store.list(user)) == ["Keeps bees", "Lives in Osaka"]
