"""Figures 3 and 4: LLM-call economy and dispatch lag, each through
the whole pipeline (producer → Redis → dispatcher → Celery worker → scripted LLM → Qdrant)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from pydantic import SecretStr

from bench.env import BenchEnv
from bench.report import Section, percentile
from bench.system import System, running_system
from tests.support.llm_scripts import insert_each_user_turn
from tests.support.scripted_llm import ScriptedLLM


def _llm(base_url: str, model: str = "openai/scripted") -> dict[str, Any]:
    return {"model": model, "llm_api_base": base_url, "llm_api_key": SecretStr("sk-test")}


def _memory_audit(system: System, users: list[str], expected: set[str]) -> dict[str, int]:
    found: list[str] = []
    for user in users:
        found.extend(m.content for m in system.runtime.store.list(user, limit=10_000))
    counts = Counter(found)
    return {
        "memories": len(found),
        "duplicate_memories": sum(n - 1 for n in counts.values() if n > 1),
        "missing_memories": len(expected - set(counts)),
        "unexpected_memories": len(set(counts) - expected),
    }


def _buffered(system: System, users: list[str], threads: int) -> int:
    keys = system.runtime.coordinator.keys
    pipe = system.runtime.redis.pipeline(transaction=False)
    for u in users:
        for t in range(threads):
            pipe.llen(keys.buffer(u, f"t{t}"))
    return sum(pipe.execute())


def economy_run(
    env: BenchEnv,
    llm: ScriptedLLM,
    name: str,
    *,
    users: int,
    threads: int,
    turns: int,
    workers: int,
    concurrency: int,
    after_s: float = 1.0,
) -> dict[str, Any]:
    """Bursts of ``turns`` turns per thread, gaps below the debounce; every submit is sent twice
    (a chat server retrying), so idempotence is exercised too."""
    gap_s = 0.15
    llm.reset()
    llm.set_responder(insert_each_user_turn)
    llm.latency_s = 0.05
    user_ids = [f"{name}u{u}" for u in range(users)]
    expected = {f"{u} t{t} fact {k}" for u in user_ids for t in range(threads) for k in range(turns)}
    with running_system(
        env,
        name,
        workers=workers,
        concurrency=concurrency,
        after_seconds=after_s,
        max_wait_s=60.0,
        **_llm(llm.base_url),
    ) as system:
        worst_gap = 0.0
        last: dict[tuple[str, int], float] = {}
        duplicates = 0
        t0 = time.monotonic()
        for k in range(turns):
            for u in user_ids:
                for t in range(threads):
                    now = time.monotonic()
                    if (u, t) in last:
                        worst_gap = max(worst_gap, now - last[(u, t)])
                    last[(u, t)] = now
                    turn = {"role": "user", "content": f"{u} t{t} fact {k}", "id": f"m{k}"}
                    system.producer.submit(u, f"t{t}", [turn])
                    duplicates += system.producer.submit(u, f"t{t}", [turn]).duplicates
            time.sleep(gap_s)
        submit_s = time.monotonic() - t0
        total = users * threads * turns
        done = system.wait(lambda: system.committed_turns() >= total and system.idle(), timeout_s=60 + total / 20)
        time.sleep(0.3)  # a late duplicate reflection would show up here
        audit = _memory_audit(system, user_ids, expected)
        stats = system.runtime.coordinator.stats()
        out = {
            "users": users,
            "threads": threads,
            "turns_per_thread": turns,
            "workers": workers,
            "concurrency": concurrency,
            "hot_path_calls": total,
            "extraction_calls": llm.chat_calls,
            "quiet_periods": users * threads,
            "thread_commits": stats.get("committed", 0),
            "joint_reflections": stats.get("joint_reflections", 0),
            "joined_threads": stats.get("joined_threads", 0),
            "expected_calls": users * threads - stats.get("joined_threads", 0),
            "economy_ratio": llm.chat_calls / (users * threads),
            "committed_turns": system.committed_turns(),
            "lost_turns": total - system.committed_turns(),
            "still_buffered": _buffered(system, user_ids, threads),
            "retried_submits_deduplicated": duplicates,
            "worst_turn_gap_s": round(worst_gap, 3),
            "after_seconds": after_s,
            "submit_s": round(submit_s, 2),
            "finished": done,
            "outcomes": system.outcomes(),
            **audit,
        }
    llm.latency_s = 0.0
    return out


def economy(env: BenchEnv, llm: ScriptedLLM, *, users: int, threads: int, turns: int, after_s: float = 1.0) -> Section:
    """Figure 3."""
    section = Section("3. LLM-call economy")
    runs = {
        "1 worker": economy_run(
            env, llm, "eco1", users=users, threads=threads, turns=turns, workers=1, concurrency=32, after_s=after_s
        ),
        "4 workers racing": economy_run(
            env, llm, "eco4", users=users, threads=threads, turns=turns, workers=4, concurrency=8, after_s=after_s
        ),
    }
    for label, r in runs.items():
        clean = r["lost_turns"] == 0 and r["duplicate_memories"] == 0 and r["missing_memories"] == 0
        section.add(
            "3",
            f"quiet periods reflected (thread commits), {label}",
            r["thread_commits"],
            "",
            "quiet periods (U×T)",
            r["quiet_periods"],
            "exactly 1.00, 0 lost, 0 duplicates",
            r["thread_commits"] == r["quiet_periods"] and clean,
            note=f"lost turns {r['lost_turns']}, duplicate memories {r['duplicate_memories']}",
        )
        section.add(
            "3",
            f"extraction calls, {label}",
            r["extraction_calls"],
            "",
            "quiet periods (U×T)",
            r["quiet_periods"],
            "one per reflection: U×T − threads joined",
            r["extraction_calls"] == r["expected_calls"],
            note=f"{r['joint_reflections']} joint reflections took in {r['joined_threads']} sibling threads "
            "(a user's threads due together share one call)",
        )
        section.add(
            "3", f"extraction calls, {label}", r["extraction_calls"], "", "hot-path calls (U×T×K)", r["hot_path_calls"]
        )
    section.counters = runs
    section.notes.append(
        f"U={users} users × T={threads} threads × K={turns} turns, a turn per thread every "
        f"~{runs['1 worker']['worst_turn_gap_s']} s with after_seconds={after_s:g} (each submit retried once: "
        "deduplicated by message id); 4 workers = 4 Celery worker controllers (threads pools, 8 each) and "
        "4 dispatchers in one process sharing one runtime, because local-mode Qdrant admits one process. "
        f"Lost turns: {[r['lost_turns'] for r in runs.values()]}, duplicate memories: "
        f"{[r['duplicate_memories'] for r in runs.values()]}, missing memories: "
        f"{[r['missing_memories'] for r in runs.values()]}."
    )
    return section


def _submit_due_at(system: System, n: int, due_at_ms: list[float], name: str) -> list[str]:
    """One assistant-only turn per thread, due at the given wall-clock moments. Assistant turns
    and existing_limit=0 make the reflection itself a few Redis calls, so the lag measured is
    the dispatch path's, not extraction capacity."""
    members = []
    for i in range(n):
        u = f"{name}u{i}"
        after_s = max(0.0, (due_at_ms[i] - time.time() * 1000) / 1000)
        system.producer.submit(u, "t", [{"role": "assistant", "content": "ok", "id": "a1"}], after_seconds=after_s)
        members.append(f"{u}:t")
    return members


