"""Webhooks on the 16-shard cluster: the relay reads every shard's events stream, a dead letter
and the acknowledgement of its entry go in one MULTI in the stream's slot, and forget removes a
user's letters in the MULTI of the user's shard."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import uid
from tests.support.procs import free_port, wait_until
from tests.support.webhook_receiver import WebhookReceiver
from tests.support.webhooks import endpoint, pending_total, webhooks_factory
from worker.features.forget import forget_user
from worker.features.webhooks.dlq import dead_letters
from worker.memory.events import read_events


@pytest.fixture
def make_cluster_webhooks(make_cluster_system: Any, scripted: Any, celery_app: Any) -> Iterator[Callable[..., Any]]:
    with webhooks_factory(make_cluster_system, scripted, celery_app) as make:
        yield make


def _users_on_distinct_shards(keys: Any, n: int) -> list[str]:
    users: dict[int, str] = {}
    while len(users) < n:
        user = uid("u")
        users.setdefault(keys.shard_of(user), user)
    return list(users.values())


def test_every_shard_delivers_and_dead_letters_in_its_own_slot(make_cluster_webhooks, receiver, secret) -> None:
    """Users on four shards each commit a memory: the working endpoint receives every event of
    every shard's stream (signatures verified by the receiver); the refused endpoint dead-letters
    each of them beside its stream; forgetting one user removes exactly that user's letters and
    its ``user.forgotten`` event reaches the working endpoint."""
    port = free_port()
    down = WebhookReceiver(secret, port=port)  # never started: connection refused
    system = make_cluster_webhooks(
        [endpoint("ok", receiver.url, secret), endpoint("down", down.url, secret)], webhook_max_attempts=2
    )
    keys = system.runtime.coordinator.keys
    users = _users_on_distinct_shards(keys, 4)
    for user in users:
        system.producer.submit(user, "t", [{"role": "user", "content": "I keep bees in Nagano"}])
    for user in users:
        system.wait_for(lambda user=user: len(system.committed(user)) == 1, what="a commit per user")

    events = [e for stream in keys.event_streams() for e in read_events(system.redis, stream, count=1000)]
    assert {e.user_id for e in events} == set(users)
    assert len({keys.shard_of(e.user_id) for e in events}) == 4, "events landed in four shards' streams"
    receiver.wait_for(lambda r: set(r.accepted()) >= {e.event_id for e in events}, 30, "every shard's events")

    wait_until(lambda: len(dead_letters(system.redis, keys, "down")) == len(events), 30, "a letter per event")
    letters = dead_letters(system.redis, keys, "down")
    assert {d.event_id for d in letters} == {e.event_id for e in events}
    for letter in letters:  # each letter sits beside the stream its entry came from
        assert letter.stream == keys.shard_for(letter.user_id).events
    wait_until(lambda: pending_total(system) == 0, 15, "every entry acknowledged")

    gone = users[0]
    counts = forget_user(system.runtime, gone)
    assert counts["webhook_dead_letters"] == sum(1 for d in letters if d.user_id == gone) > 0
    remaining = dead_letters(system.redis, keys, "down")
    assert {d.user_id for d in remaining} == set(users[1:])
    receiver.wait_for(
        lambda r: any(x.body.get("type") == "user.forgotten" for x in r.accepted().values()), 30, "the forget event"
    )
