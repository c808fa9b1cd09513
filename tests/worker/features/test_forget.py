"""forget_user: every trace of one user goes, nobody else's does."""

from __future__ import annotations

import json
from typing import Any

from producer.keys import member
from schemas.reflection import DeadLetter
from tests.conftest import uid
from tests.support.llm_scripts import insert_each_user_turn
from worker.features.forget import forget_user


def _keys_naming(redis_client: Any, prefix: str, user: str) -> list[str]:
    out = []
    for raw in redis_client.scan_iter(match=f"{prefix}:*", count=1000):
        key = raw.decode()
        if f":{user}:" in key or key.endswith(f":{user}"):
            out.append(key)
    return out


def _state(system: Any, user: str) -> dict[str, Any]:
    keys = system.runtime.coordinator.keys
    r = system.redis
    return {
        "due": [m.decode() for m in r.zrange(keys.due_ss, 0, -1) if m.decode().startswith(f"{user}:")],
        "inflight": [m.decode() for m in r.zrange(keys.inflight_ss, 0, -1) if m.decode().startswith(f"{user}:")],
        "dlq": [f.decode() for f in r.hkeys(keys.dlq) if f.decode().startswith(f"{user}:")],
    }


def test_forget_removes_memories_buffers_queue_entries_dead_letters_and_results(
    make_system, scripted, redis_client, celery_app
) -> None:
    """A user with memories, a due thread, an in-flight claim, a journal and a dead letter is
    gone after one call; a user whose id extends the first one's is untouched."""
    scripted.set_responder(insert_each_user_turn)
    system = make_system(model=scripted.model, llm_api_base=scripted.base_url, llm_api_key="sk-test")
    user = uid("carol")
    other = f"{user}-2"  # shares the stem: SCAN patterns must not catch it
    keys = system.runtime.coordinator.keys
    for who in (user, other):
        system.producer.submit(who, "done", [{"role": "user", "content": f"{who} likes tea", "id": "m1"}])
    system.wait_for(lambda: len(system.committed()) == 2, what="two commits")
    system.wait_idle()
    # state that is still around when someone asks to be forgotten:
    system.producer.submit(
        user, "waiting", [{"role": "user", "content": "pending turn"}], after_seconds=60, max_wait=60
    )
    system.producer.submit(
        other, "waiting", [{"role": "user", "content": "other pending"}], after_seconds=60, max_wait=60
    )
    system.producer.submit(user, "dead", [{"role": "user", "content": "poison"}], after_seconds=60, max_wait=60)
    system.runtime.coordinator.reschedule(
        user,
        "dead",
        token=None,
        generation=1,
        delay_ms=0,
        failure=DeadLetter(user_id=user, thread_id="dead", generation=1, attempts=1, reason="boom", failed_ms=1),
        max_attempts=1,
    )
    system.redis.zadd(keys.inflight_ss, {member(user, "claimed"): 10**13})
    system.redis.set(keys.journal(user, "claimed"), "{}")
    celery_prefix = celery_app.conf.broker_transport_options["global_keyprefix"]  # the session worker's

    def owners() -> list[str]:
        found = []
        for key in redis_client.scan_iter(match=f"{celery_prefix}celery-task-meta-reflect:*"):
            result = json.loads(redis_client.get(key))["result"]
            if isinstance(result, dict) and result.get("user_id") in (user, other):
                found.append(result["user_id"])
        return found

    assert user in owners() and other in owners()

    assert redis_client.smembers(keys.user_threads(user)) == {b"done", b"waiting", b"dead"}
    counts = forget_user(system.runtime, user, celery_prefix=celery_prefix)

    assert counts["memories"] == 1
    assert counts["buffered_turns"] == 2  # "waiting" and "dead"
    assert counts["due"] == 1 and counts["in_flight"] == 1 and counts["dead_letters"] == 1
    assert counts["journals"] == 1
    assert counts["task_results"] >= 1
    assert counts["redis_keys"] > 0
    assert system.runtime.store.list(user) == []
    assert _keys_naming(redis_client, system.settings.key_prefix, user) == []
    assert _state(system, user) == {"due": [], "inflight": [], "dlq": []}
    remaining = owners()
    assert user not in remaining and other in remaining
    assert list(redis_client.scan_iter(match=f"{celery_prefix}celery-task-meta-reflect:{user}:*")) == []
    # the other user keeps everything
    assert [m.content for m in system.runtime.store.list(other)] == [f"{other} likes tea"]
    assert _state(system, other)["due"] == [member(other, "waiting")]
    assert system.redis.llen(keys.buffer(other, "waiting")) == 1
    assert not redis_client.exists(keys.user_threads(user)), "the user's thread index goes too"
    assert redis_client.smembers(keys.user_threads(other)) == {b"done", b"waiting"}
    # leave the system idle for teardown
    assert forget_user(system.runtime, other)["buffered_turns"] == 1


def test_forget_of_an_unknown_user_removes_nothing(make_system) -> None:
    """Forgetting someone Reverie never saw is not an error; every count is zero."""
    system = make_system()
    counts = forget_user(system.runtime, uid("nobody"))
    assert set(counts.values()) == {0}


def test_forget_rejects_a_bad_id(make_system) -> None:
    """Ids are validated before any SCAN pattern is built from them."""
    import pytest

    system = make_system()
    with pytest.raises(ValueError, match="not allowed"):
        forget_user(system.runtime, "a*")


def test_forget_removes_the_users_webhook_dead_letters_and_no_one_elses(make_system) -> None:
    """Letters of the user go (every endpoint); those of a user whose id extends theirs, and
    one of a trimmed entry (no user known), stay."""
    from schemas.webhooks import DeliverArgs
    from worker.features.webhooks.dlq import dead_letter, dead_letters, make_letter

    system = make_system()
    user = uid("dora")
    keys = system.runtime.coordinator.keys

    def letter(endpoint: str, who: str, n: int) -> None:
        args = DeliverArgs(endpoint=endpoint, stream=keys.events, stream_id=f"{n}-0")
        ids = {"event_id": f"{who}:t:g1:5:{n}", "user_id": who} if who else {}
        dead_letter(system.redis, keys, make_letter(args, 3, status=500, error="HTTP 500", **ids))

    letter("crm", user, 1)
    letter("search", user, 2)
    letter("crm", f"{user}-2", 3)
    letter("crm", "", 4)
    counts = forget_user(system.runtime, user)
    assert counts["webhook_dead_letters"] == 2
    left = dead_letters(system.redis, keys)
    assert sorted((d.user_id, d.stream_id) for d in left) == [("", "4-0"), (f"{user}-2", "3-0")]
