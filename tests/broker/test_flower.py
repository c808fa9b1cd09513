"""Flower on RabbitMQ: the worker's events reach it through ``<prefix>.celeryev``, remote control
(inspect) through ``<prefix>.control``, and a reflection shows as SUCCESS with ids only."""

from __future__ import annotations

import json
from typing import Any

import pytest

from producer import Producer, ProducerConfig
from tests.conftest import uid
from tests.support.flower import get, running_flower
from tests.support.llm_scripts import insert_each_user_turn
from tests.support.procs import wait_until
from worker.tasks import REFLECT

pytestmark = pytest.mark.rabbitmq
SECRET_TEXT = "my bank PIN is 4321"


@pytest.mark.timeout(180)
def test_flower_follows_a_rabbitmq_worker(rabbit, rabbit_env, spawn, scripted, redis_url, prefix, tmp_path) -> None:
    scripted.set_responder(insert_each_user_turn)
    flower_env = {k: v for k, v in rabbit_env.items() if k.startswith("REVERIE_")}
    flower_env["REVERIE_QDRANT_PATH"] = str(tmp_path / "unused")
    with running_flower(flower_env, tmp_path / "flower.log") as flower:
        worker = spawn(rabbit_env)
        hostname = f"w{worker.pid}@127.0.0.1"

        def seen_by_events() -> bool:
            _, workers = get(f"{flower}/workers?json=1")
            return any(w.get("hostname") == hostname and w.get("status") for w in (workers or {}).get("data", []))

        wait_until(seen_by_events, 60, "the worker's heartbeat events in Flower")
        inspected: dict[str, Any] = {}

        def answered_inspect() -> bool:  # Flower's inspect waits 1 s for replies: retry on a busy machine
            status, workers = get(f"{flower}/api/workers?refresh=1")
            inspected.update(workers or {})
            return status == 200 and hostname in inspected

        wait_until(answered_inspect, 60, "the worker answering inspect over the control exchange")
        assert inspected[hostname]["active_queues"][0]["name"] == f"{prefix}.tasks"

        user = uid("flo")
        with Producer(ProducerConfig(redis_url=redis_url, key_prefix=prefix, after_seconds=0.3)) as producer:
            producer.submit(user, "t", [{"role": "user", "content": SECRET_TEXT}])

            def mine() -> dict[str, Any]:
                _, tasks = get(f"{flower}/api/tasks?limit=1000")
                return {k: v for k, v in (tasks or {}).items() if user in str(v.get("kwargs"))}

            wait_until(lambda: [t.get("state") for t in mine().values()] == ["SUCCESS"], 60, "the reflection")
        [task] = mine().values()
        assert task["name"] == REFLECT and "'outcome': 'committed'" in task["result"]
        assert task["args"] in ("()", "[]") and f"'user_id': '{user}'" in task["kwargs"]
        assert SECRET_TEXT not in json.dumps(mine())
        assert worker.stop() == 0, worker.log()
