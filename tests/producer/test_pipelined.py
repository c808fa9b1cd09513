"""The asyncio producer's pipelined submits (``producer.pipelined``) against a real Redis: one
pipeline for the submits of a loop step, and every submit keeps its own receipt, validation
error, failure policy, timeout and order."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
import redis

from producer import AsyncProducer, InvalidSubmission, ProducerConfig
from producer.keys import Keys
from tests.conftest import uid
from tests.support.tcp_proxy import TcpProxy


def _turn(k: int, content: str = "hi") -> list[dict[str, str]]:
    return [{"role": "user", "content": f"{content} {k}", "id": f"m{k}"}]


def _buffered_ids(client: redis.Redis, keys: Keys, user: str, thread: str = "t") -> list[str]:
    return [json.loads(x)["id"] for x in client.lrange(keys.buffer(user, thread), 0, -1)]


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[TcpProxy]:
    p = await TcpProxy(redis_url).start()
    yield p
    await p.stop()


async def test_concurrent_submits_share_pipelines_with_their_own_receipts(
    async_producer: AsyncProducer, redis_client: redis.Redis
) -> None:
    """50 sessions at once: a few pipelines, not 50 round trips; each submit gets the receipt of
    its own thread (a duplicate stays a duplicate), and the invalid one alone is refused."""
    keys = Keys(async_producer.config.key_prefix)
    users = [uid("u") for _ in range(50)]
    await async_producer.submit(users[0], "t", _turn(0))  # users[0] already has m0: a duplicate below
    before = async_producer._pipeline.batches  # type: ignore[union-attr]
    results = await asyncio.gather(
        *(async_producer.submit(u, "t", _turn(0)) for u in users),
        async_producer.submit(uid("u"), "t", [{"role": "robot", "content": "x"}]),
        return_exceptions=True,
    )
    receipts, refused = results[:-1], results[-1]
    assert isinstance(refused, InvalidSubmission) and "role" in str(refused)
    assert [(r.status, r.generation) for r in receipts] == [("duplicate", 1)] + [("accepted", 1)] * 49  # type: ignore[union-attr]
    assert 1 <= async_producer._pipeline.batches - before <= 2  # type: ignore[union-attr]
    for u in users:
        assert _buffered_ids(redis_client, keys, u) == ["m0"]


async def test_a_lone_submit_goes_alone_at_once(async_producer: AsyncProducer) -> None:
    """Nothing in flight: the submit is sent at once as a plain EVALSHA (no pipeline), so a lone
    submit pays nothing for batching; submits made meanwhile form a pipeline."""
    pipeline = async_producer._pipeline
    assert pipeline is not None
    await async_producer.submit(uid("u"), "t", _turn(0))
    before = pipeline.batches
    receipt = await async_producer.submit(uid("u"), "t", _turn(1))
    assert (receipt.status, pipeline.batches - before) == ("accepted", 0)
    both = await asyncio.gather(*(async_producer.submit(uid("u"), "t", _turn(2)) for _ in range(3)))
    assert [r.status for r in both] == ["accepted"] * 3
    assert pipeline.batches - before == 1  # the first alone, the other two in one pipeline


async def test_a_threads_turns_keep_their_order_under_concurrency(
    redis_url: str, prefix: str, redis_client: redis.Redis
) -> None:
    """600 submits started at once without waiting (20 threads × 30 turns, interleaved), while
    other sessions submit and wait: every thread's buffer holds its turns in submit order."""
    keys = Keys(prefix)
    users = [uid("u") for _ in range(20)]
    async_producer = AsyncProducer(ProducerConfig(redis_url=redis_url, key_prefix=prefix, timeout_s=10))

    async def chatty(n: int) -> None:
        u = uid("c")
        for k in range(n):
            await async_producer.submit(u, "t", _turn(k))

    await async_producer.warm(2)  # the layout check, once
    fired = [async_producer.submit(u, "t", _turn(k)) for k in range(30) for u in users]
    results = await asyncio.gather(*fired, *(chatty(10) for _ in range(10)))
    await async_producer.aclose()
    assert all(r is None or r.status == "accepted" for r in results)
    for u in users:
        assert _buffered_ids(redis_client, keys, u) == [f"m{k}" for k in range(30)]


async def test_pipeline_off_sends_each_submit_alone(redis_url: str, prefix: str) -> None:
    config = ProducerConfig(redis_url=redis_url, key_prefix=prefix, pipeline=False)
    async with AsyncProducer(config) as producer:
        receipts = await asyncio.gather(*(producer.submit(uid("u"), "t", _turn(0)) for _ in range(5)))
        assert producer._pipeline is None
    assert [r.status for r in receipts] == ["accepted"] * 5


async def test_redis_going_away_mid_batch_spools_each_submit(
    proxy: TcpProxy, prefix: str, redis_client: redis.Redis
) -> None:
    """The connection drops while a batch waits for its replies: each submit of it applies the
    spool policy on its own; once Redis is back, flush sends them and each turn is there once
    (a submit that did reach Redis before the cut is deduplicated by its message id)."""
    keys = Keys(prefix)
    config = ProducerConfig(redis_url=proxy.url, key_prefix=prefix, timeout_s=2.0, on_unavailable="spool")
    users = [uid("u") for _ in range(20)]
    async with AsyncProducer(config) as producer:
        await producer.warm(2)
        proxy.stall()
        sent_before = proxy.received
        pending = asyncio.gather(*(producer.submit(u, "t", _turn(0)) for u in users))
        while proxy.received == sent_before:  # the batch left the client
            await asyncio.sleep(0.01)
        proxy.cut()
        receipts = await pending
        assert [r.status for r in receipts] == ["spooled"] * 20
        assert producer.spooled == 20
        proxy.resume()
        assert await producer.flush() == 20
        after = await producer.submit(users[0], "t", _turn(1))
    assert after.status == "accepted"
    for u in users[1:]:
        assert _buffered_ids(redis_client, keys, u) == ["m0"]
    assert _buffered_ids(redis_client, keys, users[0]) == ["m0", "m1"]


async def test_submits_stalled_behind_a_batch_time_out_on_their_own(
    proxy: TcpProxy, prefix: str, redis_client: redis.Redis
) -> None:
    """Redis stalls with a batch in flight; a thread's next submit waits behind it: both time out
    (policy raise: ProducerUnavailable each), the producer recovers after the stall, and the
    thread's turns that reached Redis are in submit order."""
    from producer import ProducerUnavailable

    keys = Keys(prefix)
    config = ProducerConfig(redis_url=proxy.url, key_prefix=prefix, timeout_s=0.3, on_unavailable="raise")
    user = uid("u")
    async with AsyncProducer(config) as producer:
        await producer.warm(2)
        proxy.stall()
        first = asyncio.ensure_future(producer.submit(user, "t", _turn(0)))
        await asyncio.sleep(0.05)  # in flight (held by the proxy)
        with pytest.raises(ProducerUnavailable):
            await producer.submit(user, "t", _turn(1))  # same thread: waits behind the first
        with pytest.raises(ProducerUnavailable):
            await first
        proxy.resume()
        await asyncio.sleep(0.1)
        later = await producer.submit(user, "t", _turn(2))
    assert later.status == "accepted"
    assert _buffered_ids(redis_client, keys, user) in (["m0", "m2"], ["m0", "m1", "m2"])
