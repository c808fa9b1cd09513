"""The dispatcher on RabbitMQ: a send returns once the broker confirmed it, into a durable quorum
queue named after the key prefix; a send the broker did not take is undone (the thread is due
again), whether the broker is unreachable or refuses the queue."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from producer import Producer, ProducerConfig
from schemas.settings import Settings
from tests.conftest import uid
from tests.support.procs import free_port, wait_until
from worker.app import create_app, sender
from worker.errors import BrokerUnavailable
from worker.pipeline.coordinator import Claimed
from worker.pipeline.dispatcher import Dispatcher
from worker.runtime import build_coordinator

pytestmark = pytest.mark.rabbitmq
SECRET_TEXT = "my locker code is 5150"


@pytest.fixture
def submit(redis_url: str, prefix: str) -> Iterator[Any]:
    with Producer(ProducerConfig(redis_url=redis_url, key_prefix=prefix, after_seconds=0)) as producer:

        def due_now(user: str, thread: str) -> Any:
            receipt = producer.submit(user, thread, [{"role": "user", "content": SECRET_TEXT}], after_seconds=0)
            assert receipt.status == "accepted"
            return producer.status(user, thread)

        due_now.producer = producer  # type: ignore[attr-defined]
        yield due_now


def _dispatch_once(settings: Settings, errors: list[str] | None = None) -> int:
    """One dispatcher pass with the app's real sender; the class of each failed send goes to ``errors``."""
    app = create_app(settings)
    coordinator = build_coordinator(settings)
    send = sender(app)

    def recording(claim: Claimed) -> None:
        try:
            send(claim)
        except Exception as e:
            if errors is not None:
                errors.append(type(e).__name__)
            raise

    try:
        sent, _ = Dispatcher(coordinator, recording).run_once(now=10.0)
        return sent
    finally:
        send.close()
        coordinator.r.close()
        app.close()


def test_a_confirmed_send_lands_persistent_in_the_prefixed_quorum_queue(rabbit, rabbit_settings, submit) -> None:
    """Two due threads → two confirmed messages in ``<prefix>.tasks``, a quorum queue (the broker
    refuses to redeclare it classic), persistent, ids only; the claims stay in flight."""
    user = uid("u")
    submit(user, "t1")
    submit(user, "t2")
    sent = _dispatch_once(rabbit_settings)
    assert sent == 2
    queue = f"{rabbit_settings.key_prefix}.tasks"
    assert rabbit.queue_depth(queue) == 2, "confirmed before the send returned: both already in the queue"
    refusal = rabbit.redeclare_refused(queue, {"x-queue-type": "classic"})
    assert refusal is not None and "x-queue-type" in refusal and "quorum" in refusal
    messages = [rabbit.get(queue) for _ in range(2)]
    for message in messages:
        assert message.properties["delivery_mode"] == 2, "persistent"
        assert message.properties["application_headers"]["task"] == "reverie.reflect"
        assert message.delivery_info["routing_key"] == queue
        assert SECRET_TEXT not in json.dumps([str(message.body), str(message.properties)])
    kwargs = sorted(json.loads(m.body)[1]["thread_id"] for m in messages)
    assert kwargs == ["t1", "t2"]
    status = submit.producer.status(user, "t1")
    assert status.in_flight and status.due_at_ms is None


def test_only_the_dispatchers_connection_waits_for_confirms(rabbit, rabbit_settings) -> None:
    """The dispatcher's sends go through a connection in confirm mode (kombu ``confirm_publish``);
    the app's other connections (a worker's task events) publish plainly, so a broker that stops
    confirming cannot stall a worker on an event."""
    app = create_app(rabbit_settings)
    send = sender(app)
    try:
        producer = send.confirmed.get()
        producer.connection.ensure_connection(max_retries=1)
        assert producer.connection.connection.confirm_publish is True
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1)
            assert conn.connection.confirm_publish is False
    finally:
        send.close()
        app.close()


def test_an_unreachable_broker_undoes_every_send(rabbit, rabbit_settings, submit, redis_url) -> None:
    """Nothing listens on the broker port: no send is confirmed, so every claimed thread is put
    back in the due set (due about a second later), nothing stays in flight; the first failure
    opens the breaker, so the other threads are put back without waiting on the dead broker
    again. Once the broker is back, the same threads are sent."""
    user = uid("u")
    before = [submit(user, f"t{i}") for i in range(3)]
    dead = rabbit_settings.model_copy(update={"broker_url": SecretStr(f"amqp://guest:guest@127.0.0.1:{free_port()}//")})
    errors: list[str] = []
    sent = _dispatch_once(dead, errors)
    assert sent == 0
    assert errors[0] != "BrokerUnavailable" and errors[1:] == ["BrokerUnavailable"] * 2, errors
    for i, old in enumerate(before):
        now = submit.producer.status(user, f"t{i}")
        assert now.state == "due" and not now.in_flight, now
        assert now.due_at_ms is not None and now.due_at_ms > old.due_at_ms, "put back, later"
        assert now.buffered_turns == 1
    time.sleep(1.1)  # the put-back threads fall due again
    sent = _dispatch_once(rabbit_settings)
    assert sent == 3
    assert rabbit.queue_depth(f"{rabbit_settings.key_prefix}.tasks") == 3


