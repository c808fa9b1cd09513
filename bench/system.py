"""A whole Reverie in this process for the pipeline figures: runtime (local-mode Qdrant in a
scratch folder), N Celery workers on threads pools sharing that runtime, one dispatcher per
worker (as ``reverie worker`` runs them), and a record of every reflection's start and result.

Local-mode Qdrant admits one process, so "4 workers" means 4 Celery worker controllers with
their own pools, consumers and dispatchers in one process, sharing one runtime. With a Qdrant
server they would be processes; the claim/lease protocol is the same either way."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from bench.env import BenchEnv
from producer import Producer, ProducerConfig
from schemas.reflection import ReflectArgs, ReflectionResult
from schemas.settings import Settings


@dataclass
class System:
    settings: Settings
    runtime: Any
    producer: Producer
    results: list[ReflectionResult] = field(default_factory=list)
    starts: list[tuple[str, str, float]] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    claims: list[Any] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    commits: list[tuple[str, str, float]] = field(default_factory=list)
    """(user, thread, wall-clock ms) of every committed or replayed reflection, when it ended."""
    committed: int = 0
    """Turns of committed (or replayed) reflections so far: kept as results arrive, so that the
    bench's wait loop does not rescan every result 50 times a second on the CPU it measures."""

    def committed_turns(self) -> int:
        with self.lock:
            return self.committed

    def outcomes(self) -> dict[str, int]:
        with self.lock:
            out: dict[str, int] = {}
            for r in self.results:
                out[r.outcome] = out.get(r.outcome, 0) + 1
            return out

    def idle(self) -> bool:
        keys = self.runtime.coordinator.keys
        # One MULTI, so a thread moving between the two sets is never missed.
        due, inflight = (
            self.runtime.redis.pipeline(transaction=True).zcard(keys.due_ss).zcard(keys.inflight_ss).execute()
        )
        return due == 0 and inflight == 0

    def wait(self, predicate: Any, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.02)
        return False


def _start_workers(apps: list[Any], concurrency: int) -> list[tuple[Any, threading.Thread]]:
    from celery.contrib.testing.worker import TestWorkController, setup_app_for_worker
    from kombu.asynchronous import set_event_loop

    started = []
    for i, app in enumerate(apps):
        setup_app_for_worker(app, "WARNING", None)
        # Celery's Hub step reuses kombu's process-global event loop when one is set: four
        # workers would then drive one hub from four threads. Give each its own.
        set_event_loop(None)
        controller = TestWorkController(
            app=app,
            concurrency=concurrency,
            hostname=f"bench{i}@localhost",
            pool="threads",
            loglevel="WARNING",
            logfile=None,
            ready_callback=None,
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
        )
        thread = threading.Thread(target=controller.start, daemon=True, name=f"bench-worker-{i}")
        thread.start()
        controller.ensure_started()
        started.append((controller, thread))
    return started


def _stop_workers(started: list[tuple[Any, threading.Thread]], timeout_s: float = 30.0) -> None:
    from celery.worker import state

    state.should_terminate = 0  # what celery.contrib.testing does; stops every worker of the process
    for _, thread in started:
        thread.join(timeout_s)
    state.should_terminate = None


@contextlib.contextmanager
def running_system(
    env: BenchEnv,
    name: str,
    *,
    workers: int = 1,
    concurrency: int = 32,
    celery_conf: dict[str, Any] | None = None,
    qdrant_in_memory: bool = False,
    **overrides: Any,
) -> Iterator[System]:
    """``qdrant_in_memory``: local mode without its folder (``:memory:``), so no point is written
    to disk; everything else as in local mode (the Python filter passes, one lock)."""
    from worker.app import create_app, make_dispatcher
    from worker.pipeline.dispatcher import DispatcherThread
    from worker.runtime import build_runtime, install

    prefix = env.sub_prefix(name)
    base: dict[str, Any] = {
        "redis_url": SecretStr(env.redis_url),
        "key_prefix": prefix,
        "qdrant_path": env.tmp / name / "qdrant",
        "dispatcher_in_worker": False,
        "worker_concurrency": concurrency,
        "log_level": "WARNING",
    }
    if qdrant_in_memory:  # no folder: nothing for the local read socket to sit beside
        overrides = {"local_reads": False} | overrides
    settings = Settings(**(base | overrides))
    store = None
    if qdrant_in_memory:
        from qdrant_client import QdrantClient

        from producer.memories.embeddings import make_embedder
        from worker.memory.store import MemoryStore

        store = MemoryStore(QdrantClient(location=":memory:"), make_embedder(settings), namespace=settings.namespace)
    runtime = build_runtime(settings, store=store)
    producer = Producer(ProducerConfig.from_settings(settings, timeout_s=5.0))
    system = System(settings, runtime, producer)
    reflector = runtime.reflector
    run = reflector.run

    def timed_run(args: ReflectArgs) -> ReflectionResult:
        with system.lock:
            system.starts.append((args.user_id, args.thread_id, time.time() * 1000))
        try:
            return run(args)
        finally:
            with system.lock:
                system.ends.append(time.time() * 1000)

    def collect(result: ReflectionResult) -> None:
        with system.lock:
            system.results.append(result)
            if result.outcome in ("committed", "replayed"):
                system.committed += result.turns
                now_ms = time.time() * 1000
                for thread_id in (result.thread_id, *result.siblings):  # a joint reflection commits them all
                    system.commits.append((result.user_id, thread_id, now_ms))

    def on_claim(claim: Any) -> None:
        with system.lock:
            system.claims.append(claim)

    reflector.run = timed_run  # type: ignore[method-assign]
    reflector.on_result = collect
    install(runtime)
    apps = [create_app(settings) for _ in range(workers)]
    for app in apps:
        app.conf.update(celery_conf or {})
    started = _start_workers(apps, concurrency)
    dispatchers = [DispatcherThread(make_dispatcher(app, on_claim=on_claim)).start() for app in apps]
    try:
        yield system
    finally:
        for d in dispatchers:
            d.stop()
        _stop_workers(started)
        install(None)
        producer.close()
        runtime.close()
        for app in apps:
            app.close()


@contextlib.contextmanager
def llm_subprocess(latency_s: float) -> Iterator[str]:
    """The scripted LLM in a child process; yields its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.llm_server", str(latency_s)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http://127.0.0.1:"):
            raise RuntimeError("scripted LLM subprocess did not start")
        yield url
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