def lag_run(env: BenchEnv, name: str, n: int, spread_s: float, **kwargs: Any) -> dict[str, Any]:
    with running_system(
        env, name, concurrency=32, existing_limit=0, after_seconds=1.0, max_wait_s=600.0, **kwargs
    ) as system:
        cpu0 = time.process_time()
        lead_ms = 500 + n * 2.0  # time to submit everything before the first is due
        start = time.time() * 1000 + lead_ms
        due = [start + (spread_s * 1000 * i / n if spread_s else 0.0) for i in range(n)]
        members = _submit_due_at(system, n, due, name)
        submitted_late = time.time() * 1000 > start  # the lead time was too short: lags would be inflated
        system.wait(lambda: len(system.results) >= n and system.idle(), timeout_s=60 + spread_s + n / 50)
        due_of = dict(zip(members, due, strict=True))
        with system.lock:
            first_start: dict[str, float] = {}
            for u, t, ms in system.starts:
                first_start.setdefault(f"{u}:{t}", ms)
            claim_lags = [c.lag_ms for c in system.claims]
        start_lags = [first_start[m] - due_of[m] for m in members if m in first_start]
        return {
            "threads": n,
            "spread_s": spread_s,
            "reflected": len(first_start),
            "starved": n - len(first_start),
            "claim_lag_ms": claim_lags,
            "start_lag_ms": start_lags,
            "submitted_late": submitted_late,
            "cpu_ms_per_reflection": 1000 * (time.process_time() - cpu0) / max(1, len(first_start)),
            "outcomes": system.outcomes(),
        }


def dispatch_lag(env: BenchEnv, *, threads: int, spread_s: float) -> Section:
    """Figure 4."""
    section = Section("4. dispatch lag")
    counters = {}
    for label, spread in (("due at once", 0.0), (f"due over {spread_s:g} s", spread_s)):
        r = lag_run(env, f"lag{int(spread)}", threads, spread)
        claim, start = r.pop("claim_lag_ms"), r.pop("start_lag_ms")
        r |= {
            "claim_lag_p50_ms": percentile(claim, 50),
            "claim_lag_p99_ms": percentile(claim, 99),
            "start_lag_p50_ms": percentile(start, 50),
            "start_lag_p99_ms": percentile(start, 99),
            "start_lag_max_ms": max(start, default=float("nan")),
        }
        counters[label] = r
        section.add(
            "4",
            f"due → reflection start p50, {threads} threads {label}",
            r["start_lag_p50_ms"],
            "ms",
            "dispatcher poll interval",
            100.0,
        )
        section.add(
            "4",
            f"due → reflection start p99, {threads} threads {label}",
            r["start_lag_p99_ms"],
            "ms",
            "goal 1 s",
            1000.0,
            "p99 ≤ 1 s, none starved",
            r["start_lag_p99_ms"] <= 1000 and r["starved"] == 0,
            note=f"claim lag p99 {r['claim_lag_p99_ms']:.0f} ms, starved {r['starved']}",
        )
        section.add(
            "4", f"due → claimed (CLAIM script lag) p99, {label}", r["claim_lag_p99_ms"], "ms", "goal 1 s", 1000.0
        )
    section.counters = counters
    section.notes.append(
        "Lag = reflection start (wall clock, in the worker) − the due moment the submit asked for; the CLAIM "
        "script's own lag (Redis TIME − due score) is shown too. One worker, threads pool of 32, the "
        "README's dispatcher defaults (poll 0.1 s, batch 256). Reflections here are Redis-only (assistant "
        "turns, existing_limit=0) so that the figure is the dispatch path, not LLM capacity: with real "
        "extraction, 1,000 threads due at once wait for free worker threads (figure 5 gives the rate)."
    )
    return section
