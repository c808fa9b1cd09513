"""A private, throw-away Reverie for the eval (and LoCoMo): Redis (``REDIS_URL`` under a key
prefix of its own, deleted afterwards, else an embedded Valkey), Qdrant in local mode in a
temporary folder, a Celery worker and a dispatcher in threads, and a producer. Nothing of a
deployment's data is read or written."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from schemas.profiles import Profile, register
from schemas.reflection import ReflectionResult
from schemas.settings import Settings

TERMINAL = ("committed", "dead_lettered")
DEBOUNCE_S = 0.2


class Results:
    """Finished reflections by (user, thread), with when they finished (``Reflector.on_result``)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_thread: dict[tuple[str, str], list[tuple[ReflectionResult, float]]] = {}

    def __call__(self, result: ReflectionResult) -> None:
        now = time.monotonic()
        # A joint reflection commits its siblings too; its cost stays with the reflected thread.
        free = {"llm_calls": 0, "prompt_tokens": 0, "completion_tokens": 0}
        joined = [result.model_copy(update={"thread_id": t, **free}) for t in result.siblings]
        with self.lock:
            for r in (result, *joined):
                self.by_thread.setdefault((r.user_id, r.thread_id), []).append((r, now))

    def terminal(self, key: tuple[str, str]) -> tuple[ReflectionResult, float] | None:
        """The first commit or dead letter of a thread, and when it happened."""
        with self.lock:
            return next(((r, t) for r, t in self.by_thread.get(key, []) if r.outcome in TERMINAL), None)

    def cost(self, key: tuple[str, str]) -> tuple[int, int]:
        """LLM calls and tokens of a thread's finished reflections."""
        with self.lock:
            done = [r for r, _ in self.by_thread.get(key, [])]
        return sum(r.llm_calls for r in done), sum(r.prompt_tokens + r.completion_tokens for r in done)


@dataclass
class Harness:
    settings: Settings
    runtime: Any
    producer: Any
    results: Results
    run_id: str

    def wait(self, keys: Sequence[tuple[str, str]], timeout_s: float) -> dict[tuple[str, str], ReflectionResult]:
        """Wait until each (user, thread) committed or was dead-lettered; returns those that did."""
        deadline = time.monotonic() + timeout_s
        done: dict[tuple[str, str], ReflectionResult] = {}
        while len(done) < len(keys) and time.monotonic() < deadline:
            for key in keys:
                if key not in done and (hit := self.results.terminal(key)) is not None:
                    done[key] = hit[0]
            time.sleep(0.05)
        return done


def _delete_prefix(client: Any, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    for i in range(0, len(keys), 500):
        client.delete(*keys[i : i + 500])


@contextmanager
def harness(base: Settings, profiles: Sequence[Profile] = ()) -> Iterator[Harness]:
    from producer import Producer, ProducerConfig
    from worker.app import create_app, make_dispatcher
    from worker.ops.embedded import start_embedded_redis, worker_thread
    from worker.pipeline.dispatcher import DispatcherThread
    from worker.runtime import build_runtime, install

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
        for profile in profiles:
            register(profile)
        runtime = build_runtime(settings)
        stack.callback(runtime.close)
        stack.callback(_delete_prefix, runtime.redis, settings.key_prefix)
        results = Results()
        runtime.reflector.on_result = results
        install(runtime)
        stack.callback(install, None)
        app = create_app(settings)
        stack.enter_context(worker_thread(app, concurrency=8))
        stack.enter_context(DispatcherThread(make_dispatcher(app)))
        producer = Producer(ProducerConfig(redis_url=url, key_prefix=settings.key_prefix, after_seconds=DEBOUNCE_S))
        stack.callback(producer.close)
        yield Harness(settings, runtime, producer, results, run)
