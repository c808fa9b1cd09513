"""Figures 1 and 2: what a chat server pays per turn, next to a raw Redis command on the same
connection and a Celery ``apply_async(countdown=…)`` to the same broker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from pydantic import SecretStr

from bench.broker import dispatch_send
from bench.env import BenchEnv
from bench.report import Section, percentile, ratio
from producer import AsyncProducer, Producer, ProducerConfig
from producer import core as producer_core

ROUNDS = 10
TURN = "I moved to Osaka last spring and I love the ramen there"


def _turn(i: int) -> dict[str, str]:
    return {"role": "user", "content": TURN, "id": f"m{i}"}


def _ids(i: int) -> tuple[str, str]:
    return f"user{i % 500}", f"t{i % 3}"


def _timed_sync(fn: Callable[[int], Any], start: int, n: int, out: list[float]) -> None:
    clock = time.perf_counter_ns
    for i in range(start, start + n):
        t0 = clock()
        fn(i)
        out.append((clock() - t0) / 1000)


async def _timed_async(fn: Callable[[int], Awaitable[Any]], start: int, n: int, out: list[float]) -> None:
    clock = time.perf_counter_ns
    for i in range(start, start + n):
        t0 = clock()
        await fn(i)
        out.append((clock() - t0) / 1000)


def _celery_apply(env: BenchEnv, prefix: str) -> tuple[Callable[[int], Any], Any]:
    from schemas.settings import Settings
    from worker.app import create_app
    from worker.tasks import REFLECT

    app = create_app(Settings(redis_url=SecretStr(env.redis_url), key_prefix=prefix, dispatcher_in_worker=False))
    task = app.tasks[REFLECT]

    def apply(i: int) -> Any:
        u, t = _ids(i)
        # No worker consumes this prefix's queue: the message just lands in the broker.
        return task.apply_async(kwargs={"user_id": u, "thread_id": t, "generation": i + 1}, countdown=30)

    return apply, app


def enqueue_latency(env: BenchEnv, calls: int) -> Section:
    """Figure 1: ``submit`` of one turn, sync and asyncio, p50/p99."""
    section = Section("1. enqueue latency")
    prefix = env.sub_prefix("enq")
    cfg = ProducerConfig(redis_url=env.redis_url, key_prefix=prefix, after_seconds=30, timeout_s=2.0)
    per_round = max(1, calls // ROUNDS)
    lat: dict[str, list[float]] = {k: [] for k in ("submit", "set", "celery", "asubmit", "asolo", "aset", "cpu")}
    apply, app = _celery_apply(env, prefix)
    with Producer(cfg) as p:
        client = p.client

        def submit(i: int) -> Any:
            u, t = _ids(i)
            return p.submit(u, t, [_turn(i)])

        def raw_set(i: int) -> Any:
            return client.set(f"{prefix}:raw:{i % 500}", TURN)

        def prepare_only(i: int) -> Any:  # the client-side CPU of submit, no I/O
            u, t = _ids(i)
            return p._prepare(u, t, [_turn(i)], None, None, "default")

        # warm-up: script load, connections, Celery's first publish
        _timed_sync(submit, 10_000_000, 200, [])
        _timed_sync(raw_set, 0, 200, [])
        _timed_sync(apply, 0, 200, [])
        # interleaved rounds, so drift (other load, GC) hits all three alike
        for r in range(ROUNDS):
            _timed_sync(submit, r * per_round, per_round, lat["submit"])
            _timed_sync(raw_set, r * per_round, per_round, lat["set"])
            _timed_sync(apply, r * per_round, per_round, lat["celery"])
            _timed_sync(prepare_only, r * per_round, per_round, lat["cpu"])
    app.close()

    async def run_async() -> None:
        solo = AsyncProducer(cfg.model_copy(update={"pipeline": False}))
        async with AsyncProducer(cfg) as ap:
            aclient = ap.client

            async def asubmit(i: int) -> Any:
                u, t = _ids(i)
                return await ap.submit(u, t, [_turn(i)])

            async def asolo(i: int) -> Any:  # the same submit, never batched
                u, t = _ids(i)
                return await solo.submit(u, t, [_turn(i)])

            async def aset(i: int) -> Any:
                return await aclient.set(f"{prefix}:raw:{i % 500}", TURN)

            await _timed_async(asubmit, 20_000_000, 200, [])
            await _timed_async(asolo, 30_000_000, 200, [])
            await _timed_async(aset, 0, 200, [])
            for r in range(ROUNDS):
                await _timed_async(asubmit, 1_000_000 + r * per_round, per_round, lat["asubmit"])
                await _timed_async(asolo, 2_000_000 + r * per_round, per_round, lat["asolo"])
                await _timed_async(aset, r * per_round, per_round, lat["aset"])
        await solo.aclose()

    asyncio.run(run_async())
    n = per_round * ROUNDS
    p50 = {k: percentile(v, 50) for k, v in lat.items()}
    p99 = {k: percentile(v, 99) for k, v in lat.items()}
    goal_set = "p50 ≤ 1.5× SET"
    goal_cel = "≥ 4× faster than apply_async"
    section.add(
        "1",
        "sync submit p50",
        p50["submit"],
        "µs",
        "raw SET p50",
        p50["set"],
        goal_set,
        ratio(p50["submit"], p50["set"]) <= 1.5,
    )
    section.add("1", "sync submit p99", p99["submit"], "µs", "raw SET p99", p99["set"])
    row = section.add("1", "sync submit p50", p50["submit"], "µs", "Celery apply_async(countdown) p50", p50["celery"])
    row.goal, row.met = goal_cel, ratio(p50["celery"], p50["submit"]) >= 4
    section.add("1", "sync submit p99", p99["submit"], "µs", "Celery apply_async(countdown) p99", p99["celery"])
    section.add(
        "1",
        "async submit p50",
        p50["asubmit"],
        "µs",
        "async SET p50",
        p50["aset"],
        goal_set,
        ratio(p50["asubmit"], p50["aset"]) <= 1.5,
    )
    section.add("1", "async submit p99", p99["asubmit"], "µs", "async SET p99", p99["aset"])
    section.add("1", "async submit p50 (pipeline on, lone)", p50["asubmit"], "µs", "pipeline=False p50", p50["asolo"])
    row = section.add("1", "async submit p50", p50["asubmit"], "µs", "Celery apply_async(countdown) p50", p50["celery"])
    row.goal, row.met = goal_cel, ratio(p50["celery"], p50["asubmit"]) >= 4
    section.add(
        "1", "submit client CPU p50 (validate+encode, no I/O)", p50["cpu"], "µs", "sync submit p50", p50["submit"]
    )
    section.counters = {"calls_per_series": n, "celery_speedup_sync": ratio(p50["celery"], p50["submit"])}
    section.notes.append(
        f"{n} calls per series, {ROUNDS} interleaved rounds, one turn (~{len(TURN)} chars) per submit, "
        "one connection; Celery's apply_async sends to the same Redis (no worker consumes it). "
        "Ratio < 1 against apply_async means the submit is faster."
    )
    dispatch_send(env, section, calls)  # RabbitMQ with confirms vs the Redis broker, if reachable
    return section


async def _sessions(sessions: int, per_session: int, fn: Callable[[int, int], Awaitable[Any]]) -> float:
    async def session(s: int) -> None:
        for k in range(per_session):
            await fn(s, k)

    t0 = time.perf_counter()
    await asyncio.gather(*(session(s) for s in range(sessions)))
    return time.perf_counter() - t0


def enqueue_throughput(env: BenchEnv, sessions: int, per_session: int) -> Section:
    """Figure 2: turns/s from one asyncio process with ``sessions`` concurrent chat sessions."""
    section = Section("2. enqueue throughput")
    prefix = env.sub_prefix("thr")
    cfg = ProducerConfig(redis_url=env.redis_url, key_prefix=prefix, after_seconds=30, timeout_s=5.0)
    total = sessions * per_session
    results: dict[str, tuple[float, float]] = {}

    async def run() -> None:
        solo = AsyncProducer(cfg.model_copy(update={"pipeline": False}))
        async with AsyncProducer(cfg) as ap:
            client: aioredis.Redis = ap.client
            keys, argv = producer_core.submit_call(
                ap.keys,
                producer_core.build_request("raw", "t", [_turn(0)]),
                default_after_s=30,
                default_max_wait_s=600,
            )

            async def submit(s: int, k: int) -> Any:
                return await ap.submit(f"user{s}", "t", [{"role": "user", "content": TURN, "id": f"m{k}"}])

            async def solo_submit(s: int, k: int) -> Any:  # pipeline=False: one round trip each
                return await solo.submit(f"user{s}", "t", [{"role": "user", "content": TURN, "id": f"n{k}"}])

            async def raw_set(s: int, k: int) -> Any:
                return await client.set(f"{prefix}:raw:{s}", TURN)

            async def raw_script(s: int, k: int) -> Any:  # the SUBMIT script with prebuilt args
                return await ap.scripts.submit(keys=keys, args=[*argv[:-2], f"r{s}-{k}", argv[-1]])

            series = (("submit", submit), ("set", raw_set), ("script", raw_script), ("solo", solo_submit))
            for name, fn in series:
                await _sessions(sessions, 5, _offset(fn, 1_000_000) if name in ("submit", "solo") else fn)  # warm-up
                cpu0 = time.process_time()
                wall = await _sessions(sessions, per_session, fn)
                results[name] = (total / wall, (time.process_time() - cpu0) / wall)
            batches = ap._pipeline.batches if ap._pipeline else 0
        await solo.aclose()
        results["batches"] = (batches, 0.0)

    asyncio.run(run())
    batches = int(results.pop("batches")[0])
    rate = {k: v[0] for k, v in results.items()}
    cpu = {k: v[1] for k, v in results.items()}
    section.add(
        "2",
        f"async submit, {sessions} sessions",
        rate["submit"],
        "turns/s",
        "raw SET round trips",
        rate["set"],
        "≥ 1.0× raw",
        ratio(rate["submit"], rate["set"]) >= 1.0,
    )
    section.add(
        "2", "async submit, pipeline=False (one round trip each)", rate["solo"], "turns/s", "raw SET", rate["set"]
    )
    section.add(
        "2", "SUBMIT script, prebuilt args (no validation)", rate["script"], "/s", "raw SET round trips", rate["set"]
    )
    # cores busy × wall / calls = client CPU per call: what bounds one event loop
    per_call = {k: 1e6 * cpu[k] / rate[k] for k in rate}
    section.add(
        "2",
        "client CPU per submit (one event loop)",
        per_call["submit"],
        "µs",
        "per raw SET",
        per_call["set"],
        note=f"the process was {cpu['submit']:.2f} cores busy while submitting, {cpu['set']:.2f} while SETting",
    )
    from redis.utils import HIREDIS_AVAILABLE

    section.counters = {
        "turns": total,
        "sessions": sessions,
        "hiredis": bool(HIREDIS_AVAILABLE),
        "parser": _default_parser(),
        "cpu_busy_submit": cpu["submit"],
        "pipelines": batches,
        "cpu_us_per_call": per_call,
    }
    return section


def _offset(fn: Callable[[int, int], Awaitable[Any]], by: int) -> Callable[[int, int], Awaitable[Any]]:
    async def shifted(s: int, k: int) -> Any:
        return await fn(s, k + by)

    return shifted


def _default_parser() -> str:
    from redis.connection import DefaultParser

    return DefaultParser.__name__
