"""Working across the 16 shards of a cluster: fair dispatch (a loaded shard starves no other),
and the CLI's ``stats`` (summed), ``pending`` and ``dlq`` (every shard), ``events`` (the shards'
streams merged by time); a CLI started with another shard count refuses."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from producer import Producer, ProducerConfig
from schemas.events import ChangeEvent
from schemas.reflection import DeadLetter
from tests.cluster.conftest import SHARDS
from tests.conftest import uid
from tests.support.cli import in_process, json_of
from worker.pipeline.coordinator import Coordinator
from worker.pipeline.dispatcher import Dispatcher
from worker.pipeline.keys import WorkerKeys


def _users_of_shard(keys: WorkerKeys, shard: int, n: int) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        user = uid("h")
        if keys.shard_of(user) == shard:
            out.append(user)
    return out


@pytest.fixture
def cluster_producer(cluster, cprefix) -> Any:
    config = ProducerConfig(
        redis_url=cluster.url, key_prefix=cprefix, cluster=True, shards=SHARDS, after_seconds=0, timeout_s=2
    )
    with Producer(config) as producer:
        yield producer


def test_a_loaded_shard_does_not_starve_the_others(cluster_client, cprefix, cluster_producer) -> None:
    """120 threads due in one shard and one in each of 8 others: the first pass of a dispatcher
    claiming 16 at a time takes all 8 lone ones (and 8 of the crowd); the crowd follows."""
    keys = WorkerKeys(cprefix, SHARDS, tagged=True)
    crowd = _users_of_shard(keys, 0, 120)
    lone = [_users_of_shard(keys, shard, 1)[0] for shard in range(1, 9)]
    for user in crowd + lone:
        cluster_producer.submit(user, "t", [{"role": "user", "content": "hi"}])
    sent: list[Any] = []
    dispatcher = Dispatcher(Coordinator(cluster_client, keys), sent.append, batch=16, inflight_timeout_s=60)
    assert dispatcher.run_once(0.0)[0] == 16
    first = {c.user_id for c in sent}
    assert set(lone) <= first, "every lone shard is served in the first pass"
    assert len(first & set(crowd)) == 8
    while dispatcher.run_once(0.0)[0]:
        pass
    assert sorted(c.user_id for c in sent) == sorted(crowd + lone), "each thread claimed exactly once"
    assert dispatcher.coordinator.inflight_count() == 128
    assert dispatcher.coordinator.stats()["dispatched"] == 128


@pytest.fixture
def run(cluster, cprefix, redis_url, tmp_path: Path) -> Any:
    return in_process(
        {
            "REVERIE_REDIS_URL": cluster.url,
            "REVERIE_REDIS_CLUSTER": "true",
            "REVERIE_SHARDS": str(SHARDS),
            "REVERIE_CELERY_REDIS_URL": redis_url,
            "REVERIE_KEY_PREFIX": cprefix,
            "REVERIE_QDRANT_PATH": str(tmp_path / "cli-qdrant"),
            "REVERIE_LOG_LEVEL": "WARNING",
        }
    )


def _event(keys: WorkerKeys, user: str, n: int) -> tuple[str, dict[str, str]]:
    event = ChangeEvent(
        event_id=f"{user}:t:g1:5:{n}", user_id=user, memory_id=f"{n:08d}-mem", op="insert", kind="semantic"
    )
    values = [*event.fields(), "ts_ms", "1700000000000"]
    return keys.shard_for(user).events, dict(zip(values[::2], values[1::2], strict=True))


def test_cli_works_across_the_shards(run, cluster_client, cprefix, cluster_producer) -> None:
    """Users in three shards: stats sums their counters, pending lists every due thread, dlq
    lists a dead letter wherever it is, events merges the shards' streams by time."""
    keys = WorkerKeys(cprefix, SHARDS, tagged=True)
    users = [_users_of_shard(keys, shard, 1)[0] for shard in (2, 7, 11)]
    for user in users:
        cluster_producer.submit(user, "t", [{"role": "user", "content": "hi"}, {"role": "user", "content": "again"}])
    stats = json_of(run("stats", "--json"))
    assert (stats["enqueued_turns"], stats["due_threads"], stats["buffered_turns"]) == (6, 3, 6)
    pending = json_of(run("pending", "--json"))
    assert sorted(r["user_id"] for r in pending["threads"]) == sorted(users)
    assert pending["totals"] == {"due": 3, "running": 0}

    coordinator = Coordinator(cluster_client, keys)
    letter = DeadLetter(user_id=users[1], thread_id="t", generation=1, attempts=5, reason="boom", failed_ms=1)
    coordinator.reschedule(users[1], "t", token=None, generation=1, delay_ms=0, failure=letter, max_attempts=1)
    assert [r["user_id"] for r in json_of(run("dlq", "list", "--json"))] == [users[1]]
    assert json_of(run("dlq", "replay", users[1], "t", "--json")) == {"replayed": [f"{users[1]}:t"]}

    # events: one stream per shard; ids chosen so that time order interleaves the shards
    for n, user in enumerate(users * 2):
        key, fields = _event(keys, user, n)
        cluster_client.xadd(key, fields, id=f"{1_700_000_000_000 + n}-0")
    listed = json_of(run("events", "--json"))
    assert [e["memory_id"][:8] for e in listed] == [f"{n:08d}" for n in range(6)]
    newest = json_of(run("events", "--json", "--count", "2"))
    assert [e["memory_id"][:8] for e in newest] == ["00000004", "00000005"]
    after = json_of(run("events", "--json", "--since", listed[2]["stream_id"], "--user", users[0]))
    assert [e["memory_id"][:8] for e in after] == ["00000003"]


