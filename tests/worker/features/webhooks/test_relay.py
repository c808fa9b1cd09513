"""The relay: a consumer group per endpoint on every events stream, one task per matching
entry (carrying its stream), events an endpoint does not want acknowledged at once, lost tasks
sent again after webhook_redeliver_s, trimmed pending entries dead-lettered, dead consumers
removed, deleted streams recovered."""

from __future__ import annotations

import time
from typing import Any

from schemas.events import ChangeEvent
from tests.conftest import uid
from tests.support.procs import wait_until
from tests.support.webhooks import endpoint, pending_total
from tests.worker.features.webhooks.test_deliver import FACTS, events_of, letters_of, reflect
from worker.features.webhooks.keys import group
from worker.features.webhooks.relay import RelayThread
from worker.pipeline.keys import WorkerKeys


def _add_event(redis_client: Any, stream: str, user: str) -> str:
    """What a shard's commit writes to its own stream."""
    event = ChangeEvent(event_id=f"{user}:t:g1:7:0", user_id=user, memory_id="m-1", op="insert", kind="semantic")
    values = [*event.fields(), "ts_ms", str(int(time.time() * 1000))]
    return redis_client.xadd(stream, dict(zip(values[::2], values[1::2], strict=True))).decode()


def test_every_stream_gets_the_group_and_each_task_reads_the_stream_its_entry_came_from(
    make_webhooks, receiver, secret, redis_client, monkeypatch, celery_app
):
    """With two streams (as after sharding), both get ``webhook:<endpoint>``, and an event
    written to the second is delivered from the second."""
    monkeypatch.setattr(WorkerKeys, "event_streams", lambda self: [self.events, f"{self.prefix}:events:1"])
    sent: list[Any] = []
    system = make_webhooks([endpoint("hook", receiver.url, secret)], relay=False)
    forward = system.relay.send
    system.relay.send = lambda args: (sent.append(args), forward(args))
    thread = RelayThread(system.relay).start()
    try:
        first, second = system.runtime.coordinator.keys.event_streams()
        for stream in (first, second):
            assert [g["name"].decode() for g in redis_client.xinfo_groups(stream)] == [group("hook")]
        user = uid("u")
        reflect(system, user, FACTS[0])
        sharded = _add_event(redis_client, second, user)
        receiver.wait_for(lambda r: len(r.accepted()) == 2, 15, "one event from each stream")
        wait_until(lambda: pending_total(system) == 0, 10, "acknowledged on both streams")
    finally:
        thread.stop()
    assert {(a.stream, a.stream_id) for a in sent} == {(first, events_of(system)[0].stream_id), (second, sharded)}
    assert f"{user}:t:g1:7:0" in receiver.accepted()


def test_events_an_endpoint_does_not_subscribe_to_are_acknowledged_unsent(
    make_webhooks, receiver, secret, redis_client
):
    system = make_webhooks([endpoint("deletes", receiver.url, secret, events=["memory.deleted"])])
    reflect(system, uid("u"), *FACTS)
    stream = system.runtime.coordinator.keys.events
    last = events_of(system)[-1].stream_id

    def read_up_to_last() -> bool:
        [info] = redis_client.xinfo_groups(stream)
        return info["last-delivered-id"].decode() == last and int(info["pending"]) == 0

    wait_until(read_up_to_last, 10, "both inserts read and acknowledged")
    time.sleep(0.3)
    assert receiver.receipts == []


def test_a_task_lost_on_the_way_is_sent_again_after_the_redeliver_time(make_webhooks, receiver, secret):
    """The first task of each entry vanishes (a worker died holding it): the entry stays pending,
    and once idle for webhook_redeliver_s a relay claims it and sends it again."""
    system = make_webhooks([endpoint("hook", receiver.url, secret)])
    forward, dropped = system.relay.send, []

    def lossy(args: Any) -> None:
        if args.stream_id not in dropped:
            dropped.append(args.stream_id)
            return
        forward(args)

    system.relay.send = lossy
    started = time.monotonic()
    reflect(system, uid("u"), *FACTS)
    receiver.wait_for(lambda r: len(r.accepted()) == 2, 20, "both events, sent again")
    assert sorted(dropped) == sorted(e.stream_id for e in events_of(system))
    assert time.monotonic() - started >= system.settings.webhook_redeliver_s, "not before the entry was idle"
    assert sorted(receiver.ids()) == sorted(e.event_id for e in events_of(system))
    wait_until(lambda: pending_total(system) == 0, 10, "acknowledged")


def test_entries_trimmed_while_pending_are_dead_lettered_not_dropped(make_webhooks, receiver, secret, celery_app):
    """Read by a relay, then trimmed by the events cap before delivery: the delivery task (and
    the relay's reclaim, for one whose task was lost) dead-letters it as ``trimmed``."""
    from worker.app import webhook_sender

    system = make_webhooks([endpoint("hook", receiver.url, secret)], relay=False)
    relay, stream = system.relay, system.runtime.coordinator.keys.events
    relay.ensure_groups()
    reflect(system, uid("u"), *FACTS)
    held: list[Any] = []
    relay.send = held.append
    assert relay.read(stream) == 2 and pending_total(system) == 2
    system.redis.xtrim(stream, maxlen=0, approximate=False)
    webhook_sender(celery_app)(held[0])
    wait_until(lambda: len(letters_of(system)) == 1, 10, "the task's dead letter")
    relay.redeliver_ms = 1
    time.sleep(0.01)
    relay.reclaim(stream)
    letters = letters_of(system)
    assert sorted(d.stream_id for d in letters) == sorted(a.stream_id for a in held)
    assert all((d.error, d.event_id, d.ref) == ("trimmed", "", f"{d.stream_id}@{stream}") for d in letters)
    assert pending_total(system) == 0 and receiver.receipts == []


def test_consumers_of_gone_relays_are_removed_unless_they_hold_entries(make_webhooks, receiver, secret, monkeypatch):
    from worker.features.webhooks import relay as relay_module

    system = make_webhooks([endpoint("hook", receiver.url, secret)], relay=False)
    relay, stream, r = system.relay, system.runtime.coordinator.keys.events, system.redis
    relay.ensure_groups()
    reflect(system, uid("u"), FACTS[0])
    r.xreadgroup(group("hook"), "holder", {stream: ">"}, count=10)  # a dead relay that holds an entry
    r.xgroup_createconsumer(stream, group("hook"), "gone")  # one that holds nothing
    monkeypatch.setattr(relay_module, "TIDY_EVERY_S", 0.001)
    time.sleep(0.01)
    assert relay.tidy(stream) == 1
    assert {c["name"].decode() for c in r.xinfo_consumers(stream, group("hook"))} == {"holder"}
    r.xack(stream, group("hook"), events_of(system)[0].stream_id)


def test_a_deleted_stream_gets_its_groups_back_and_later_events_arrive(make_webhooks, receiver, secret, redis_client):
    system = make_webhooks([endpoint("hook", receiver.url, secret)])
    user = uid("u")
    reflect(system, user, FACTS[0])
    receiver.wait_for(lambda r: len(r.accepted()) == 1, 15, "the first event")
    redis_client.delete(system.runtime.coordinator.keys.events)
    reflect(system, user, FACTS[1])
    receiver.wait_for(lambda r: len(r.accepted()) == 2, 15, "an event after the stream was deleted")
