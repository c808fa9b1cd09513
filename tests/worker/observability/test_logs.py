"""What a real worker process prints, read from its stderr: one JSON line per event, at its own
level. Expected outcomes (superseded, rolled back, a foreign id refused, a dead letter) are one
line with ids and no traceback; only the unexpected gets a traceback, at ERROR, once."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from typing import Any

import pytest
from pydantic import SecretStr

from producer import Producer, ProducerConfig
from schemas.settings import Settings
from tests.conftest import uid
from tests.support.llm_scripts import conversation_lines, insert_each_user_turn
from tests.support.procs import wait_until
from tests.support.scripted_llm import Reply, tool_calls_reply
from worker.pipeline.coordinator import Coordinator
from worker.pipeline.keys import WorkerKeys

SECRET_TEXT = "my locker code is 5150"


def _lines(log: str) -> list[dict[str, Any]]:
    out = []
    for raw in log.splitlines():
        if raw.strip():
            out.append(json.loads(raw))  # every line is one JSON object: one format
    return out


@pytest.mark.timeout(180)
def test_each_outcome_is_logged_once_at_its_level(worker_env, spawn, scripted, redis_url, redis_client, prefix) -> None:
    users = {name: uid(name) for name in ("sup", "roll", "foreign", "bug")}
    rolled = threading.Event()
    producer = Producer(ProducerConfig(redis_url=redis_url, key_prefix=prefix, after_seconds=0.3))

    def model(body: dict[str, Any]) -> Reply:
        text = "\n".join(conversation_lines(body))
        if "ROLLBACK" in text and not rolled.is_set():  # a turn arrives while the model thinks
            rolled.set()
            producer.submit(users["roll"], "t", [{"role": "user", "content": "and one more thing"}])
            time.sleep(0.2)
        if "FOREIGN" in text:  # an id it was never shown, every time
            return tool_calls_reply([("update_memory", {"memory_id": "42", "content": "x"})])
        if "BUGGY" in text:
            return tool_calls_reply([("insert_buggy", {"content": "x"})])
        return insert_each_user_turn(body)

    scripted.set_responder(model)
    env = worker_env | {
        "REVERIE_LOG_LEVEL": "INFO",
        "REVERIE_MAX_ATTEMPTS": "1",
        "REVERIE_VALIDATION_RETRIES": "1",
        "REVERIE_PROFILES": "tests.support.buggy:buggy_profile",
    }
    worker = spawn(env)
    coord = Coordinator(redis_client, WorkerKeys(prefix))
    # superseded: a task for generation 1 after a second turn made it generation 2
    producer.submit(users["sup"], "t", [{"role": "user", "content": "first"}], after_seconds=600)
    producer.submit(users["sup"], "t", [{"role": "user", "content": "second"}], after_seconds=600)
    from worker.app import create_app
    from worker.tasks import REFLECT

    app = create_app(Settings(redis_url=SecretStr(redis_url), key_prefix=prefix))
    app.send_task(REFLECT, kwargs={"user_id": users["sup"], "thread_id": "t", "generation": 1}, queue="reverie")
    producer.submit(users["roll"], "t", [{"role": "user", "content": f"ROLLBACK {SECRET_TEXT}"}])
    producer.submit(users["foreign"], "t", [{"role": "user", "content": "FOREIGN"}])
    producer.submit(users["bug"], "t", [{"role": "user", "content": "BUGGY"}], profile="buggy")

    def done() -> bool:
        s = coord.stats()
        return s.get("superseded", 0) >= 1 and s.get("committed", 0) >= 1 and s.get("dead_lettered", 0) >= 2

    try:
        wait_until(done, 90, "superseded, a commit after the rollback, two dead letters")
        time.sleep(0.3)  # the last task's "finished" line
    finally:
        producer.close()
        worker.stop()
        app.close()
    lines = _lines(worker.log())

    def of(user: str, event: str) -> list[dict[str, Any]]:
        return [e for e in lines if e.get("user_id") == users[user] and e.get("event") == event]

    finished = Counter((e["user_id"], e["outcome"]) for e in lines if e.get("event") == "reflection finished")
    assert finished[(users["sup"], "superseded")] == 1
    assert finished[(users["roll"], "rolled_back")] == 1
    assert finished[(users["roll"], "committed")] == 1
    assert all(e["level"] == "info" for e in lines if e.get("event") == "reflection finished")

    [refused] = [e for e in lines if e.get("event") == "tool call validation failed" and e["round"] == 0]
    assert refused["level"] == "info" and refused["user_id"] == users["foreign"]
    [foreign] = of("foreign", "reflection dead-lettered")
    assert foreign["level"] == "warning" and foreign["error"] == "ExtractionFailed" and "exception" not in foreign

    [bug] = of("bug", "reflection dead-lettered")
    assert bug["level"] == "error" and bug["unexpected"] is True
    assert "Traceback" in bug["exception"] and "RuntimeError" in bug["exception"]
    with_traceback = [e for e in lines if "Traceback" in json.dumps(e)]
    assert with_traceback == [bug], "only the unexpected failure carries a traceback"

    assert not [e for e in lines if e.get("logger") == "celery.redirected"], "stdout/stderr re-logged by Celery"
    keyed = Counter(
        (e.get("event"), e.get("task_id"), e.get("outcome"), e.get("round")) for e in lines if e.get("task_id")
    )
    assert [k for k, n in keyed.items() if n > 1] == [], "an event printed twice"
    assert SECRET_TEXT not in worker.log()