def test_cli_refuses_another_shard_count(run, cluster_producer) -> None:
    """The deployment is recorded with 16 shards: a CLI with REVERIE_SHARDS=4 says so and stops."""
    cluster_producer.submit(uid("u"), "t", [{"role": "user", "content": "hi"}])  # records the layout
    result = run("stats", REVERIE_SHARDS="4")
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert "16 shard(s)" in line and "4 shard(s)" in line and "reverie reshard 4" in line, line


def test_health_checks_the_whole_cluster(cluster, redis_url) -> None:
    """``reverie health`` on a cluster: every slot served (cluster_state), primaries counted."""
    from schemas.settings import Settings
    from tests.cluster.conftest import cluster_settings
    from worker.ops.health import check_redis

    check = check_redis(Settings(**cluster_settings(cluster, redis_url)))
    assert check.status == "ok", check
    assert "cluster of 3 primaries, 16 shards" in check.detail


async def test_the_async_producer_on_the_cluster(cluster, cprefix, cluster_client) -> None:
    """``AsyncProducer`` with a cluster URL: warm() opens connections to every primary, a submit
    lands in the user's shard, ``replica_wait_ms`` reports the replica's acknowledgement, status
    reads it back."""
    from producer import AsyncProducer

    config = ProducerConfig(
        redis_url=cluster.url, key_prefix=cprefix, cluster=True, shards=SHARDS, after_seconds=30, replica_wait_ms=200
    )
    keys = WorkerKeys(cprefix, SHARDS, tagged=True)
    users = [_users_of_shard(keys, shard, 1)[0] for shard in (0, 5, 10, 15)]
    async with AsyncProducer(config) as producer:
        assert await producer.warm(2) == 2
        receipts = [await producer.submit(u, "t", [{"role": "user", "content": "hi", "id": "m1"}]) for u in users]
        again = await producer.submit(users[0], "t", [{"role": "user", "content": "hi", "id": "m1"}])
        status = await producer.status(users[1])
    assert [(r.status, r.replicas) for r in receipts] == [("accepted", 1)] * 4
    assert (again.status, again.replicas) == ("duplicate", 1)
    assert [(t.thread_id, t.state, t.buffered_turns) for t in status.threads] == [("t", "due", 1)]
    for user in users:
        assert cluster_client.llen(keys.buffer(user, "t")) == 1


async def test_pipelined_async_submits_are_grouped_by_node(cluster, cprefix, cluster_client) -> None:
    """Concurrent submits for users of every shard: one pipeline per primary they land on (not one
    per submit), each with its own receipt, and with ``replica_wait_ms`` each node's WAIT answers
    for its own submits."""
    from producer import AsyncProducer

    config = ProducerConfig(
        redis_url=cluster.url,
        key_prefix=cprefix,
        cluster=True,
        shards=SHARDS,
        after_seconds=30,
        replica_wait_ms=500,
        timeout_s=2.0,
    )
    keys = WorkerKeys(cprefix, SHARDS, tagged=True)
    users = [u for shard in range(SHARDS) for u in _users_of_shard(keys, shard, 2)]
    async with AsyncProducer(config) as producer:
        await producer.warm(2)
        pipeline = producer._pipeline
        assert pipeline is not None
        before = pipeline.batches
        receipts = await asyncio.gather(
            *(producer.submit(u, "t", [{"role": "user", "content": "hi", "id": "m1"}]) for u in users)
        )
        groups = pipeline.batches - before
    assert [(r.status, r.replicas) for r in receipts] == [("accepted", 1)] * len(users)
    assert 3 <= groups <= 6  # one pipeline per primary (a second flight at most)
    for user in users:
        assert cluster_client.llen(keys.buffer(user, "t")) == 1
