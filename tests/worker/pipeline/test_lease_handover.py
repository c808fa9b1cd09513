"""The user lease's hand-over on a real Redis: a release wakes one waiting sibling, not all of
them; a woken waiter whose task dies strands no one (the others still fall due when the lease's
TTL would have ended); the heartbeat moves the in-flight deadline by the server's clock."""

from __future__ import annotations

import time

import redis

from producer import Producer
from producer.keys import member
from tests.conftest import uid
from worker.pipeline.coordinator import Coordinator
from worker.pipeline.keys import WorkerKeys as Keys


def _server_ms(client: redis.Redis) -> int:
    s, us = client.time()
    return int(s) * 1000 + int(us) // 1000


def _waiting_siblings(producer: Producer, coord: Coordinator, user: str, threads: list[str], ttl_ms: int) -> int:
    """The lease held by a first reflection; ``threads`` claimed and deferred behind it."""
    for t in threads:
        producer.submit(user, t, [{"role": "user", "content": "x"}], after_seconds=0)
    token = coord.acquire_lease(user, ttl_ms)
    assert token > 0
    claims = coord.claim([member(user, t) for t in threads], 60_000)
    assert len(claims) == len(threads)
    for c in claims:
        coord.reschedule(user, c.thread_id, token=None, generation=c.generation, delay_ms=0, wait_for_lease=True)
    return token


def _due_now(client: redis.Redis, keys: Keys, user: str, threads: list[str]) -> list[str]:
    now = _server_ms(client)
    return [t for t in threads if (s := client.zscore(keys.due_ss, member(user, t))) is not None and s <= now]


def test_a_release_wakes_one_waiter_and_the_next_release_the_next(producer: Producer, redis_client) -> None:
    keys = Keys(producer.config.key_prefix)
    coord = Coordinator(redis_client, keys)
    user, threads = uid("u"), ["a", "b", "c"]
    token = _waiting_siblings(producer, coord, user, threads, ttl_ms=60_000)
    assert _due_now(redis_client, keys, user, threads) == []
    assert coord.release_lease(user, token)
    woken = _due_now(redis_client, keys, user, threads)
    assert len(woken) == 1  # one hand-over, not three wake-ups of which two defer again
    assert redis_client.scard(keys.waiters(user)) == 2
    # the woken one reflects (takes the lease) and releases: the next waiter is woken
    claim = coord.claim([member(user, woken[0])], 60_000)[0]
    second = coord.acquire_lease(user, 60_000)
    coord.release(user, woken[0], second, claim.generation, "committed")
    assert len(_due_now(redis_client, keys, user, threads)) == 1
    assert redis_client.scard(keys.waiters(user)) == 1


def test_a_woken_waiter_that_dies_strands_no_one(producer: Producer, redis_client) -> None:
    """The woken waiter's task dies before it takes the lease (nobody will release again): the
    other waiters were given the lease's TTL as their due time, so they still fall due then."""
    keys = Keys(producer.config.key_prefix)
    coord = Coordinator(redis_client, keys)
    user, threads = uid("u"), ["a", "b", "c"]
    token = _waiting_siblings(producer, coord, user, threads, ttl_ms=400)
    assert coord.release_lease(user, token)
    woken = _due_now(redis_client, keys, user, threads)
    assert len(woken) == 1
    coord.claim([member(user, woken[0])], 60_000)  # dispatched; its worker dies: no release follows
    rest = [t for t in threads if t not in woken]
    deadline = time.monotonic() + 5
    while _due_now(redis_client, keys, user, rest) != rest and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _due_now(redis_client, keys, user, rest) == rest
    assert len(coord.claim([member(user, t) for t in rest], 60_000)) == 2


def test_a_waiter_already_gone_from_the_due_set_is_skipped(producer: Producer, redis_client) -> None:
    """A waiter no longer due (claimed meanwhile) is not the one woken: the next one is."""
    keys = Keys(producer.config.key_prefix)
    coord = Coordinator(redis_client, keys)
    user, threads = uid("u"), ["a", "b"]
    token = _waiting_siblings(producer, coord, user, threads, ttl_ms=60_000)
    redis_client.zrem(keys.due_ss, member(user, "a"))  # as if claimed by another dispatcher
    assert coord.release_lease(user, token)
    assert _due_now(redis_client, keys, user, threads) == ["b"]


def test_the_heartbeat_moves_the_inflight_deadline_in_one_call(producer: Producer, redis_client) -> None:
    keys = Keys(producer.config.key_prefix)
    coord = Coordinator(redis_client, keys)
    user = uid("u")
    producer.submit(user, "t", [{"role": "user", "content": "x"}], after_seconds=0)
    coord.claim([member(user, "t")], 1_000)
    before = redis_client.zscore(keys.inflight_ss, member(user, "t"))
    coord.heartbeat(user, "t", 90_000)
    after = redis_client.zscore(keys.inflight_ss, member(user, "t"))
    assert after is not None and before is not None
    assert after >= _server_ms(redis_client) + 80_000 > before
    coord.heartbeat(user, "gone", 90_000)  # not in flight: nothing added
    assert redis_client.zscore(keys.inflight_ss, member(user, "gone")) is None
