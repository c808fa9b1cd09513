"""``status``: where a submission stands, read from real Redis, with the last reflection as a real
worker recorded it."""

from __future__ import annotations

import pytest
import redis

from producer import (
    AsyncProducer,
    InvalidRequest,
    Producer,
    ProducerConfig,
    ProducerUnavailable,
    ThreadStatus,
    UserStatus,
)
from producer.keys import Keys
from schemas.reflection import DeadLetter
from tests.conftest import uid
from tests.support.llm_scripts import insert_each_user_turn


def _turn(text: str, mid: str) -> dict[str, str]:
    return {"role": "user", "content": text, "id": mid}


def test_a_buffered_thread_shows_turns_due_time_and_no_reflection(producer: Producer) -> None:
    """Two turns submitted: 2 buffered, due at the receipt's time, nothing in flight or dead."""
    user = uid("u")
    producer.submit(user, "t1", [_turn("secret one", "m1")], after_seconds=20)
    receipt = producer.submit(user, "t1", [_turn("secret two", "m2")], after_seconds=20)
    status = producer.status(user, "t1")
    assert isinstance(status, ThreadStatus)
    assert (status.state, status.buffered_turns, status.generation) == ("due", 2, 2)
    assert status.due_at_ms == receipt.due_at_ms and 15 < status.due_in_s <= 20
    assert (status.in_flight, status.dead_lettered, status.last) == (False, False, None)
    assert status.oldest_turn_ms is not None and status.oldest_turn_ms <= status.now_ms
    assert "secret" not in status.model_dump_json(), "ids and counts only, never text"


def test_a_user_lists_every_thread_sorted_and_cut_at_limit(producer: Producer) -> None:
    """status(user) lists the user's threads (from the index submit writes), not another's."""
    user, other = uid("u"), uid("v")
    for thread in ("b", "a", "c"):
        producer.submit(user, thread, [_turn("x", "m1")])
    producer.submit(other, "z", [_turn("x", "m1")])
    everything = producer.status(user)
    assert isinstance(everything, UserStatus)
    assert [t.thread_id for t in everything.threads] == ["a", "b", "c"]
    assert everything.total_threads == 3 and all(t.buffered_turns == 1 for t in everything.threads)
    cut = producer.status(user, limit=2)
    assert [t.thread_id for t in cut.threads] == ["a", "b"] and cut.total_threads == 3
    assert producer.status(uid("nobody")).threads == []


def test_an_unknown_thread_is_state_unknown(producer: Producer) -> None:
    status = producer.status(uid("u"), "never")
    assert (status.state, status.buffered_turns, status.due_at_ms, status.last) == ("unknown", 0, None, None)


BAD_STATUS = [
    ({"user_id": ""}, "user_id: must not be empty"),
    ({"user_id": "a:b"}, "user_id: may contain only"),
    ({"user_id": 42}, "user_id: must be a string"),
    ({"thread_id": "t*"}, "thread_id: may contain only"),
    ({"thread_id": "t" * 200}, "thread_id: must be at most 128"),
    ({"limit": 0}, "limit: must be an integer from 1"),
    ({"limit": "5"}, "limit: must be an integer from 1"),
]


@pytest.mark.parametrize(("override", "expected"), BAD_STATUS, ids=[b[1][:30] for b in BAD_STATUS])
def test_bad_status_arguments_are_refused_naming_them(producer: Producer, override, expected) -> None:
    call = {"user_id": "u", "thread_id": "t"} | override
    limit = call.pop("limit", 100)
    with pytest.raises(InvalidRequest, match="invalid request: ") as info:
        producer.status(call["user_id"], call["thread_id"], limit=limit)
    assert expected in str(info.value)


async def test_async_status_matches_sync(async_producer: AsyncProducer, producer: Producer) -> None:
    """Same core, same answer; bad ids refused the same way."""
    user = uid("u")
    await async_producer.submit(user, "t", [_turn("x", "m1")])
    mine = await async_producer.status(user, "t")
    theirs = producer.status(user, "t")
    assert mine.model_dump(exclude={"now_ms"}) == theirs.model_dump(exclude={"now_ms"})
    assert [t.thread_id for t in (await async_producer.status(user)).threads] == ["t"]
    with pytest.raises(InvalidRequest, match="thread_id"):
        await async_producer.status(user, "a b")


