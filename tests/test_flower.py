"""A real Flower process against the test broker: workers, tasks, custom states, basic auth,
and no conversation text anywhere in what it shows."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import uid
from tests.support.flower import get as _get
from tests.support.flower import running_flower
from tests.support.llm_scripts import insert_each_user_turn
from worker.tasks import REFLECT

SECRET_TEXT = "my bank PIN is 4321"


@pytest.fixture
def flower(redis_url: str, celery_app: Any, tmp_path: Path) -> Iterator[str]:
    env = {
        "REVERIE_REDIS_URL": redis_url,
        # the session worker's prefix: Celery's queues and event channels live under it
        "REVERIE_KEY_PREFIX": celery_app.reverie_settings.key_prefix,
        "REVERIE_QDRANT_PATH": str(tmp_path / "unused"),
    }
    with running_flower(env, tmp_path / "flower.log") as base:
        yield base


def test_flower_shows_workers_and_reflections_by_outcome(flower, make_system, scripted) -> None:
    """Committed reflections are SUCCESS with their summary; superseded ones have their own
    state; args are ids only; the API needs basic auth."""
    assert _get(f"{flower}/api/workers", auth=False)[0] == 401
    assert _get(f"{flower}/api/tasks", auth=False)[0] == 401

    scripted.set_responder(insert_each_user_turn)
    system = make_system(model=scripted.model, llm_api_base=scripted.base_url, llm_api_key="sk-test")
    user = uid("flo")
    time.sleep(1.0)  # let Flower's event receiver subscribe before the first task event
    system.producer.submit(user, "t", [{"role": "user", "content": SECRET_TEXT}])
    system.wait_for(lambda: len(system.committed(user)) == 1, what="commit")
    system.producer.submit(user, "t2", [{"role": "user", "content": "one"}], after_seconds=60, max_wait=60)
    system.producer.submit(user, "t2", [{"role": "user", "content": "two"}], after_seconds=60, max_wait=60)
    stale = system.app.send_task(REFLECT, kwargs={"user_id": user, "thread_id": "t2", "generation": 1})
    system.wait_for(lambda: "superseded" in system.outcomes(user), what="superseded")

    def mine() -> dict[str, Any]:
        _, tasks = _get(f"{flower}/api/tasks?limit=1000")
        return {k: v for k, v in (tasks or {}).items() if user in k or user in str(v.get("kwargs"))}

    system.wait_for(
        lambda: sorted(t.get("state") for t in mine().values()) == ["SUCCESS", "SUPERSEDED"],
        timeout_s=20,
        what="both tasks in Flower",
    )
    tasks = mine()
    by_state = {t["state"]: t for t in tasks.values()}
    assert by_state["SUCCESS"]["name"] == REFLECT
    assert "'outcome': 'committed'" in by_state["SUCCESS"]["result"]
    assert by_state["SUPERSEDED"]["result"]["outcome"] == "superseded"  # the summary rides on the event
    for t in tasks.values():
        assert t["args"] in ("()", "[]")
        assert f"'user_id': '{user}'" in t["kwargs"] and "'generation':" in t["kwargs"]
    assert SECRET_TEXT not in json.dumps(tasks)

    status, superseded_only = _get(f"{flower}/api/tasks?state=SUPERSEDED&limit=1000")
    assert status == 200 and stale.id in superseded_only

    with urllib.request.urlopen(f"{flower}/healthcheck", timeout=10) as response:  # container healthcheck: no auth
        assert response.status == 200 and response.read() == b"OK"

    status, workers = _get(f"{flower}/api/workers?refresh=1")
    assert status == 200 and isinstance(workers, dict) and workers, workers
    system.redis.delete(system.runtime.coordinator.keys.due_ss)
