"""Figure 5: reflection throughput and CPU per reflection with a 500 ms scripted model, through
the whole pipeline (producer → Redis → dispatcher → Celery worker → scripted LLM → Qdrant), the
CPU split by where it goes (litellm call, local Qdrant, embeddings, rest of the reflection,
Celery + dispatcher + producer)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from bench.env import BenchEnv
from bench.pipeline import _llm
from bench.report import Section
from bench.system import System, llm_subprocess, running_system

CPU_GOAL_MS = 10.0


class _CpuMeter:
    """Per-thread CPU (``time.thread_time``) spent inside wrapped calls, summed by label. A call
    nested in another of the same label (``embed_query`` calling ``embed``) counts once."""

    def __init__(self) -> None:
        self.ms: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.active = threading.local()

    def wrap(self, label: str, fn: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            inside: set[str] = self.active.__dict__.setdefault("labels", set())
            if label in inside:
                return fn(*args, **kwargs)
            inside.add(label)
            t0 = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                inside.discard(label)
                with self.lock:
                    self.ms[label] += (time.thread_time() - t0) * 1000

        return timed


def _meter(system: System) -> _CpuMeter:
    """Every Qdrant client call goes through ``store._call``; every embedding through the
    runtime's embedder (the store's live embedder delegates to it)."""
    meter = _CpuMeter()
    store, reflector, embedder = system.runtime.store, system.runtime.reflector, system.runtime.embedder
    store._call = meter.wrap("qdrant_local", store._call)
    embedder.embed = meter.wrap("embedding", embedder.embed)
    embedder.embed_query = meter.wrap("embedding", embedder.embed_query)
    factory = reflector.extractor_for

    def extractor_for(profile: Any) -> Any:
        extractor = factory(profile)
        if not getattr(extractor, "_bench_metered", False):
            extractor.extract = meter.wrap("llm_client", extractor.extract)
            extractor._bench_metered = True
        return extractor

    reflector.extractor_for = extractor_for
    reflector.run = meter.wrap("reflection", reflector.run)
    return meter


def throughput_run(
    env: BenchEnv, base_url: str, name: str, *, reflections: int, concurrency: int, **overrides: Any
) -> dict[str, Any]:
    settings = {"after_seconds": 0.0, "max_wait_s": 600.0} | _llm(base_url) | overrides
    with running_system(env, name, concurrency=concurrency, **settings) as system:
        meter = _meter(system)
        users = [f"{name}u{i}" for i in range(reflections)]
        cpu0 = time.process_time()
        t0 = time.time() * 1000
        for u in users:
            turns = [{"role": "user", "content": f"{u} likes ramen", "id": "1"}, {"role": "assistant", "content": "ok"}]
            system.producer.submit(u, "t", turns, after_seconds=0)
        system.wait(lambda: system.committed_turns() >= 2 * reflections and system.idle(), timeout_s=30 + reflections)
        cpu = time.process_time() - cpu0
        with system.lock:
            first = min((ms for _, _, ms in system.starts), default=t0)
            last = max(system.ends, default=t0)
        committed = sum(1 for r in system.results if r.outcome == "committed")
        wall_s = (last - first) / 1000
        per = max(committed, 1)
        parts = ("llm_client", "qdrant_local", "embedding")
        in_reflection = meter.ms["reflection"] - sum(meter.ms[p] for p in parts)
        return {
            "reflections": reflections,
            "committed": committed,
            "concurrency": concurrency,
            "wall_s": round(wall_s, 3),
            "rate_per_s": committed / wall_s if wall_s > 0 else float("nan"),
            "cpu_s": round(cpu, 3),
            "cpu_ms_per_reflection": 1000 * cpu / per,
            "cpu_ms_llm_client": meter.ms["llm_client"] / per,
            "cpu_ms_qdrant_local": meter.ms["qdrant_local"] / per,
            "cpu_ms_embedding": meter.ms["embedding"] / per,
            "cpu_ms_rest_of_reflection": in_reflection / per,
            "cpu_ms_outside_reflection": (1000 * cpu - meter.ms["reflection"]) / per,
            "llm_calls": system.runtime.coordinator.stats().get("llm_calls", 0),
            "outcomes": system.outcomes(),
        }


def throughput(
    env: BenchEnv, *, reflections: int, serial: int, latency_s: float = 0.5, warm_up: bool = True
) -> Section:
    """Figure 5."""
    section = Section("5. reflection throughput")
    with llm_subprocess(latency_s) as base_url:
        if warm_up:  # lazy imports (openai types on the first call), connection pools
            throughput_run(env, base_url, "thrw", reflections=4, concurrency=4)
        runs = {
            "serial": throughput_run(env, base_url, "thr1", reflections=serial, concurrency=1),
            "c64": throughput_run(env, base_url, "thr64", reflections=reflections, concurrency=64),
        }
        # Events on and off in alternating halves: a run right after another in this process is
        # not measured like the first one, so neither variant always goes first.
        halves: dict[str, list[dict[str, Any]]] = {"c32": [], "c32 events off": []}
        for i in range(2):
            for key, extra in (("c32", {}), ("c32 events off", {"task_events": False}))[:: 1 if i == 0 else -1]:
                name = f"thr32{'q' if extra else ''}{i}"
                halves[key].append(
                    throughput_run(env, base_url, name, reflections=max(reflections // 2, 1), concurrency=32, **extra)
                )
        runs |= {key: _merged(parts) for key, parts in halves.items()}
    serial_rate = runs["serial"]["rate_per_s"]
    for key, label in (("c32", "threads pool, concurrency 32 (default)"), ("c64", "threads pool, concurrency 64")):
        r = runs[key]
        section.add(
            "5",
            f"reflections/s, {label}",
            r["rate_per_s"],
            "/s",
            "serial, one at a time",
            serial_rate,
            "≥ 50/s (≥ 25× serial)",
            r["rate_per_s"] >= 50,
            note=f"CPU {r['cpu_ms_per_reflection']:.1f} ms per reflection",
        )
    for key, label in (("c32", "concurrency 32 (default)"), ("c64", "concurrency 64")):
        r = runs[key]
        section.add(
            "5",
            f"CPU per reflection, {label}",
            r["cpu_ms_per_reflection"],
            "ms",
            "goal",
            CPU_GOAL_MS,
            "≤ 10 ms with a 500 ms model",
            r["cpu_ms_per_reflection"] <= CPU_GOAL_MS,
            note=_breakdown(r),
        )
        section.add(
            "5",
            f"CPU per reflection, {label}",
            r["cpu_ms_per_reflection"],
            "ms",
            "serial",
            runs["serial"]["cpu_ms_per_reflection"],
        )
    quiet = runs["c32 events off"]
    section.add(
        "5",
        "CPU per reflection, concurrency 32, REVERIE_TASK_EVENTS=false",
        quiet["cpu_ms_per_reflection"],
        "ms",
        "same, task events on (default: Flower)",
        runs["c32"]["cpu_ms_per_reflection"],
        note=_breakdown(quiet),
    )
    section.counters = runs
    section.notes.append(
        f"{latency_s * 1000:.0f} ms scripted LLM latency per call (scripted server in its own process); one user "
        "per reflection, two turns each, local-mode Qdrant. Rate = committed reflections / (last end − first "
        "start); CPU = this process's CPU time (producer, dispatcher, Celery worker, litellm, Qdrant) / committed."
    )
    return section


def _breakdown(r: dict[str, Any]) -> str:
    return (
        f"litellm call {r['cpu_ms_llm_client']:.1f} ms, local Qdrant {r['cpu_ms_qdrant_local']:.1f} ms, "
        f"embeddings {r['cpu_ms_embedding']:.1f} ms, rest of reflection {r['cpu_ms_rest_of_reflection']:.1f} ms, "
        f"Celery+dispatcher+producer {r['cpu_ms_outside_reflection']:.1f} ms"
    )


def _merged(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Runs of one variant as one: counts summed, per-reflection CPU weighted by commits."""
    committed = sum(p["committed"] for p in parts)
    out = dict(parts[0])
    for key in ("reflections", "committed", "llm_calls", "cpu_s", "wall_s"):
        out[key] = sum(p[key] for p in parts)
    for key in (k for k in parts[0] if k.startswith("cpu_ms_")):
        out[key] = sum(p[key] * p["committed"] for p in parts) / max(committed, 1)
    out["rate_per_s"] = committed / out["wall_s"] if out["wall_s"] > 0 else float("nan")
    outcomes: Counter[str] = Counter()
    for p in parts:
        outcomes.update(p["outcomes"])
    out["outcomes"] = dict(outcomes)
    return out
