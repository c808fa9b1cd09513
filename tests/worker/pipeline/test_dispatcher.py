"""Dispatch: atomic claims, no double dispatch under racing dispatchers, lost claims requeued."""

from __future__ import annotations

import threading
import time
from collections import Counter

import redis

from producer import Producer
from producer.keys import member
from worker.pipeline.coordinator import Claimed, Coordinator
from worker.pipeline.dispatcher import Dispatcher
from worker.pipeline.keys import WorkerKeys as Keys


def _due_threads(producer: Producer, n: int) -> None:
    for i in range(n):
        producer.submit("u", f"t{i}", [{"role": "user", "content": "x"}], after_seconds=0)


def test_racing_dispatchers_send_each_generation_once(producer: Producer, redis_client: redis.Redis) -> None:
    """Four dispatchers on 300 due threads: every thread sent exactly once."""
    keys = Keys(producer.config.key_prefix)
    _due_threads(producer, 300)
    sent: Counter[tuple[str, int]] = Counter()
    lock = threading.Lock()

    def send(c: Claimed) -> None:
        with lock:
            sent[(c.thread_id, c.generation)] += 1

    dispatchers = [Dispatcher(Coordinator(redis_client, keys), send, batch=37) for _ in range(4)]
    threads = [threading.Thread(target=lambda d=d: [d.run_once() for _ in range(20)]) for d in dispatchers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(sent) == 300
    assert set(sent.values()) == {1}
    assert redis_client.zcard(keys.due_ss) == 0
    assert redis_client.zcard(keys.inflight_ss) == 300


def test_threads_not_yet_due_are_left_alone(producer: Producer, redis_client: redis.Redis) -> None:
    """A claim only takes threads whose due time has passed; the pass reports the next due time."""
    keys = Keys(producer.config.key_prefix)
    producer.submit("u", "later", [{"role": "user", "content": "x"}], after_seconds=5)
    sent: list[Claimed] = []
    n, next_ms = Dispatcher(Coordinator(redis_client, keys), sent.append).run_once()
    assert (n, sent) == (0, [])
    assert 3000 < next_ms <= 5000


def test_a_lost_claim_becomes_due_again(producer: Producer, redis_client: redis.Redis) -> None:
    """Dispatcher died after claiming (nothing sent): after the in-flight timeout it is requeued."""
    keys = Keys(producer.config.key_prefix)
    coordinator = Coordinator(redis_client, keys)
    producer.submit("u", "t", [{"role": "user", "content": "x"}], after_seconds=0)
    assert [c.thread_id for c in coordinator.claim(["u:t"], inflight_ms=200)] == ["t"]
    assert coordinator.claim(["u:t"], inflight_ms=200) == []  # already claimed
    time.sleep(0.3)
    sent: list[Claimed] = []
    Dispatcher(coordinator, sent.append).run_once(now=10.0)
    assert [(c.thread_id, c.generation) for c in sent] == [("t", 1)]
    assert int(coordinator.stats()["requeued"]) == 1


def test_send_failure_puts_the_thread_back(producer: Producer, redis_client: redis.Redis) -> None:
    """Broker down at send time: the claim is undone, the thread is due again shortly."""
    keys = Keys(producer.config.key_prefix)
    producer.submit("u", "t", [{"role": "user", "content": "x"}], after_seconds=0)

    def broken(_: Claimed) -> None:
        raise ConnectionError("broker down")

    n, _ = Dispatcher(Coordinator(redis_client, keys), broken).run_once()
    assert n == 0
    assert redis_client.zscore(keys.due_ss, member("u", "t")) is not None
    assert redis_client.zcard(keys.inflight_ss) == 0


def test_fleet_histograms_count_each_observation_in_its_bucket() -> None:
    """Pure: the stats-hash increments of observations, and the cumulative buckets read back."""
    from worker.pipeline.histograms import DISPATCH_LAG, observations, quantile, read

    incr = observations(DISPATCH_LAG, [0.004, 0.2, 0.2, 75.0])
    assert incr["h:dispatch_lag:le=0.01"] == 1 and incr["h:dispatch_lag:le=0.25"] == 2
    assert incr["h:dispatch_lag:le=+Inf"] == 1 and incr["h:dispatch_lag:count"] == 4
    assert incr["h:dispatch_lag:sum_ms"] == 4 + 200 + 200 + 75_000
    buckets, total = read({k: float(v) for k, v in incr.items()}, DISPATCH_LAG)
    assert dict(buckets)["0.01"] == 1 and dict(buckets)["0.5"] == 3 and buckets[-1] == ("+Inf", 4)
    assert total == 75.404
    assert quantile(buckets, 0.5) == 0.25 and quantile(buckets, 0.99) == float("inf")
