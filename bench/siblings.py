"""Figure 10: ready lag with sibling threads. The side-by-side shape (U users × T threads × K turns,
turns ``gap_s`` apart, a scripted model of ``latency_s``): every thread of a user falls due at
the same moment. By default they are reflected together (one run, one model call per user);
the reference run reflects them one by one (``join_siblings=0``): per-user serialisation (one
lease per user) runs them one after another, each handing the lease over on release. Ready lag
= the moment a thread's memories are committed − its last turn's submit. Goal: p99 ≤ debounce +
2 × model latency + 0.5 s."""

from __future__ import annotations

import time
from collections import defaultdict
from itertools import pairwise
from typing import Any

from bench.env import BenchEnv
from bench.pipeline import _buffered, _llm, _memory_audit
from bench.report import Section, percentile
from bench.system import System, llm_subprocess, running_system

GAP_S = 0.3
LATENCY_S = 0.3


def _submit_bursts(system: System, users: list[str], threads: int, turns: int, gap_s: float) -> dict[str, float]:
    """K rounds: one turn to every (user, thread), then ``gap_s``. Returns each thread's last submit (ms)."""
    last: dict[str, float] = {}
    for k in range(turns):
        for u in users:
            for t in range(threads):
                system.producer.submit(u, f"t{t}", [{"role": "user", "content": f"{u} t{t} fact {k}", "id": f"m{k}"}])
                last[f"{u}:t{t}"] = time.time() * 1000
        if k < turns - 1:
            time.sleep(gap_s)
    return last


def sibling_run(
    env: BenchEnv,
    name: str,
    *,
    users: int,
    threads: int,
    turns: int,
    after_s: float,
    gap_s: float,
    base_url: str,
    latency_s: float,
    qdrant_in_memory: bool = False,
    join_siblings: int = 8,
) -> dict[str, Any]:
    user_ids = [f"{name}u{u}" for u in range(users)]
    expected = {f"{u} t{t} fact {k}" for u in user_ids for t in range(threads) for k in range(turns)}
    with running_system(
        env,
        name,
        after_seconds=after_s,
        max_wait_s=600.0,
        qdrant_in_memory=qdrant_in_memory,
        join_siblings=join_siblings,
        **_llm(base_url),
    ) as system:
        last = _submit_bursts(system, user_ids, threads, turns, gap_s)
        total = users * threads * turns
        finished = system.wait(lambda: system.committed_turns() >= total and system.idle(), timeout_s=60 + total / 20)
        time.sleep(0.3)  # a late duplicate reflection would show up here
        with system.lock:
            commits = list(system.commits)
            starts = list(system.starts)
            outcomes: dict[str, int] = defaultdict(int)
            for r in system.results:
                outcomes[r.outcome] += 1
        audit = _memory_audit(system, user_ids, expected)
        buffered = _buffered(system, user_ids, threads)
        committed = system.committed_turns()
        system_stats = system.runtime.coordinator.stats()
        llm_calls = system_stats.get("llm_calls", 0)
    ready: dict[str, float] = {}
    for user_id, thread_id, ms in commits:  # the last commit of a thread is the one with its last turn
        ready[f"{user_id}:{thread_id}"] = ms
    lags = {m: ready[m] - last[m] for m in last if m in ready}
    by_order: dict[int, list[float]] = defaultdict(list)  # 1st, 2nd… sibling of its user to be ready
    for u in user_ids:
        mine = sorted(lag for m, lag in lags.items() if m.startswith(f"{u}:"))
        for i, lag in enumerate(mine):
            by_order[i + 1].append(lag)
    values = list(lags.values())
    handovers = _handovers(commits, starts)
    return {
        "users": users,
        "threads": threads,
        "turns_per_thread": turns,
        "gap_s": gap_s,
        "after_seconds": after_s,
        "model_latency_s": latency_s,
        "finished": finished,
        "ready_threads": len(lags),
        "ready_lag_p50_ms": percentile(values, 50),
        "ready_lag_p99_ms": percentile(values, 99),
        "ready_lag_max_ms": max(values, default=float("nan")),
        "ready_lag_p50_by_sibling_ms": {n: percentile(v, 50) for n, v in sorted(by_order.items())},
        "handover_p50_ms": percentile(handovers, 50),
        "handover_p99_ms": percentile(handovers, 99),
        "qdrant": "in memory (no disk)" if qdrant_in_memory else "local mode (folder)",
        "extraction_calls": llm_calls,
        "expected_calls": users if join_siblings >= threads - 1 else users * threads,
        "join_siblings": join_siblings,
        "joint_reflections": system_stats.get("joint_reflections", 0),
        "deferred": outcomes.get("deferred", 0),
        "outcomes": dict(outcomes),
        "committed_turns": committed,
        "lost_turns": total - committed,
        "still_buffered": buffered,
        **audit,
    }


