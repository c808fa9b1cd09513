"""``reverie demo``: the whole pipeline on embedded defaults, in one process.

Starts an embedded Valkey (unless a Redis URL is configured), local-mode Qdrant under
``.reverie/``, a Celery worker and a dispatcher in threads, then plays bursts of chat turns
for several users and threads, including the seed article's ramen/pasta conversation. Alice's
thread runs under the article's profile (deletes on, "delete the memory when the preference
drops to 0"): with a model, its ``UserFoodPreference`` schema; offline, the free-text schema,
since the offline manager (not an LLM) cannot fill structured fields. Each memory is shown
with what happened to it: inserted, updated (and from what), or deleted.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass

from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from producer import Producer, ProducerConfig
from schemas.memory import HistoryEntry, Memory
from schemas.profiles import Profile, get_profile, register
from schemas.reflection import ReflectionResult
from schemas.settings import Settings
from worker.ops.eval.profiles import UserFoodPreference
from worker.ops.where import redis_where
from worker.runtime import Runtime

DEMO_AFTER_S = 1.0
DEMO_GAP_S = 0.25

SEED_INSTRUCTIONS = (
    "Extract the user's food preferences. When a preference changes, update the existing memory. "
    "A preference of 0 means the user no longer likes the food at all: delete that memory."
)
QUERY = "What food does she like?"
SCRIPT: list[tuple[str, str, list[str]]] = [
    ("alice", "ramen", ["ラーメンが大好きです!!", "パスタも好きです"]),
    ("bob", "work", ["I'm a backend engineer in Osaka.", "I mostly write Python and some Go."]),
    ("bob", "trip", ["Planning a trip to Hokkaido in February.", "I'd like to see the snow festival."]),
    ("alice", "ramen", ["ラーメンは味噌ラーメンが好き", "パスタは嫌いになりました"]),
]


@dataclass
class DemoReport:
    submitted: Counter[tuple[str, str]]
    bursts: Counter[tuple[str, str]]
    reflections: Counter[tuple[str, str]]
    outcomes: Counter[str]
    extractor: str


def run_demo(settings: Settings, console: Console, *, timeout_s: float = 60.0, keep: bool = False) -> DemoReport:
    from worker.app import create_app, make_dispatcher
    from worker.ops.embedded import start_embedded_redis, worker_thread
    from worker.pipeline.dispatcher import DispatcherThread
    from worker.runtime import build_runtime, install

    with ExitStack() as stack:
        source = "REVERIE_REDIS_URL/REDIS_URL"
        if settings.resolved_redis_url() is None:
            server = start_embedded_redis()
            stack.callback(server.stop)
            source = "embedded Valkey, stopped at exit"
            settings = settings.model_copy(update={"redis_url": SecretStr(server.connection_url)})
        fate = "kept (--keep)" if keep else "removed at exit (--keep keeps them)"
        console.print(
            f"Redis: {redis_where(settings.resolved_redis_url())} ({source}); key prefix "
            f"[bold]{settings.key_prefix}:[/], its keys {fate}; Qdrant: {settings.qdrant_url or settings.qdrant_path}",
            highlight=False,
        )
        settings = settings.model_copy(update={"dispatcher_in_worker": False, "worker_concurrency": 8})
        seed = seed_profile(settings)
        runtime = build_runtime(settings)
        stack.callback(runtime.close)
        if not keep:  # runs after the worker and dispatcher stopped (ExitStack unwinds in reverse)
            stack.callback(clean_up, runtime, {u for u, _, _ in SCRIPT})
        results: list[ReflectionResult] = []
        lock = threading.Lock()
        runtime.reflector.on_result = _collector(results, lock)
        install(runtime)
        stack.callback(install, None)
        _reset(runtime, {u for u, _, _ in SCRIPT})
        app = create_app(settings)
        stack.enter_context(worker_thread(app, concurrency=8))
        stack.enter_context(DispatcherThread(make_dispatcher(app)))
        extractor = runtime.reflector.extractor_for(_default_profile()).name
        console.print(
            f"extractor: [bold]{extractor}[/]   embedder: {runtime.embedder.name}   "
            f"debounce: {DEMO_AFTER_S}s after the last turn"
        )
        console.print(f"alice/ramen uses the article's profile: {seed.schemas[0].__name__}, deletes on")
        report = _play(settings, console, results, lock, timeout_s)
        report.extractor = extractor
        _show(runtime, console, report)
        return report


def _default_profile() -> Profile:
    return get_profile("default")


def seed_profile(settings: Settings) -> Profile:
    """The article's memory manager: its schema with a model, free text offline; deletes on."""
    schema = UserFoodPreference if settings.model else Memory
    return register(Profile(name="seed", schemas=(schema,), instructions=SEED_INSTRUCTIONS, enable_deletes=True))


def _collector(results: list[ReflectionResult], lock: threading.Lock) -> Callable[[ReflectionResult], None]:
    def collect(result: ReflectionResult) -> None:
        with lock:
            results.append(result)

    return collect