def test_the_breaker_refuses_sends_for_a_moment_after_a_failure(rabbit_settings) -> None:
    """After one failed send, the next is refused at once with ``BrokerUnavailable`` (no broker
    round trip); a fresh sender tries the broker again."""
    dead = rabbit_settings.model_copy(update={"broker_url": SecretStr(f"amqp://guest:guest@127.0.0.1:{free_port()}//")})
    app = create_app(dead)
    send = sender(app)
    try:
        claim = Claimed(user_id="u", thread_id="t", generation=1, lag_ms=0)
        with pytest.raises(Exception) as first:
            send(claim)
        assert not isinstance(first.value, BrokerUnavailable), "the first send tried the broker"
        with pytest.raises(BrokerUnavailable):
            send(claim)
    finally:
        send.close()
        app.close()


def test_a_queue_the_broker_refuses_undoes_the_send(rabbit, rabbit_settings, submit) -> None:
    """An older classic queue of the same name (say, from a deployment before quorum queues):
    RabbitMQ refuses Reverie's declaration, the send raises, the thread is due again and no
    message was taken. Once the operator removes the old queue, the same dispatcher sends it."""
    queue = f"{rabbit_settings.key_prefix}.tasks"
    rabbit.declare_classic(queue)
    user = uid("u")
    submit(user, "t")
    app = create_app(rabbit_settings)
    coordinator = build_coordinator(rabbit_settings)
    send = sender(app)
    try:
        dispatcher = Dispatcher(coordinator, send)
        assert dispatcher.run_once(now=10.0)[0] == 0
        status = submit.producer.status(user, "t")
        assert status.state == "due" and not status.in_flight and status.buffered_turns == 1
        assert rabbit.queue_depth(queue) == 0
        rabbit.delete({"queues": [queue], "exchanges": []})
        wait_until(lambda: dispatcher.run_once(now=20.0)[0] == 1, 10, "the send once the clash is gone")
    finally:
        send.close()
        coordinator.r.close()
        app.close()
    assert rabbit.queue_depth(queue) == 1
    assert rabbit.redeclare_refused(queue, {"x-queue-type": "classic"}) is not None, "now a quorum queue"


@pytest.mark.timeout(90)
def test_a_send_the_broker_never_confirms_is_undone(rabbit, rabbit_settings, submit, stalling_proxy) -> None:
    """The broker takes the message but its confirm never comes back (a proxy holds the broker's
    bytes): the send gives up after REVERIE_BROKER_CONFIRM_TIMEOUT_S and Celery's publish retries,
    and the thread is put back in the due set. The message did land, so the queue holds one
    more than was confirmed: a duplicate the generation check turns into a no-op, never a loss."""
    from kombu import Connection

    info = Connection(rabbitmq_url := rabbit_settings.broker_url.get_secret_value())
    proxied = rabbitmq_url.replace(f"{info.hostname}:{info.port or 5672}", f"127.0.0.1:{stalling_proxy.port}")
    assert proxied != rabbitmq_url
    settings = rabbit_settings.model_copy(update={"broker_url": SecretStr(proxied), "broker_confirm_timeout_s": 0.5})
    app = create_app(settings)
    app.conf.broker_connection_timeout = 1  # the publish retries reconnect through the stalled proxy
    coordinator = build_coordinator(settings)
    user = uid("u")
    queue = f"{settings.key_prefix}.tasks"
    send = sender(app)
    try:
        dispatcher = Dispatcher(coordinator, send)
        submit(user, "first")
        assert dispatcher.run_once(now=10.0)[0] == 1, "confirmed through the healthy proxy"
        stalling_proxy.stalled.set()
        submit(user, "second")
        assert dispatcher.run_once(now=20.0)[0] == 0
    finally:
        send.close()
        coordinator.r.close()
        app.close()
    status = submit.producer.status(user, "second")
    assert status.state == "due" and not status.in_flight and status.buffered_turns == 1, status
    assert submit.producer.status(user, "first").in_flight
    wait_until(lambda: rabbit.queue_depth(queue) == 2, 10, "the unconfirmed message in the queue too")
