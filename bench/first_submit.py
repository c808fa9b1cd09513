"""Figure 8: the first submits of a chat server that just started. Concurrent callers each open
a connection at the same moment unless the pool was warmed (``AsyncProducer.warm``); reference:
the same callers' steady p50, measured in the same run."""

from __future__ import annotations

import asyncio
import time

from bench.env import BenchEnv
from bench.report import Section, percentile, ratio
from producer import AsyncProducer, ProducerConfig

TURN = {"role": "user", "content": "I moved to Osaka last spring and I love the ramen there"}


async def _burst(p: AsyncProducer, callers: int, base: int, out: list[float], counts: dict[str, int]) -> None:
    async def one(i: int) -> None:
        t0 = time.perf_counter_ns()
        receipt = await p.submit(f"first{i}", "t", [TURN])
        out.append((time.perf_counter_ns() - t0) / 1000)
        counts["submits"] += 1
        counts["accepted"] += receipt.status == "accepted"

    await asyncio.gather(*(one(base + i) for i in range(callers)))


async def _run(
    env: BenchEnv, prefix: str, callers: int, rounds: int, warm: bool, counts: dict[str, int]
) -> tuple[list[float], list[float]]:
    cfg = ProducerConfig(redis_url=env.redis_url, key_prefix=prefix, after_seconds=30, timeout_s=2.0)
    async with AsyncProducer(cfg) as p:
        if warm:
            counts["warmed_connections"] += await p.warm(callers)
        first: list[float] = []
        await _burst(p, callers, 0, first, counts)
        steady: list[float] = []
        for r in range(rounds):
            await _burst(p, callers, (r + 1) * callers, steady, counts)
    return first, steady


def first_submits(env: BenchEnv, callers: int = 40, trials: int = 5, rounds: int = 20) -> Section:
    """Cold pool, then warmed: each trial a fresh producer, one burst of first submits, then
    ``rounds`` steady bursts of the same callers."""
    section = Section("8. first submits of a fresh chat server")
    figures: dict[bool, tuple[list[float], list[float]]] = {}
    for warm in (False, True):
        firsts, steadies = [], []
        counts = section.counters.setdefault(
            "after warm()" if warm else "cold pool", {"submits": 0, "accepted": 0, "warmed_connections": 0}
        )
        for trial in range(trials):  # fresh producer each time: its first burst is the cold one
            prefix = env.sub_prefix(f"first{int(warm)}{trial}")
            first, steady = asyncio.run(_run(env, prefix, callers, rounds, warm, counts))
            firsts += first
            steadies += steady
        figures[warm] = (firsts, steadies)
    for warm, label in ((False, "cold pool"), (True, "after warm()")):
        firsts, steadies = figures[warm]
        p99_all = percentile(firsts + steadies, 99)
        p50 = percentile(steadies, 50)
        section.add(
            "8",
            f"first-submit p99, {callers} callers, {label}",
            percentile(firsts, 99),
            "µs",
            f"steady p50, {callers} callers",
            p50,
        )
        section.add(
            "8",
            f"p99 incl. first submits, {label}",
            p99_all,
            "µs",
            f"steady p50, {callers} callers",
            p50,
            "≤ 3× p50" if warm else "",
            ratio(p99_all, p50) <= 3 if warm else None,
        )
    return section
