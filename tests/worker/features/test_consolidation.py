"""Batch consolidation: near-duplicate merge (newest wins, or LLM-assisted), retention per kind,
changed-user tracking, flush mode, and the Celery task with progress."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from schemas.memory import MemorySource
from schemas.reflection import MemoryOp
from tests.conftest import uid
from tests.support.crash import Died, assert_one_event_per_change, die_at, user_events
from tests.support.scripted_llm import tool_calls_reply
from worker.features.consolidation import consolidate_all, consolidate_user
from worker.tasks import CONSOLIDATE

DAY_MS = 86_400_000


def put(runtime: Any, user: str, content: str, *, kind: str = "semantic", at_ms: int | None = None) -> str:
    """Write one memory directly, as an old reflection would have."""
    at_ms = at_ms or int(time.time() * 1000)
    op = MemoryOp(
        op="insert",
        id=str(uuid.uuid4()),
        kind=kind,
        content=content,
        data={"content": content},
        created_at_ms=at_ms,
        ns=["memories", user],
    )
    runtime.store.apply(user, [op], source=MemorySource(thread_id="t0"), now_ms=at_ms)
    runtime.history.record(user, [])  # a write marks the user changed, as FINALIZE does
    return op.id


def test_newest_wins_merge_and_retention_through_the_beat_task(make_system) -> None:
    """The scheduled task merges exact/near duplicates (newest survives with its id and
    created_at), expires old episodes and keeps only the newest max_count; history says why."""
    system = make_system(retention={"episode": {"ttl_days": 30, "max_count": 1}})
    runtime, user, other = system.runtime, uid("u"), uid("other")
    now = int(time.time() * 1000)
    old_dup = put(runtime, user, "I love miso ramen", at_ms=now - 2 * DAY_MS)
    new_dup = put(runtime, user, "I love miso ramen!", at_ms=now - DAY_MS)
    osaka = put(runtime, user, "I live in Osaka", at_ms=now - 3 * DAY_MS)
    put(runtime, user, "Talked about ramen", kind="episode", at_ms=now - 40 * DAY_MS)
    put(runtime, user, "Planned a trip", kind="episode", at_ms=now - 2 * DAY_MS)
    newest_episode = put(runtime, user, "Asked for pasta recipes", kind="episode", at_ms=now - DAY_MS)
    put(runtime, other, "I love miso ramen", at_ms=now)  # another user's copy is never a duplicate
    put(runtime, other, "I love miso ramen!", at_ms=now)
    runtime.redis.zrem(runtime.coordinator.keys.changed_ss, other)  # only `user` changed

    summary = system.app.send_task(CONSOLIDATE, kwargs={"flush": False}).get(timeout=30)
    assert summary["users"] == 1 and summary["merged"] == 1 and summary["expired"] == 2
    left = {m.id: m for m in runtime.store.list(user)}
    assert set(left) == {new_dup, osaka, newest_episode}
    assert old_dup not in left and left[new_dup].version == 1
    assert len(runtime.store.list(other)) == 2
    ops = {(e.memory_id, e.op) for e in runtime.history.history(user)}
    assert (old_dup, "merge") in ops and sum(op == "expire" for _, op in ops) == 2
    assert runtime.redis.zscore(runtime.coordinator.keys.changed_ss, user) is None  # drained

    again = consolidate_all(runtime)
    assert again.users == 0  # nothing changed since


def test_llm_assisted_merge_keeps_id_and_created_at(make_system, scripted) -> None:
    """With a model configured, the survivor's content becomes the model's merge (validated)."""
    system = make_system(model=scripted.model, llm_api_base=scripted.base_url, llm_api_key="sk-test")
    scripted.set_responder(lambda body: tool_calls_reply([("merge_memories", {"content": "Loves miso ramen, daily"})]))
    runtime, user = system.runtime, uid("u")
    now = int(time.time() * 1000)
    put(runtime, user, "I love miso ramen", at_ms=now - 2 * DAY_MS)
    survivor = put(runtime, user, "I love miso ramen!", at_ms=now - DAY_MS)
    before = runtime.store.get(user, [survivor])[0]
    report = consolidate_user(runtime, user)
    assert (report.merged, report.llm_calls) == (1, 1)
    [after] = runtime.store.list(user)
    assert (after.id, after.created_at, after.version) == (survivor, before.created_at, 2)
    assert after.content == "Loves miso ramen, daily"
    assert "I love miso ramen" in scripted.chat_requests[0]["messages"][1]["content"]


def test_invalid_llm_merge_falls_back_to_newest_wins(make_system, scripted) -> None:
    system = make_system(model=scripted.model, llm_api_base=scripted.base_url, llm_api_key="sk-test")
    scripted.set_responder(lambda body: tool_calls_reply([("merge_memories", {"content": ""})]))
    runtime, user = system.runtime, uid("u")
    now = int(time.time() * 1000)
    put(runtime, user, "I love miso ramen", at_ms=now - 2 * DAY_MS)
    survivor = put(runtime, user, "I love miso ramen!", at_ms=now - DAY_MS)
    consolidate_user(runtime, user)
    [after] = runtime.store.list(user)
    assert (after.id, after.content, after.version) == (survivor, "I love miso ramen!", 1)


def test_busy_user_is_skipped_and_stays_marked(make_system) -> None:
    system = make_system()
    runtime, user = system.runtime, uid("u")
    put(runtime, user, "a fact")
    token = runtime.coordinator.acquire_lease(user, 10_000)
    progress: list[dict[str, int]] = []
    report = consolidate_all(runtime, progress=progress.append)
    assert (report.users, report.busy) == (1, 1)
    assert progress[0]["done"] == 0 and progress[-1]["done"] == 1
    assert runtime.redis.zscore(runtime.coordinator.keys.changed_ss, user) is not None
    runtime.coordinator.release_lease(user, token)


def test_flush_reflects_pending_buffers_regardless_of_debounce(make_system) -> None:
    """A thread due in 60 s is reflected right away by a flush."""
    system = make_system()
    user = uid("u")
    system.producer.submit(user, "t", [{"role": "user", "content": "I moved to Kyoto"}], after_seconds=60, max_wait=60)
    time.sleep(0.3)
    assert system.outcomes(user) == []
    report = consolidate_all(system.runtime, flush=True)
    assert report.flushed == 1
    system.wait_for(lambda: len(system.committed(user)) == 1, timeout_s=10, what="flushed reflection")
    assert [m.content for m in system.runtime.store.list(user)] == ["I moved to Kyoto"]


def test_beat_entry_follows_the_interval_setting(redis_url) -> None:
    """create_app adds the consolidation schedule (run by celery-redbeat); 0 disables it."""
    from pydantic import SecretStr

    from schemas.settings import Settings
    from worker.app import create_app

    app = create_app(Settings(redis_url=SecretStr(redis_url), consolidate_interval_s=120, dispatcher_in_worker=False))
    entry = app.conf.beat_schedule["reverie-consolidate"]
    assert (entry["task"], entry["schedule"]) == (CONSOLIDATE, 120)
    off = create_app(Settings(redis_url=SecretStr(redis_url), consolidate_interval_s=0, dispatcher_in_worker=False))
    assert "reverie-consolidate" not in (off.conf.beat_schedule or {})


def test_time_budget_leaves_unreached_users_marked(make_system) -> None:
    system = make_system()
    runtime = system.runtime
    users = [uid("u") for _ in range(3)]
    for user in users:
        put(runtime, user, "a fact")
    report = consolidate_all(runtime, time_budget_s=0)
    assert (report.done, report.left) == (1, 2)
    marked = {u.decode() for u in runtime.redis.zrange(runtime.coordinator.keys.changed_ss, 0, -1)}
    assert len(marked & set(users)) == 2
    assert consolidate_all(runtime).done == 2


def test_a_merge_killed_before_its_record_step_gets_exactly_one_event(make_system) -> None:
    """A run killed between its Qdrant writes and the record step leaves the merge journaled;
    the next run replays it first (a replay killed at the same step is replayed again), then
    finds nothing more to merge: one history entry and one ``merge`` event."""
    system = make_system(lease_s=1.1)
    runtime, user = system.runtime, uid("u")
    now = int(time.time() * 1000)
    old = put(runtime, user, "I love miso ramen", at_ms=now - 2 * DAY_MS)
    new = put(runtime, user, "I love miso ramen!", at_ms=now - DAY_MS)
    with pytest.raises(Died):
        consolidate_user(runtime, user, fault=die_at("change_after_qdrant_write"))
    assert [m.id for m in runtime.store.list(user)] == [new], "merged in Qdrant"
    assert runtime.history.history(user) == [] and user_events(system, user) == []

    time.sleep(1.2)  # older than the lease: abandoned
    with pytest.raises(Died):
        consolidate_user(runtime, user, fault=die_at("change_after_qdrant_write"))
    assert runtime.history.history(user) == []
    assert consolidate_user(runtime, user).merged == 0  # replayed, then nothing left to merge
    assert consolidate_user(runtime, user).merged == 0

    events = assert_one_event_per_change(system, user)
    assert [(e.op, e.memory_id, e.into) for e in events] == [("merge", old, new)]
    assert [e.op for e in runtime.history.history(user)] == ["merge"]
    assert not system.redis.exists(runtime.coordinator.keys.changes(user))
