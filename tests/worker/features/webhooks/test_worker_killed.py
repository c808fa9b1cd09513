"""A worker process SIGKILLed in the middle of deliveries: no event is lost, the one in flight
arrives again under the same ``webhook-id``, and nothing is left pending or dead-lettered.

Real processes: worker processes (relay, dispatcher and pool inside, as ``reverie worker`` runs
them) forked by the suite's zygote, on this test's Redis prefix and local Qdrant folder."""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import pytest

from producer import Producer, ProducerConfig
from tests.conftest import uid
from tests.support.llm_scripts import insert_each_user_turn
from tests.support.procs import settings_env, wait_until
from tests.support.webhook_receiver import Answer
from tests.support.webhooks import FAST, endpoint
from worker.features.webhooks.dlq import dead_letters
from worker.features.webhooks.keys import group
from worker.memory.events import read_events
from worker.pipeline.keys import WorkerKeys

KILLED = -signal.SIGKILL


def _pending(redis_client: Any, stream: str) -> int:
    return sum(int(g["pending"]) for g in redis_client.xinfo_groups(stream)) if redis_client.exists(stream) else 0


@pytest.mark.timeout(240)
def test_a_worker_killed_mid_delivery_loses_no_event(
    worker_env, spawn, scripted, redis_url, redis_client, prefix, receiver, secret
) -> None:
    scripted.set_responder(insert_each_user_turn)
    keys = WorkerKeys(prefix)
    env = worker_env | settings_env(webhooks=json.dumps([endpoint("hook", receiver.url, secret)]), **FAST)
    target: dict[str, Any] = {}

    def answer(_msg_id: str, _nth: int) -> Answer:
        proc = target.pop("proc", None) if len(receiver.receipts) == 1 else None
        if proc is not None:  # the second request is in flight (and maybe the first): kill the worker now
            os.kill(proc.pid, signal.SIGKILL)
        return Answer(204, delay_s=0.3)

    receiver.answer = answer
    first = spawn(env)
    wait_until(
        lambda: redis_client.exists(keys.events) and len(redis_client.xinfo_groups(keys.events)) == 1,
        90,
        "the worker's relay and its consumer group",
    )
    target["proc"] = first
    user = uid("u")
    with Producer(ProducerConfig(redis_url=redis_url, key_prefix=prefix, after_seconds=0.3)) as producer:
        for t in range(3):
            turns = [{"role": "user", "content": f"fact {t}.{i} about me", "id": f"m{i}"} for i in range(2)]
            assert producer.submit(user, f"t{t}", turns).status == "accepted"
        assert first.wait(90) == KILLED and "proc" not in target

        second = spawn(env)
        wait_until(lambda: redis_client.xlen(keys.events) >= 6, 90, "all three reflections committed")
        events = read_events(redis_client, keys.events, count=1000)
        ids = {e.event_id for e in events}
        assert len(events) == 6 and len(ids) == 6, "one event per inserted memory"
        receiver.wait_for(lambda r: set(r.accepted()) == ids, 60, "every event delivered")
        wait_until(lambda: _pending(redis_client, keys.events) == 0, 30, "every entry acknowledged")
    assert second.stop(30) == 0

    received = receiver.ids()
    assert set(received) == ids, "no event lost, nothing foreign"
    again = {i for i in ids if received.count(i) > 1}
    assert again, "the delivery in flight when the worker died was sent again"
    for event_id in again:
        bodies = [r.body for r in receiver.receipts if r.msg_id == event_id]
        assert all(b == bodies[0] for b in bodies), "a duplicate is the same event under the same webhook-id"
    assert dead_letters(redis_client, keys) == []
    assert [g["name"].decode() for g in redis_client.xinfo_groups(keys.events)] == [group("hook")]
