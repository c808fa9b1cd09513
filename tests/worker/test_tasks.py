"""What Flower shows of a reflection task matches what the README says: the task id format, the
states, the reason a task did no work, and the attempt and dead-letter status of a failure."""

from __future__ import annotations

import json
import re
import threading
import uuid
from pathlib import Path
from typing import Any

from tests.conftest import uid
from tests.support.llm_scripts import insert_each_user_turn
from tests.support.scripted_llm import Fault
from worker.tasks import CUSTOM_STATES, REFLECT

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def _documented_task_id() -> str:
    [template] = re.findall(r"task ids read `(reflect:[^`]+)`", README)
    return template


def _task_metas(system: Any, celery_app: Any, user: str) -> dict[str, dict[str, Any]]:
    prefix = celery_app.conf.broker_transport_options["global_keyprefix"]
    out = {}
    for raw in system.redis.scan_iter(match=f"{prefix}celery-task-meta-reflect:{user}:*"):
        key = raw.decode()
        out[key.split("celery-task-meta-", 1)[1]] = json.loads(system.redis.get(raw))
    return out


def test_the_documented_task_id_format_is_the_one_dispatched(make_system, scripted, celery_app) -> None:
    scripted.set_responder(insert_each_user_turn)
    system = make_system(model=scripted.model, llm_api_base=scripted.base_url, llm_api_key="sk-test")
    user = uid("ids")
    system.producer.submit(user, "t1", [{"role": "user", "content": "I like tea"}])
    system.wait_for(lambda: len(system.committed(user)) == 1, what="commit")
    template = _documented_task_id()
    pattern = (
        re.escape(template)
        .replace(re.escape("<user>"), re.escape(user))
        .replace(re.escape("<thread>"), "t1")
        .replace(re.escape("<generation>"), "1")
        .replace(re.escape("<hex>"), "[0-9a-f]+")
    )
    # the result is stored when the task returns, a moment after the commit the test saw
    system.wait_for(lambda: len(_task_metas(system, celery_app, user)) == 1, what="the stored result")
    [task_id] = _task_metas(system, celery_app, user)
    assert re.fullmatch(pattern, task_id), f"{task_id!r} does not read like the README's {template!r}"


def test_the_documented_states_are_the_states_a_reflection_ends_in() -> None:
    section = README.split("### Flower", 1)[1].split("###", 1)[0]
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", section, re.M))
    assert documented == {"SUCCESS", "FAILURE", *CUSTOM_STATES.values()}
    assert "state:SUPERSEDED" in section, "Flower 2.2 filters custom states in the search box only"


def test_a_superseded_task_tells_flower_why_it_did_no_work(make_system, celery_app) -> None:
    """The event Flower turns into the SUPERSEDED state carries the reason and the generations."""
    system = make_system()
    user = uid("sup")
    for text in ("first", "second"):  # generation 2, due in a minute
        system.producer.submit(user, "t", [{"role": "user", "content": text}], after_seconds=60, max_wait=120)
    events: list[dict[str, Any]] = []
    stop = threading.Event()
    ready = threading.Event()

    def listen() -> None:
        with celery_app.connection_for_read() as conn:
            receiver = celery_app.events.Receiver(conn, handlers={"*": events.append})
            ready.set()
            while not stop.is_set():
                try:
                    receiver.capture(limit=None, timeout=0.5, wakeup=False)
                except TimeoutError:
                    continue

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert ready.wait(10)
    # Subscribed only once it drains: probe until our own event comes back, or the task's
    # event could go out before the listener hears anything.
    with celery_app.connection_for_write() as conn:
        probe = celery_app.events.Dispatcher(conn)
        system.wait_for(
            lambda: probe.send("reverie-probe") is None and any(e["type"] == "reverie-probe" for e in list(events)),
            what="the event listener",
        )
    task_id = f"reflect:{user}:t:g1:{uuid.uuid4().hex[:8]}"
    celery_app.send_task(
        REFLECT, kwargs={"user_id": user, "thread_id": "t", "generation": 1}, task_id=task_id, queue="reverie"
    )
    try:
        system.wait_for(
            lambda: any(e["type"] == "task-superseded" and e.get("uuid") == task_id for e in list(events)),
            what="task-superseded event",
        )
    finally:
        stop.set()
        listener.join(5)
    [event] = [e for e in events if e["type"] == "task-superseded" and e.get("uuid") == task_id]
    result = event["result"] if isinstance(event["result"], dict) else json.loads(event["result"])
    assert result["outcome"] == "superseded" and result["generation"] == 1
    assert result["reason"].startswith("a newer turn arrived (generation 2)")
    assert "first" not in json.dumps(event) and "second" not in json.dumps(event), "ids only, never text"
    assert task_id not in _task_metas(system, celery_app, user), "no-work outcomes store no result"


def test_a_failure_says_which_attempt_and_whether_it_was_dead_lettered(make_system, scripted, celery_app) -> None:
    system = make_system(
        model=scripted.model, llm_api_base=scripted.base_url, llm_api_key="sk-test", llm_max_retries=0, max_attempts=2
    )
    scripted.set_responder(lambda _: Fault.status(500))
    user = uid("fail")
    system.producer.submit(user, "t", [{"role": "user", "content": "persist me"}])

    def failures() -> list[str]:
        metas = _task_metas(system, celery_app, user).values()
        return sorted(" ".join(m["result"]["exc_message"]) for m in metas if m["status"] == "FAILURE")

    system.wait_for(lambda: len(failures()) == 2, timeout_s=30, what="two stored failures")
    messages = failures()
    first, last = messages
    assert re.match(r"attempt 1 of 2, retry in \d+ s: \w+", first), first
    assert last.startswith(f"attempt 2 of 2, dead-lettered (reverie dlq show {user} t): "), last
    assert "persist me" not in first + last