def clean_up(runtime: Runtime, users: set[str]) -> None:
    """Remove everything the demo wrote: every key under its prefix (Celery's included, which
    share it) and its users' memories in the demo namespace."""
    for user in users:
        runtime.store.delete_user(user)
    prefix = runtime.coordinator.keys.prefix
    batch: list[bytes] = []
    for key in runtime.redis.scan_iter(match=f"{prefix}:*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            runtime.redis.delete(*batch)
            batch.clear()
    if batch:
        runtime.redis.delete(*batch)


NEXT_STEPS = """[bold]Next steps[/]
  Services against one Redis, each in its own terminal:
    export REVERIE_REDIS_URL=redis://127.0.0.1:6379/0
    uv run reverie worker        # a Celery worker with its dispatcher
    FLOWER_BASIC_AUTH=ops:change-me uv run reverie flower
    uv run reverie submit alice t1 "I moved to Lisbon"
    uv run reverie memories alice
  Score a real model (its key in the provider's usual variable):
    uv run reverie eval --model openai/gpt-4o-mini"""


def _reset(runtime: Runtime, users: set[str]) -> None:
    keys = runtime.coordinator.keys
    for user in users:
        runtime.store.delete_user(user)
        runtime.redis.delete(keys.history(user))
    for shard in keys.all_shards():
        runtime.redis.delete(shard.due_ss, shard.inflight_ss, shard.stats, shard.dlq)
    for user, thread, _ in SCRIPT:
        runtime.redis.delete(*keys.thread_keys(user, thread))


def _play(
    settings: Settings,
    console: Console,
    results: list[ReflectionResult],
    lock: threading.Lock,
    timeout_s: float,
) -> DemoReport:
    url = settings.resolved_redis_url() or ""
    producer = Producer(ProducerConfig(redis_url=url, key_prefix=settings.key_prefix, after_seconds=DEMO_AFTER_S))
    submitted: Counter[tuple[str, str]] = Counter()
    bursts: Counter[tuple[str, str]] = Counter()
    started = time.monotonic()
    for n, (user, thread, lines) in enumerate(SCRIPT):
        if (user, thread) in bursts:
            _wait_quiet(results, lock, (user, thread), bursts[(user, thread)], timeout_s)
        bursts[(user, thread)] += 1
        for i, line in enumerate(lines):
            profile = "seed" if user == "alice" else "default"
            message = {"role": "user", "content": line, "id": f"{thread}-{n}-{i}"}
            receipt = producer.submit(user, thread, [message], profile=profile)
            submitted[(user, thread)] += receipt.accepted
            console.print(f"  submit {user}/{thread} turn {i + 1}: generation {receipt.generation}")
            time.sleep(DEMO_GAP_S)
    for key, count in bursts.items():
        _wait_quiet(results, lock, key, count, timeout_s - (time.monotonic() - started))
    producer.close()
    with lock:
        done = [r for r in results if r.outcome in ("committed", "replayed")]
        outcomes = Counter(r.outcome for r in results)
    reflected = Counter((r.user_id, t) for r in done for t in (r.thread_id, *r.siblings))
    return DemoReport(submitted, bursts, reflected, outcomes, "")


def _wait_quiet(
    results: list[ReflectionResult],
    lock: threading.Lock,
    key: tuple[str, str],
    commits: int,
    timeout_s: float,
) -> None:
    deadline = time.monotonic() + max(timeout_s, 1.0)
    while time.monotonic() < deadline:
        with lock:
            n = sum(
                1
                for r in results
                if r.user_id == key[0] and key[1] in (r.thread_id, *r.siblings) and r.outcome == "committed"
            )
        if n >= commits:
            return
        time.sleep(0.05)
    raise TimeoutError(f"reflection of {key[0]}/{key[1]} did not finish within {timeout_s:.0f}s")


def change_of(memory_id: str, history: list[HistoryEntry]) -> str:
    """What happened to a memory, from its history: inserted, or updated (from what)."""
    mine = [e for e in history if e.memory_id == memory_id]
    updates = [e for e in mine if e.op == "update"]
    if not updates:
        return "inserted"
    return f"updated ×{len(updates)} (was: {updates[0].old_content})"


def _show(runtime: Runtime, console: Console, report: DemoReport) -> None:
    table = Table(title="Bursts and reflections")
    for col in ("user", "thread", "turns", "bursts", "reflections"):
        table.add_column(col)
    for key in report.bursts:
        table.add_row(key[0], key[1], str(report.submitted[key]), str(report.bursts[key]), str(report.reflections[key]))
    console.print(table)
    for user in sorted({k[0] for k in report.bursts}):
        history = runtime.history.history(user)
        mt = Table(title=f"Memories of {user}")
        mt.add_column("content")
        mt.add_column("thread")
        mt.add_column("what happened")
        for m in runtime.store.list(user):
            mt.add_row(m.content, m.source.thread_id or "", change_of(m.id, history))
        for e in history:
            if e.op in ("delete", "tombstone"):
                mt.add_row(f"[strike]{e.old_content}[/]", e.thread_id or "", "deleted")
        console.print(mt)
    hits = runtime.store.search("alice", QUERY, limit=3)
    console.print(f"search(alice, {QUERY!r}):")
    for h in hits:
        console.print(f"  {h.score:.3f}  {h.content}")