def _handovers(commits: list[tuple[str, str, float]], starts: list[tuple[str, str, float]]) -> list[float]:
    """Per user, from one sibling's commit to the start of the run that committed the next one
    (its last start before that commit): what handing the lease over costs."""
    out: list[float] = []
    by_user: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for u, t, ms in commits:
        by_user[u].append((ms, t))
    for u, done in by_user.items():
        done.sort()
        for (prev_ms, _), (ms, t) in pairwise(done):
            began = max((s for su, st, s in starts if su == u and st == t and s <= ms), default=None)
            if began is not None:
                out.append(began - prev_ms)
    return out


def ready_lag(
    env: BenchEnv,
    *,
    users: int,
    threads: int,
    turns: int,
    after_s: float,
    gap_s: float = GAP_S,
    latency_s: float = LATENCY_S,
) -> Section:
    """Figure 10."""
    section = Section("10. ready lag with sibling threads")
    shape = dict(users=users, threads=threads, turns=turns, after_s=after_s, gap_s=gap_s, latency_s=latency_s)
    with llm_subprocess(latency_s) as base_url:
        runs = {
            "local": sibling_run(env, "sib", base_url=base_url, **shape),
            "in memory": sibling_run(env, "sibm", base_url=base_url, qdrant_in_memory=True, **shape),
            "one by one": sibling_run(env, "sib1", base_url=base_url, join_siblings=0, **shape),
        }
    goal_ms = (after_s + 2 * latency_s + 0.5) * 1000
    floor_ms = (after_s + latency_s) * 1000
    one_by_one = runs["one by one"]
    for key, store in (("local", "local-mode Qdrant (default)"), ("in memory", "Qdrant in memory, no disk")):
        r = runs[key]
        what = f"{users} users × {threads} threads, {store}"
        section.add("10", f"ready lag p50, {what}", r["ready_lag_p50_ms"], "ms", "debounce + model latency", floor_ms)
        section.add(
            "10",
            f"ready lag p99, {what}",
            r["ready_lag_p99_ms"],
            "ms",
            "goal: debounce + 2 × model + 0.5 s",
            goal_ms,
            "p99 ≤ debounce + 2 × model latency + 0.5 s",
            r["ready_lag_p99_ms"] <= goal_ms,
            note="p50 by the order in which a user's threads became ready: "
            + ", ".join(f"#{n} {v / 1000:.2f} s" for n, v in r["ready_lag_p50_by_sibling_ms"].items()),
        )
        _calls_row(section, r, what)
    what = f"{users} users × {threads} threads, local-mode Qdrant"
    section.add(
        "10",
        f"ready lag p99, siblings joined (default), {what}",
        runs["local"]["ready_lag_p99_ms"],
        "ms",
        "one by one (REVERIE_JOIN_SIBLINGS=0), same shape",
        one_by_one["ready_lag_p99_ms"],
        note=f"one by one: p50 {one_by_one['ready_lag_p50_ms'] / 1000:.2f} s; by sibling "
        + ", ".join(f"#{n} {v / 1000:.2f} s" for n, v in one_by_one["ready_lag_p50_by_sibling_ms"].items()),
    )
    section.add(
        "10",
        "lease hand-over p99 (a sibling's commit → the next one's start), one by one",
        one_by_one["handover_p99_ms"],
        "ms",
        "dispatcher poll interval",
        100.0,
        note=f"p50 {one_by_one['handover_p50_ms']:.0f} ms",
    )
    _calls_row(section, one_by_one, f"{what}, one by one")
    section.counters = runs
    section.notes.append(
        f"{users} users × {threads} threads × {turns} turns, a turn to every thread each {gap_s:g} s, debounce "
        f"{after_s:g} s, scripted model {latency_s * 1000:.0f} ms (its own process), one worker (threads pool of 32) "
        "and its dispatcher. Ready lag = commit of the thread's memories (end of its reflection) − submit of its "
        "last turn. A user's threads share its memories, so one reflection of the user runs at a time. By default "
        f"the {threads} sibling threads, due together, are reflected in one run (one model call per user); one by "
        f"one they commit one after another, and the last cannot be ready before debounce + {threads} × model "
        "latency. Local mode writes each point to its folder (one SQLite commit per point) under the lock that "
        "serialises every Qdrant call of the process; the in-memory run keeps that lock and the Python filter "
        "passes but writes nothing to disk."
    )
    return section


def _calls_row(section: Section, r: dict[str, Any], what: str) -> None:
    """Extraction calls against one per thread: at most one per quiet period, nothing lost or doubled."""
    per_thread = r["users"] * r["threads"]
    ok = (
        r["expected_calls"] <= r["extraction_calls"] <= per_thread
        and r["lost_turns"] == 0
        and r["duplicate_memories"] == 0
        and r["missing_memories"] == 0
    )
    section.add(
        "10",
        f"extraction calls, {what}",
        r["extraction_calls"],
        "",
        "threads (U×T)",
        per_thread,
        "≤ 1.00, 0 lost, 0 duplicates",
        ok,
        note=f"joint reflections {r['joint_reflections']}; lease hand-overs waited for (deferred outcomes): "
        f"{r['deferred']}",
    )
