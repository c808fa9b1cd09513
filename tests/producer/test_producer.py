"""The producer against a real Redis: one round trip, idempotent, validated, fail-soft."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time

import pytest
import redis

from producer import InvalidSubmission, Producer, ProducerConfig, ProducerUnavailable, ReflectionExecutor
from producer.keys import Keys, member
from tests.conftest import uid


def test_submit_buffers_turns_and_schedules_the_thread(producer: Producer, redis_client: redis.Redis) -> None:
    """Turns land in order in the buffer; the thread is due after_seconds after the submit."""
    keys = Keys(producer.config.key_prefix)
    user = uid("u")
    receipt = producer.submit(
        user,
        "t",
        [{"role": "user", "content": "hello", "id": "m1"}, {"role": "assistant", "content": "hi", "id": "m2"}],
    )
    assert (receipt.status, receipt.accepted, receipt.generation) == ("accepted", 2, 1)
    turns = [json.loads(x) for x in redis_client.lrange(keys.buffer(user, "t"), 0, -1)]
    assert [(t["role"], t["content"], t["id"]) for t in turns] == [("user", "hello", "m1"), ("assistant", "hi", "m2")]
    server_ms = redis_client.time()[0] * 1000
    due = redis_client.zscore(keys.due_ss, member(user, "t"))
    assert due == receipt.due_at_ms
    assert server_ms + 200 <= due <= server_ms + 1500  # after_seconds=0.5 in the fixture


def test_duplicate_message_ids_are_not_buffered_twice(producer: Producer, redis_client: redis.Redis) -> None:
    """Chat servers retry: the same message id is skipped and the generation does not move."""
    keys = Keys(producer.config.key_prefix)
    user = uid("u")
    first = producer.submit(user, "t", [{"role": "user", "content": "hello", "id": "m1"}])
    again = producer.submit(user, "t", [{"role": "user", "content": "hello", "id": "m1"}])
    mixed = producer.submit(
        user, "t", [{"role": "user", "content": "hello", "id": "m1"}, {"role": "user", "content": "new", "id": "m2"}]
    )
    assert (again.status, again.accepted, again.duplicates, again.generation) == ("duplicate", 0, 1, first.generation)
    assert (mixed.accepted, mixed.duplicates, mixed.generation) == (1, 1, 2)
    assert redis_client.llen(keys.buffer(user, "t")) == 2


def test_trailing_edge_moves_the_due_time_and_max_wait_caps_it(producer: Producer, redis_client: redis.Redis) -> None:
    """Each submit pushes the due time; never past first turn + max_wait."""
    user = uid("u")
    a = producer.submit(user, "t", [{"role": "user", "content": "a"}], after_seconds=10, max_wait=12)
    time.sleep(0.05)
    b = producer.submit(user, "t", [{"role": "user", "content": "b"}], after_seconds=10, max_wait=12)
    assert b.due_at_ms > a.due_at_ms
    # after_seconds may not exceed max_wait (refused at submit), but equal to it, later: capped
    c = producer.submit(user, "t", [{"role": "user", "content": "c"}], after_seconds=12, max_wait=12)
    assert c.due_at_ms == a.due_at_ms - 10_000 + 12_000


async def test_async_producer_matches_sync(async_producer, redis_client: redis.Redis) -> None:
    """AsyncProducer shares the pure core: same receipt, same buffer."""
    user = uid("u")
    receipt = await async_producer.submit(user, "t", [{"role": "user", "content": "hi", "id": "x"}])
    again = await async_producer.submit(user, "t", {"role": "user", "content": "hi", "id": "x"})
    assert (receipt.accepted, again.status) == (1, "duplicate")
    assert redis_client.llen(Keys(async_producer.config.key_prefix).buffer(user, "t")) == 1


def test_langmem_style_executor(producer: Producer, redis_client: redis.Redis) -> None:
    """ReflectionExecutor.submit(payload, after_seconds=…, thread_id=…) buffers like LangMem's."""
    user = uid("u")
    executor = ReflectionExecutor(producer)
    receipt = executor.submit(
        {"messages": [{"role": "user", "content": "I like tea"}]},
        after_seconds=5,
        thread_id="t",
        config={"configurable": {"user_id": user}},
    )
    assert receipt.accepted == 1
    assert redis_client.llen(Keys(producer.config.key_prefix).buffer(user, "t")) == 1
    with pytest.raises(InvalidSubmission, match="user_id"):
        executor.submit({"messages": []}, thread_id="t")


