"""Prometheus metrics: fleet-wide values read from Redis, per-process histograms, the exporter."""

from __future__ import annotations

import socket
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from schemas.settings import Settings
from tests.conftest import uid
from tests.support.llm_scripts import insert_each_user_turn
from worker.observability.metrics import build_registry, render, serve
from worker.pipeline.stats import RedisCollector


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_metrics_follow_the_pipeline(make_system, scripted) -> None:
    """After a burst: enqueued, committed, LLM calls and tokens count up; the queue is empty;
    the fleet-wide histograms (Redis) and this process's own saw the dispatch and the reflection."""
    scripted.set_responder(insert_each_user_turn)
    system = make_system(model=scripted.model, llm_api_base=scripted.base_url, llm_api_key="sk-test")
    registry = build_registry(RedisCollector(system.runtime.coordinator))
    before = _samples(render(registry))
    user = uid("u")
    for i in range(3):
        system.producer.submit(user, "t", [{"role": "user", "content": f"fact {i}"}])
    system.producer.submit(user, "later", [{"role": "user", "content": "wait"}], after_seconds=60, max_wait=60)
    system.wait_for(lambda: len(system.committed(user)) == 1, what="commit")
    m = _samples(render(registry))
    assert m[("reverie_enqueued_turns_total", ())] == 4
    assert m[("reverie_reflections_total", (("outcome", "committed"),))] == 1
    assert m[("reverie_llm_calls_total", ())] == 1
    assert m[("reverie_llm_tokens_total", (("type", "prompt"),))] > 0
    assert m[("reverie_dispatched_total", ())] == 1
    assert m[("reverie_due_threads", ())] == 1  # "later"
    assert m[("reverie_buffered_turns", ())] == 1
    assert m[("reverie_dead_letters", ())] == 0
    assert m[("reverie_dispatch_lag_seconds_count", ())] == 1  # a histogram, not a running sum
    assert m[("reverie_dispatch_lag_seconds_bucket", (("le", "+Inf"),))] == 1
    assert m[("reverie_dispatch_lag_seconds_sum", ())] >= 0
    fleet = ("reverie_reflection_duration_seconds_count", (("outcome", "committed"),))
    assert m[fleet] == before.get(fleet, 0) + 1
    local = ("reverie_process_reflection_duration_seconds_count", (("outcome", "committed"),))
    assert m[local] == before.get(local, 0) + 1
    system.redis.delete(system.runtime.coordinator.keys.due_ss)


def test_oldest_overdue_shows_a_stalled_dispatcher(redis_client, prefix, producer) -> None:
    """With no dispatcher running, a due thread ages: the gauge says how long it has waited."""
    import time

    from worker.pipeline.coordinator import Coordinator
    from worker.pipeline.keys import WorkerKeys as Keys

    coordinator = Coordinator(redis_client, Keys(prefix))
    producer.submit(uid("u"), "t", [{"role": "user", "content": "x"}], after_seconds=0)
    time.sleep(0.3)
    m = _samples(render(build_registry(RedisCollector(coordinator), local=False)))
    assert m[("reverie_oldest_overdue_seconds", ())] >= 0.25
    assert ("reverie_reflection_duration_seconds_count", (("outcome", "committed"),)) not in m


def test_exporter_serves_http(redis_client, prefix) -> None:
    """The exporter a worker starts on REVERIE_METRICS_PORT answers /metrics over HTTP."""
    from worker.pipeline.coordinator import Coordinator
    from worker.pipeline.keys import WorkerKeys as Keys

    port = _free_port()
    server: Any = serve(build_registry(RedisCollector(Coordinator(redis_client, Keys(prefix)))), port, "127.0.0.1")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            body = response.read().decode()
        assert response.status == 200 and "reverie_enqueued_turns_total" in body
    finally:
        server.shutdown()
        server.server_close()


def test_worker_starts_the_exporter_only_when_a_port_is_set(redis_url) -> None:
    """REVERIE_METRICS_PORT=0 (default) adds no bootstep; a port adds it."""
    from worker.app import MetricsStep, create_app

    off = create_app(Settings(redis_url=SecretStr(redis_url)))
    on = create_app(Settings(redis_url=SecretStr(redis_url), metrics_port=9808))
    assert MetricsStep not in off.steps["worker"]
    assert MetricsStep in on.steps["worker"]


def test_a_real_worker_process_reflects_and_serves_metrics(redis_url, prefix, producer, redis_client, tmp_path) -> None:
    """`reverie worker` as its own process (dispatcher inside, offline extractor) commits a
    reflection and serves Prometheus metrics on REVERIE_METRICS_PORT."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVERIE_")}
    env |= {
        "REVERIE_REDIS_URL": redis_url,
        "REVERIE_KEY_PREFIX": prefix,
        "REVERIE_QDRANT_PATH": str(tmp_path / "q"),
        "REVERIE_METRICS_PORT": str(port),
        "REVERIE_DISPATCH_INTERVAL_S": "0.05",
        "REVERIE_LOG_LEVEL": "WARNING",
    }
    root = Path(__file__).resolve().parents[3]
    log = (tmp_path / "worker.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.ops.cli", "worker", "--concurrency", "2", "--loglevel", "WARNING"],
        env=env,
        cwd=root,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    stats_key = f"{prefix}:stats"
    try:
        producer.submit(uid("u"), "t", [{"role": "user", "content": "I like green tea"}], after_seconds=0)
        deadline = time.monotonic() + 60
        while redis_client.hget(stats_key, "committed") is None:
            assert proc.poll() is None, (tmp_path / "worker.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "no commit from the worker process"
            time.sleep(0.2)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            m = _samples(response.read().decode())
        assert m[("reverie_reflections_total", (("outcome", "committed"),))] == 1
        assert m[("reverie_reflection_duration_seconds_count", (("outcome", "committed"),))] == 1
        assert m[("reverie_process_dispatch_lag_seconds_count", ())] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
