"""Change events: one stream entry per committed memory change, ids only, written by the same
script as the change (reflections, tools, consolidation) or the same MULTI (forget)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from schemas.reflection import ReflectArgs
from tests.conftest import uid
from tests.support.crash import journal_then_die
from tests.support.llm_scripts import insert_each_user_turn
from tests.support.scripted_llm import tool_calls_reply
from tests.worker.features.test_consolidation import put
from worker.features.forget import forget_user
from worker.memory.events import read_events

CONTENT = ("I keep bees", "I live in Kyoto", "I drink oolong", "I moved to Osaka")


def _events(system: Any) -> list[Any]:
    return read_events(system.redis, system.runtime.coordinator.keys.events, count=10_000)


def _llm_system(make_system: Any, scripted: Any, **overrides: Any) -> Any:
    return make_system(
        model=scripted.model, llm_api_base=scripted.base_url, llm_api_key="sk-test", enable_deletes=True, **overrides
    )


def _no_content(system: Any) -> None:
    raw = system.redis.xrange(system.runtime.coordinator.keys.events)
    blob = b" ".join(v for _, fields in raw for v in fields.values())
    assert raw and not any(c.encode() in blob for c in CONTENT), "no memory content in the stream"


def test_a_commit_of_inserts_updates_and_deletes_gives_one_event_per_op(make_system, scripted) -> None:
    """Each op of each commit is one event whose ids match the memory and its history entry."""
    system = _llm_system(make_system, scripted)
    user = uid("u")
    scripted.enqueue(
        tool_calls_reply([("insert_memory", {"content": CONTENT[0]}), ("insert_memory", {"content": CONTENT[1]})])
    )
    system.producer.submit(user, "t", [{"role": "user", "content": "bees and Kyoto"}])
    system.wait_for(lambda: len(system.committed(user)) == 1, what="first commit")
    scripted.enqueue(
        tool_calls_reply(
            [
                ("update_memory", {"memory_id": "0", "content": CONTENT[3]}),
                ("delete_memory", {"memory_id": "1"}),
                ("insert_memory", {"content": CONTENT[2]}),
            ]
        )
    )
    system.producer.submit(user, "t", [{"role": "user", "content": "moved, no bees, oolong"}])
    system.wait_for(lambda: len(system.committed(user)) == 2, what="second commit")

    events = _events(system)
    history = system.runtime.history.history(user)
    assert [e.op for e in events[:2]] == ["insert", "insert"]
    assert sorted(e.op for e in events[2:]) == ["delete", "insert", "update"]
    assert [e.memory_id for e in events] == [h.memory_id for h in history]
    assert [e.op for e in events] == [{"tombstone": "delete"}.get(h.op, h.op) for h in history]
    assert len({e.event_id for e in events}) == 5 and len({e.stream_id for e in events}) == 5
    gens = [c.generation for c in system.committed(user)]
    assert [e.generation for e in events] == [gens[0]] * 2 + [gens[1]] * 3
    assert all(e.user_id == user and e.thread_id == "t" and e.kind == "semantic" and e.ts_ms > 0 for e in events)
    for n, e in enumerate(events):
        parts = e.event_id.split(":")
        assert parts[:3] == [user, "t", f"g{e.generation}"] and parts[4] == str(n if n < 2 else n - 2)
    second = {e.op: e.memory_id for e in events[2:]}
    assert {second["update"], second["delete"]} == {events[0].memory_id, events[1].memory_id}
    assert {m.id for m in system.runtime.store.list(user)} == {second["update"], second["insert"]}
    _no_content(system)


def test_a_journal_replayed_after_a_crash_gives_each_event_once(make_system, scripted) -> None:
    """A worker dies after the Qdrant write, before FINALIZE: the replay writes the events once,
    and a late FINALIZE of the same plan (or a stale token's) writes nothing more."""
    system = _llm_system(make_system, scripted, after_seconds=30)
    runtime, coordinator = system.runtime, system.runtime.coordinator
    user = uid("u")
    system.producer.submit(user, "t", [{"role": "user", "content": "remember me", "id": "m1"}])
    plan, token = journal_then_die(system, user, "t", CONTENT[:3])
    generation = plan.generation
    assert _events(system) == [], "nothing before FINALIZE"
    result = runtime.reflector.run(ReflectArgs(user_id=user, thread_id="t", generation=generation))
    assert result.outcome == "replayed" and scripted.chat_calls == 0
    events = _events(system)
    assert [e.memory_id for e in events] == [op.id for op in plan.ops]
    assert [e.event_id for e in events] == [f"{user}:t:g{generation}:1000:{i}" for i in range(3)]
    again = coordinator.acquire_lease(user, 60_000)
    assert coordinator.finalize(again, plan) == "no_journal"  # the journal went with the first
    assert coordinator.finalize(token, plan) == "lost_lease"  # the dead worker's token
    coordinator.release_lease(user, again)
    assert len(_events(system)) == 3


def test_tools_consolidation_merges_and_forget_write_their_events(make_system) -> None:
    """A merge is a ``merge`` event naming the survivor, expiry a ``delete``; forget adds one
    ``forget`` event with no memory id and keeps the user's earlier events (ids only)."""
    from worker.features.agent_tools import ManageArgs, MemoryTools
    from worker.features.consolidation import consolidate_user

    system = make_system(retention={"episode": {"ttl_days": 30}})
    runtime, user = system.runtime, uid("u")
    now = int(time.time() * 1000)
    old = put(runtime, user, "I love miso ramen", at_ms=now - 2_000)
    new = put(runtime, user, "I love miso ramen!", at_ms=now - 1_000)
    stale = put(runtime, user, "Talked about ramen", kind="episode", at_ms=now - 40 * 86_400_000)
    made = MemoryTools(runtime, user).manage_memory(ManageArgs(action="create", content=CONTENT[0]))
    assert consolidate_user(runtime, user).merged == 1
    forget_user(runtime, user)
    events = _events(system)
    tool, merge, expire, forget = events
    assert (tool.op, tool.memory_id, tool.event_id.split(":")[1]) == ("insert", made["id"], "tool")
    assert (merge.op, merge.memory_id, merge.into) == ("merge", old, new)
    assert (expire.op, expire.memory_id, expire.kind) == ("delete", stale, "episode")
    assert merge.event_id.startswith(f"{user}:consolidate:") and merge.event_id != expire.event_id
    assert (forget.op, forget.user_id, forget.memory_id) == ("forget", user, "")
    assert runtime.history.history(user) == []  # the history is gone; the stream keeps only ids


def test_events_max_len_zero_writes_none_and_the_cap_trims(make_system, redis_client) -> None:
    """0 turns events off everywhere; a cap keeps about that many (MAXLEN ~)."""
    from worker.pipeline.coordinator import Coordinator

    system = make_system(events_max_len=0)
    runtime, user = system.runtime, uid("u")
    system.producer.submit(user, "t", [{"role": "user", "content": "I keep bees"}])
    system.wait_for(lambda: len(system.committed(user)) == 1, what="commit")
    put(runtime, user, "I love miso ramen")
    forget_user(runtime, user)
    assert not redis_client.exists(runtime.coordinator.keys.events)

    keys = runtime.coordinator.keys
    capped = Coordinator(redis_client, keys, events_max_len=10)
    for n in range(60):
        u = uid("c")
        token = capped.acquire_lease(u, 10_000)
        op_ids = [str(uuid.uuid4()) for _ in range(5)]
        plan = _plan(u, op_ids, n)
        assert capped.prepare(token, plan, "finish") == "forgotten"  # no thread hash: journal by hand
        redis_client.set(keys.journal(u, "t"), plan.model_dump_json())
        assert capped.finalize(token, plan) == "ok"
        redis_client.delete(keys.thread(u, "t"), keys.history(u))
    length = redis_client.xlen(keys.events)
    assert 10 <= length < 200, length  # approximate trimming: whole macro nodes at a time
    redis_client.zrem(keys.changed_ss, *[u.decode() for u in redis_client.zrange(keys.changed_ss, 0, -1)])


def _plan(user: str, op_ids: list[str], n: int) -> Any:
    from schemas.reflection import CommitPlan, MemoryOp

    ops = [MemoryOp(op="insert", id=i, content="x") for i in op_ids]
    return CommitPlan(user_id=user, thread_id="t", generation=1, turn_count=0, namespace="m", ops=ops, created_ms=n)


def test_the_default_reflection_path_writes_events(make_system, scripted) -> None:
    """With the default settings (events on) an ordinary pipeline commit is in the stream."""
    scripted.set_responder(insert_each_user_turn)
    system = make_system(model=scripted.model, llm_api_base=scripted.base_url, llm_api_key="sk-test")
    user = uid("u")
    system.producer.submit(user, "t", [{"role": "user", "content": CONTENT[2]}])
    system.wait_for(lambda: len(system.committed(user)) == 1, what="commit")
    [event] = _events(system)
    assert event.op == "insert" and event.memory_id == system.runtime.store.list(user)[0].id
    _no_content(system)