BAD = [
    ({"user_id": ""}, "user_id: must not be empty"),
    ({"user_id": "   "}, "user_id: must not be empty"),
    ({"user_id": "a" * 300}, "user_id: must be at most 128"),
    ({"user_id": "a:b"}, "user_id: may contain only"),
    ({"thread_id": "t{1}"}, "thread_id: may contain only"),
    ({"thread_id": "t*"}, "thread_id: may contain only"),
    ({"thread_id": "t\x00"}, "thread_id: may contain only"),
    ({"user_id": 42}, "user_id: Input should be a valid string"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
    ({"messages": [{"role": "user", "content": 7}]}, "messages.0.content: must be a string"),
    ({"messages": [{"role": "user", "content": "x" * 40_000}]}, "messages.0.content: is 40000 bytes"),
    ({"messages": [{"role": "user", "content": b"\xff\xfe"}]}, "messages.0.content: is not valid UTF-8"),
    ({"messages": [{"role": "user", "content": "bad \ud800 surrogate"}]}, "lone surrogate"),
    ({"messages": []}, "messages: List should have at least 1 item"),
    ({"messages": [{"role": "user", "content": "x"}] * 201}, "messages: List should have at most 200"),
    ({"messages": [{"role": "user", "content": "x", "id": "a b"}]}, "messages.0.id"),
    ({"after_seconds": -1}, "after_seconds: after_seconds must not be negative"),
    ({"after_seconds": float("nan")}, "after_seconds must be finite"),
    ({"max_wait": float("inf")}, "max_wait must be finite"),
]


@pytest.mark.parametrize(("override", "expected"), BAD, ids=[b[1][:40] for b in BAD])
def test_bad_input_is_refused_with_the_field_named_and_nothing_written(
    producer: Producer, redis_client: redis.Redis, override: dict, expected: str
) -> None:
    """Every class of bad input: InvalidSubmission naming the field, no key written, no text echoed."""
    kwargs = {"user_id": "u", "thread_id": "t", "messages": [{"role": "user", "content": "secret text"}]} | override
    after = {k: kwargs.pop(k) for k in ("after_seconds", "max_wait") if k in kwargs}
    with pytest.raises(InvalidSubmission) as info:
        producer.submit(kwargs["user_id"], kwargs["thread_id"], kwargs["messages"], **after)
    assert expected in str(info.value)
    assert "secret text" not in str(info.value)
    assert list(redis_client.scan_iter(match=f"{producer.config.key_prefix}:*")) == []


def test_unknown_profile_is_refused(redis_url: str, prefix: str, redis_client: redis.Redis) -> None:
    """A producer configured with its profiles refuses others before writing."""
    cfg = ProducerConfig(redis_url=redis_url, key_prefix=prefix, profiles=frozenset({"default"}))
    with Producer(cfg) as p, pytest.raises(InvalidSubmission, match="profile: unknown profile 'nope'"):
        p.submit("u", "t", [{"role": "user", "content": "x"}], profile="nope")
    assert list(redis_client.scan_iter(match=f"{prefix}:*")) == []


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_redis_drops_within_the_timeout_by_default() -> None:
    """Policy 'drop': the chat request gets a 'dropped' receipt, fast, and no exception."""
    cfg = ProducerConfig(redis_url=f"redis://127.0.0.1:{_closed_port()}/0", timeout_s=0.2)
    with Producer(cfg) as p:
        start = time.monotonic()
        receipt = p.submit("u", "t", [{"role": "user", "content": "x"}])
        assert time.monotonic() - start < 2.0
    assert receipt.status == "dropped"


def test_an_outage_logs_one_line_per_interval_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    """86 dropped submits in a short outage are not 86 warnings: one line now, then one per
    interval saying how many it stands for (ids of the latest only)."""
    cfg = ProducerConfig(redis_url=f"redis://127.0.0.1:{_closed_port()}/0", timeout_s=0.05, log_interval_s=0.5)
    caplog.set_level(logging.WARNING, logger="reverie.producer")
    with Producer(cfg) as p:
        for i in range(20):
            assert p.submit(f"u{i}", "t", [{"role": "user", "content": "secret text"}]).status == "dropped"
        time.sleep(0.6)
        p.submit("last", "t", [{"role": "user", "content": "secret text"}])
    lines = [r for r in caplog.records if r.name == "reverie.producer"]
    assert [getattr(r, "count", None) for r in lines] == [1, 20]
    assert lines[-1].user_id == "last" and "secret text" not in caplog.text  # type: ignore[attr-defined]


def test_unreachable_redis_raises_when_asked() -> None:
    """Policy 'raise': ProducerUnavailable, a ConnectionError."""
    cfg = ProducerConfig(redis_url=f"redis://127.0.0.1:{_closed_port()}/0", timeout_s=0.2, on_unavailable="raise")
    with Producer(cfg) as p, pytest.raises(ProducerUnavailable):
        p.submit("u", "t", [{"role": "user", "content": "x"}])


def test_import_producer_stays_light() -> None:
    """``import producer`` must not pull celery, litellm, qdrant-client or pydantic-settings."""
    code = (
        "import sys, producer; heavy = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'celery', 'kombu', 'litellm', 'qdrant_client', 'pydantic_settings', 'structlog', 'worker'}); print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
