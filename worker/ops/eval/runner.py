"""Running the scenarios through the whole reflection path: the real producer, a Celery worker and
a dispatcher in threads, Qdrant in local mode in a temporary folder, and Redis (``REDIS_URL``
under a key prefix of its own, deleted afterwards, or an embedded Valkey). Session k of every
scenario is submitted at once, then the run waits for each thread's commit and reads the users'
memories back through the read client.

``run_extraction`` scores the extractor alone, through the public memory manager: no Redis, no
Qdrant, the whole state shown to the model, no retrieval.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from schemas.memory import MemoryRecord
from schemas.profiles import register
from schemas.reflection import ReflectionResult
from schemas.settings import Settings
from worker.memory.manager import Delete, Insert, MemoryManager, Update
from worker.ops.eval.judge import Judge
from worker.ops.eval.profiles import profile_for
from worker.ops.eval.scenario import Scenario
from worker.ops.eval.scoring import ScenarioScore, SessionState, score_scenario

Progress = Callable[[int, int], None]
TERMINAL = ("committed", "dead_lettered")
DEBOUNCE_S = 0.2


@dataclass
class RunResult:
    scores: list[ScenarioScore]
    extractor: str
    embedder: str
    mode: str
    seconds: float
    errors: list[str] = field(default_factory=list)


def _user_ids(run: str, n: int, scenario: Scenario) -> dict[str, str]:
    return {name: f"{run}-{n}-{name}" for name in scenario.users}


class _Results:
    """Finished reflections by (user, thread), with when they finished."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_thread: dict[tuple[str, str], list[tuple[ReflectionResult, float]]] = {}

    def __call__(self, result: ReflectionResult) -> None:
        with self.lock:
            self.by_thread.setdefault((result.user_id, result.thread_id), []).append((result, time.monotonic()))

    def terminal(self, key: tuple[str, str]) -> tuple[ReflectionResult, float] | None:
        with self.lock:
            return next(((r, t) for r, t in self.by_thread.get(key, []) if r.outcome in TERMINAL), None)

    def cost(self, key: tuple[str, str]) -> tuple[int, int]:
        with self.lock:
            done = [r for r, _ in self.by_thread.get(key, [])]
        return sum(r.llm_calls for r in done), sum(r.prompt_tokens + r.completion_tokens for r in done)


def run_pipeline(
    base: Settings,
    scenarios: Sequence[Scenario],
    judge: Judge,
    *,
    progress: Progress | None = None,
    session_timeout_s: float = 180.0,
) -> RunResult:
    """Every scenario through the pipeline; scores computed before the store is closed."""
    from celery.contrib.testing.worker import start_worker

    from producer import Producer, ProducerConfig
    from worker.app import create_app, make_dispatcher
    from worker.ops.embedded import start_embedded_redis
    from worker.pipeline.dispatcher import DispatcherThread
    from worker.runtime import build_runtime, install

    started = time.monotonic()
    run = f"ev{uuid.uuid4().hex[:6]}"
    with ExitStack() as stack:
        folder = Path(tempfile.mkdtemp(prefix="reverie-eval-"))
        stack.callback(shutil.rmtree, folder, True)
        url = base.resolved_redis_url()
        if url is None:
            server = start_embedded_redis()
            stack.callback(server.stop)
            url = server.connection_url
        settings = base.model_copy(
            update={
                "redis_url": SecretStr(url),
                "key_prefix": f"reverie-{run}",
                "qdrant_url": None,
                "qdrant_path": folder / "qdrant",
                "namespace": "eval",
                "after_seconds": DEBOUNCE_S,
                "max_wait_s": 30.0,
                "max_attempts": 2,
                "dispatcher_in_worker": False,
                "dispatch_interval_s": 0.05,
                "worker_concurrency": 8,
                "consolidate_interval_s": 0.0,
                "profiles": None,
            }
        )
        for scenario in scenarios:
            register(profile_for(scenario))
        runtime = build_runtime(settings)
        stack.callback(runtime.close)
        stack.callback(_delete_prefix, runtime.redis, settings.key_prefix)
        results = _Results()
        runtime.reflector.on_result = results
        install(runtime)
        stack.callback(install, None)
        app = create_app(settings)
        stack.enter_context(
            start_worker(app, pool="threads", concurrency=8, perform_ping_check=False, loglevel="WARNING")
        )
        stack.enter_context(DispatcherThread(make_dispatcher(app)))
        producer = Producer(ProducerConfig(redis_url=url, key_prefix=settings.key_prefix, after_seconds=DEBOUNCE_S))
        stack.callback(producer.close)

        ids = [_user_ids(run, n, s) for n, s in enumerate(scenarios)]
        states: list[list[SessionState]] = [[] for _ in scenarios]
        errors: list[str] = []
        total = sum(len(s.sessions) for s in scenarios)
        done = 0
        for k in range(max(len(s.sessions) for s in scenarios)):
            pending: dict[tuple[str, str], tuple[int, float]] = {}
            for n, scenario in enumerate(scenarios):
                if k >= len(scenario.sessions):
                    continue
                session = scenario.sessions[k]
                key = (ids[n][session.user], f"s{k + 1}")
                messages = [
                    {"role": t.role, "content": t.content, "id": f"{scenario.id}-{k}-{i}"}
                    for i, t in enumerate(session.turns)
                ]
                producer.submit(*key, messages, profile=f"eval-{scenario.id}")
                pending[key] = (n, time.monotonic())
            deadline = time.monotonic() + session_timeout_s
            finished: dict[tuple[str, str], float] = {}
            while len(finished) < len(pending) and time.monotonic() < deadline:
                for key in pending:
                    hit = None if key in finished else results.terminal(key)
                    if hit is not None:
                        finished[key] = hit[1]
                        if hit[0].outcome != "committed":
                            errors.append(f"{scenarios[pending[key][0]].id} session {k + 1}: {hit[0].outcome}")
                        done += 1
                        if progress is not None:
                            progress(done, total)
                time.sleep(0.05)
            for key, (n, submitted) in pending.items():
                if key not in finished:
                    errors.append(f"{scenarios[n].id} session {k + 1}: no commit within {session_timeout_s:.0f} s")
                calls, tokens = results.cost(key)
                seconds = finished.get(key, time.monotonic()) - submitted
                memories = {name: runtime.store.list(uid, limit=1000) for name, uid in ids[n].items()}
                states[n].append(SessionState(memories, llm_calls=calls, tokens=tokens, seconds=seconds))

        def search(user_id: str, question: str, limit: int) -> list[MemoryRecord]:
            return runtime.store.search(user_id, question, limit=limit)

        scores = [score_scenario(s, states[n], judge, search, ids[n]) for n, s in enumerate(scenarios)]
        extractor = runtime.reflector.extractor_for(profile_for(scenarios[0])).name
        return RunResult(scores, extractor, runtime.embedder.name, "pipeline", time.monotonic() - started, errors)


