"""``warm``: a chat server opens its connections and loads the submit script at start-up, so its
first concurrent submits do not each pay a connect at the same moment."""

from __future__ import annotations

import asyncio
import hashlib
import socket

import pytest
import redis
import redis.asyncio as aioredis

from producer import AsyncProducer, InvalidRequest, Producer, ProducerConfig, ProducerUnavailable
from producer.scripts import lua_source

SUBMIT_SHA = hashlib.sha1(lua_source("producer", "submit").encode()).hexdigest()


NAME = "reverie-warm-test"


def _connected(client: redis.Redis) -> int:
    """Connections of the producer under test only (its client name): other clients of a shared
    server come and go meanwhile."""
    return sum(1 for c in client.client_list() if c.get("name") == NAME)


def test_warm_opens_the_connections_and_loads_the_script(redis_url: str, prefix: str, redis_client) -> None:
    redis_client.script_flush()
    before = _connected(redis_client)
    client = redis.Redis.from_url(redis_url, client_name=NAME)
    with Producer(ProducerConfig(redis_url=redis_url, key_prefix=prefix), client=client) as p:
        assert p.warm(12) == 12
        assert _connected(redis_client) - before == 12, "pooled and kept open for the first submits"
        assert redis_client.script_exists(SUBMIT_SHA) == [True]
        assert p.submit("u", "t", [{"role": "user", "content": "x"}]).status == "accepted"
        assert _connected(redis_client) - before == 12, "the submit reused a warm connection"
    redis_client.delete(*redis_client.keys(f"{prefix}:*"))


async def test_async_warm_opens_the_connections_at_once(redis_url: str, prefix: str, redis_client) -> None:
    # An async test (the suite's event loop), not asyncio.run: that would replace the loop of the
    # async tests before it and leave it unclosed (a ResourceWarning in a later test's GC).
    redis_client.script_flush()
    before = _connected(redis_client)
    client = aioredis.Redis.from_url(redis_url, client_name=NAME)
    async with AsyncProducer(ProducerConfig(redis_url=redis_url, key_prefix=prefix), client=client) as p:
        opened = await p.warm(40)
        assert _connected(redis_client) - before == 40
        turn = [{"role": "user", "content": "x"}]
        receipts = await asyncio.gather(*(p.submit(f"u{i}", "t", turn) for i in range(40)))
        assert {r.status for r in receipts} == {"accepted"}
        assert _connected(redis_client) - before == 40, "40 concurrent first submits opened nothing new"
    assert opened == 40
    assert redis_client.script_exists(SUBMIT_SHA) == [True]
    redis_client.delete(*redis_client.keys(f"{prefix}:*"))


@pytest.mark.parametrize("bad", [0, -1, 1001, "10", 2.5, True])
def test_warm_refuses_a_bad_connection_count(bad: object, redis_url: str, redis_client) -> None:
    before = _connected(redis_client)
    client = redis.Redis.from_url(redis_url, client_name=NAME)
    with (
        Producer(ProducerConfig(redis_url=redis_url), client=client) as p,
        pytest.raises(InvalidRequest, match="connections"),
    ):
        p.warm(bad)  # type: ignore[arg-type]
    assert _connected(redis_client) == before


def test_warm_says_where_redis_is_when_it_is_down() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        cfg = ProducerConfig(redis_url=f"redis://127.0.0.1:{port}/0", timeout_s=0.2)
        with Producer(cfg) as p, pytest.raises(ProducerUnavailable, match=f"127.0.0.1:{port}"):
            p.warm(3)
