"""A real Flower process against the test broker: workers, tasks, custom states, basic auth,
and no conversation text anywhere in what it shows."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import uid
from tests.support.llm_scripts import insert_each_user_turn
from worker.tasks import REFLECT

ROOT = Path(__file__).resolve().parents[1]
AUTH = "Basic " + base64.b64encode(b"ops:s3cret-pw").decode()
SECRET_TEXT = "my bank PIN is 4321"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, *, auth: bool = True) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers={"Authorization": AUTH} if auth else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, None


@pytest.fixture
def flower(redis_url: str, celery_app: Any, tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REVERIE_", "FLOWER_"))}
    env |= {
        "REVERIE_REDIS_URL": redis_url,
        # the session worker's prefix: Celery's queues and event channels live under it
        "REVERIE_KEY_PREFIX": celery_app.reverie_settings.key_prefix,
        "REVERIE_QDRANT_PATH": str(tmp_path / "unused"),
    }
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.app",
        "flower",
        "--basic-auth=ops:s3cret-pw",
        f"--port={port}",
        "--address=127.0.0.1",
    ]
    log = (tmp_path / "flower.log").open("w")
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 40
        while True:
            try:
                if _get(f"{base}/api/workers")[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                raise AssertionError("flower did not start:\n" + (tmp_path / "flower.log").read_text()[-3000:])
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


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