def _delete_prefix(client: Any, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    for i in range(0, len(keys), 500):
        client.delete(*keys[i : i + 500])


def apply_ops(state: list[MemoryRecord], ops: Sequence[Insert | Update | Delete], now: datetime) -> list[MemoryRecord]:
    """The manager's operations on an in-memory state (extraction-only scoring)."""
    out = list(state)
    for op in ops:
        if isinstance(op, Insert):
            out.append(
                MemoryRecord(
                    id=str(uuid.uuid4()),
                    user_id="-",
                    namespace="eval",
                    schema_name=op.schema_name,
                    content=op.content,
                    data=op.data,
                    created_at=now,
                    updated_at=now,
                )
            )
        elif isinstance(op, Update):
            out = [
                m.model_copy(update={"content": op.content, "data": op.data, "schema_name": op.schema_name})
                if m.id == op.id
                else m
                for m in out
            ]
        else:
            out = [m for m in out if m.id != op.id]
    return out


def run_extraction(
    scenarios: Sequence[Scenario],
    judge: Judge,
    manager_for: Callable[[Scenario], MemoryManager],
    *,
    embedder: str,
    progress: Progress | None = None,
) -> RunResult:
    """Each scenario through the memory manager alone; the whole state is shown to it."""
    started = time.monotonic()
    scores: list[ScenarioScore] = []
    total, done, extractor = sum(len(s.sessions) for s in scenarios), 0, ""
    for scenario in scenarios:
        manager = manager_for(scenario)
        extractor = manager.extractor.name
        state: dict[str, list[MemoryRecord]] = {name: [] for name in scenario.users}
        states = []
        for session in scenario.sessions:
            t0 = time.monotonic()
            messages = [{"role": t.role, "content": t.content} for t in session.turns]
            result = manager.invoke(messages=messages, existing=state[session.user])
            state[session.user] = apply_ops(state[session.user], result.ops, datetime.now(UTC))
            tokens = result.prompt_tokens + result.completion_tokens
            states.append(SessionState(dict(state), result.llm_calls, tokens, time.monotonic() - t0))
            done += 1
            if progress is not None:
                progress(done, total)
        scores.append(score_scenario(scenario, states, judge, None, {n: n for n in scenario.users}))
    return RunResult(scores, extractor, embedder, "extraction", time.monotonic() - started)
