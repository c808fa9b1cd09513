"""Running the scenarios through the whole reflection path (``harness``: the real producer, a
Celery worker and a dispatcher, local-mode Qdrant, Redis). Session k of every scenario is
submitted at once (its parallel threads right after its own turns), then the run waits for each
thread's commit and reads the users' memories back through the read client.

``run_extraction`` scores the extractor alone, through the public memory manager: no Redis, no
Qdrant, the whole state shown to the model, no retrieval.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from schemas.memory import MemoryRecord
from schemas.settings import Settings
from worker.memory.manager import Delete, Insert, MemoryManager, Update
from worker.ops.eval.harness import harness
from worker.ops.eval.judge import Judge
from worker.ops.eval.profiles import profile_for
from worker.ops.eval.scenario import Scenario
from worker.ops.eval.scoring import ScenarioScore, SessionState, score_scenario

Progress = Callable[[int, int], None]


@dataclass
class RunResult:
    scores: list[ScenarioScore]
    extractor: str
    embedder: str
    mode: str
    seconds: float
    errors: list[str] = field(default_factory=list)


def run_pipeline(
    base: Settings,
    scenarios: Sequence[Scenario],
    judge: Judge,
    *,
    progress: Progress | None = None,
    session_timeout_s: float = 180.0,
) -> RunResult:
    """Every scenario through the pipeline; scores computed before the store is closed."""
    started = time.monotonic()
    with harness(base, [profile_for(s) for s in scenarios]) as h:
        ids = [{name: f"{h.run_id}-{n}-{name}" for name in s.users} for n, s in enumerate(scenarios)]
        states: list[list[SessionState]] = [[] for _ in scenarios]
        errors: list[str] = []
        total, done = sum(len(s.sessions) for s in scenarios), 0
        for k in range(max(len(s.sessions) for s in scenarios)):
            pending: dict[int, tuple[list[tuple[str, str]], float]] = {}  # scenario → its threads, submit time
            for n, scenario in enumerate(scenarios):
                if k < len(scenario.sessions):
                    session = scenario.sessions[k]
                    submitted, threads = time.monotonic(), []
                    for j, turns in enumerate(session.threads):
                        if j:  # a person's messages in two tabs are ms apart: the merged order is theirs
                            time.sleep(0.005)
                        key = (ids[n][session.user], f"s{k + 1}" if j == 0 else f"s{k + 1}p{j}")
                        messages = [
                            {"role": t.role, "content": t.content, "id": f"{scenario.id}-{k}-{j}-{i}"}
                            for i, t in enumerate(turns)
                        ]
                        h.producer.submit(*key, messages, profile=f"eval-{scenario.id}")
                        threads.append(key)
                    pending[n] = (threads, submitted)
            finished = h.wait([key for threads, _ in pending.values() for key in threads], session_timeout_s)
            for n, (threads, submitted) in pending.items():
                ends, calls, tokens = [], 0, 0
                for key in threads:
                    result = finished.get(key)
                    if result is None:
                        errors.append(f"{scenarios[n].id} session {k + 1}: no commit within {session_timeout_s:.0f} s")
                    elif result.outcome != "committed":
                        errors.append(f"{scenarios[n].id} session {k + 1}: {result.outcome}")
                    hit = h.results.terminal(key)
                    ends.append(hit[1] if hit else time.monotonic())
                    c, t = h.results.cost(key)
                    calls, tokens = calls + c, tokens + t
                memories = {name: h.runtime.store.list(uid, limit=1000) for name, uid in ids[n].items()}
                states[n].append(SessionState(memories, llm_calls=calls, tokens=tokens, seconds=max(ends) - submitted))
                done += 1
                if progress is not None:
                    progress(done, total)

        def search(user_id: str, question: str, limit: int) -> list[MemoryRecord]:
            return h.runtime.store.search(user_id, question, limit=limit)

        scores = [score_scenario(s, states[n], judge, search, ids[n]) for n, s in enumerate(scenarios)]
        extractor = h.runtime.reflector.extractor_for(profile_for(scenarios[0])).name
        return RunResult(scores, extractor, h.runtime.embedder.name, "pipeline", time.monotonic() - started, errors)


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
            # parallel threads reach the manager as one conversation, in submit order (a joint reflection)
            messages = [{"role": t.role, "content": t.content} for turns in session.threads for t in turns]
            result = manager.invoke(messages=messages, existing=state[session.user])
            state[session.user] = apply_ops(state[session.user], result.ops, datetime.now(UTC))
            tokens = result.prompt_tokens + result.completion_tokens
            states.append(SessionState(dict(state), result.llm_calls, tokens, time.monotonic() - t0))
            done += 1
            if progress is not None:
                progress(done, total)
        scores.append(score_scenario(scenario, states, judge, None, {n: n for n in scenario.users}))
    return RunResult(scores, extractor, embedder, "extraction", time.monotonic() - started)