def test_status_raises_when_redis_is_down_whatever_the_submit_policy() -> None:
    """A read has no "dropped" answer: ProducerUnavailable naming host:port."""
    config = ProducerConfig(redis_url="redis://127.0.0.1:1/0", on_unavailable="drop")
    with Producer(config) as p, pytest.raises(ProducerUnavailable, match=r"127\.0\.0\.1:1\b"):
        p.status("u", "t")


def test_the_worker_records_the_last_reflection_when_it_ends(make_system, scripted, redis_client) -> None:
    """Committed (counts, extractor, turns consumed), kept while the thread hash lives (it expires
    a day after a commit that emptied the buffer); then failed, dead-lettered, superseded, and a
    stale generation never overwrites a newer record."""
    scripted.set_responder(insert_each_user_turn)
    system = make_system(model=scripted.model, llm_api_base=scripted.base_url, llm_api_key="sk-test")
    user = uid("u")
    system.producer.submit(user, "t", [_turn("I like tea", "m1"), _turn("I live in Kyoto", "m2")])
    system.wait_for(lambda: len(system.committed(user)) == 1, what="commit")
    system.wait_idle()
    status = system.producer.status(user, "t")
    last = status.last
    assert last is not None and (status.state, status.buffered_turns, status.in_flight) == ("idle", 0, False)
    assert (last.outcome, last.generation, last.turns) == ("committed", 1, 2)
    assert (last.inserted, last.updated, last.deleted) == (2, 0, 0)
    assert last.extractor == f"llm:{scripted.model}" and last.error is None
    assert abs(last.at_ms - status.now_ms) < 30_000 and status.committed_generation == 1
    keys = system.runtime.coordinator.keys
    assert 0 < redis_client.ttl(keys.thread(user, "t")) <= 86400, "kept for a day after the commit"

    coord = system.runtime.coordinator
    system.producer.submit(user, "t", [_turn("poison", "m3")], after_seconds=30)
    letter = DeadLetter(user_id=user, thread_id="t", generation=2, attempts=1, reason="boom", failed_ms=1)
    coord.reschedule(user, "t", token=None, generation=2, delay_ms=60_000, failure=letter, error="LLMUnavailable")
    failed = system.producer.status(user, "t")
    assert (failed.last.outcome, failed.last.generation, failed.last.error) == ("failed", 2, "LLMUnavailable")
    assert (failed.attempts, failed.state) == (1, "due")
    coord.reschedule(user, "t", token=None, generation=2, delay_ms=0, failure=letter, max_attempts=2, error="X")
    dead = system.producer.status(user, "t")
    assert (dead.state, dead.dead_lettered, dead.last.outcome, dead.buffered_turns) == (
        "dead_lettered",
        True,
        "dead_lettered",
        1,
    )
    coord.release(user, "t", 0, 1, "superseded")  # a stale task of generation 1 ends late
    assert system.producer.status(user, "t").last.outcome == "dead_lettered", "a stale generation never overwrites"
    coord.release(user, "t", 0, 3, "rolled_back", turns=1, extractor="offline")
    rolled = system.producer.status(user, "t").last
    assert (rolled.outcome, rolled.generation, rolled.turns, rolled.extractor) == ("rolled_back", 3, 1, "offline")
    assert coord.drop_dead(user, "t") == 1


def test_release_on_a_forgotten_thread_recreates_nothing(
    redis_url: str, prefix: str, redis_client: redis.Redis
) -> None:
    """A reflection ending after its thread was forgotten must not leave a hash behind."""
    from worker.pipeline.coordinator import Coordinator
    from worker.pipeline.keys import WorkerKeys

    coord = Coordinator(redis_client, WorkerKeys(prefix))
    coord.release("gone", "t", 0, 4, "superseded")
    assert not redis_client.exists(Keys(prefix).thread("gone", "t"))
