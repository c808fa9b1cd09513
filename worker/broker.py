"""The Celery broker: the single-box Redis by default, or RabbitMQ when ``REVERIE_BROKER_URL`` is
``amqp://``, ``amqps://`` or ``pyamqp://``. The coordination state (buffers, due set, leases,
results) stays on Redis either way; the broker only carries ids.

On Redis, Celery's keys live under the key prefix (``global_keyprefix``), so the queue keeps its
historical name, ``reverie``. RabbitMQ has no key prefix, so there every name Reverie declares
carries it: the queue and its exchange ``<prefix>.tasks``, the event exchange and queues
``<prefix>.celeryev``, the remote-control exchanges ``<prefix>.control.pidbox``. Two deployments
(or two tests) on one vhost never share a queue, nor see each other's workers in Flower.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from kombu import Exchange, Queue

from schemas.settings import RABBITMQ_SCHEMES, Settings
from worker.errors import BrokerUnavailable
from worker.pipeline.dispatcher import SEND_FAILURE_DELAY_MS
from worker.pipeline.keys import WorkerKeys

REDIS_QUEUE = "reverie"


@dataclass(frozen=True)
class Broker:
    """Where task messages go: the URL, the queue reflections are sent to and workers consume,
    the Celery settings for it, and the options of each dispatcher send."""

    url: str
    kind: Literal["redis", "rabbitmq"]
    queue: str
    conf: dict[str, Any] = field(default_factory=dict)
    publish: dict[str, Any] = field(default_factory=dict)


def is_rabbitmq(url: str) -> bool:
    return urlsplit(url.split(";")[0].strip()).scheme.lower() in RABBITMQ_SCHEMES


def broker_for(settings: Settings, redis_url: str) -> Broker:
    """The broker of a deployment: ``broker_url`` (validated by ``Settings``) or its Redis."""
    url = settings.broker_url.get_secret_value() if settings.broker_url else redis_url
    if is_rabbitmq(url):
        return _rabbitmq(url, settings)
    return Broker(
        url,
        "redis",
        REDIS_QUEUE,
        conf={
            # Celery's own keys live under our prefix, so tests and tenants of one Redis stay apart.
            "broker_transport_options": {
                "global_keyprefix": WorkerKeys(settings.key_prefix).celery_prefix(),
                "visibility_timeout": 3600,
            },
            "task_default_queue": REDIS_QUEUE,
        },
    )


def _rabbitmq(url: str, settings: Settings) -> Broker:
    name = f"{settings.key_prefix}.tasks"
    # A topic exchange, not direct: Celery routes a countdown/ETA through RabbitMQ's native delayed
    # delivery only for topic exchanges (Reverie sends none; due times live in Redis), and would
    # otherwise hold such a task in worker RAM, where on a quorum queue it takes a prefetch slot.
    exchange = Exchange(name, type="topic", durable=True, delivery_mode="persistent")
    queue = Queue(
        name,
        exchange,
        routing_key=name,
        durable=True,
        # Quorum: replicated (Raft) and always on disk; a message survives a broker node's loss.
        # No global QoS on quorum queues: Celery detects them (worker_detect_quorum_queues) and
        # sets a per-consumer prefetch, static at worker_concurrency x worker_prefetch_multiplier
        # (32 x 1): a worker holds no more unacked messages than it has free threads.
        queue_arguments={"x-queue-type": "quorum"},
    )
    conf = {
        # Publisher confirms are the dispatcher's (ConfirmedProducer below), not every
        # connection's: a worker's task events stay plain publishes. And no task-sent event: it
        # would go out on the dispatcher's confirming channel, whose waits Celery cannot bound for
        # events. Flower shows a task from the moment a worker receives it.
        "task_send_sent_event": False,
        "task_queues": (queue,),
        "task_default_queue": name,
        "task_default_exchange": name,
        "task_default_exchange_type": "topic",
        "task_default_routing_key": name,
        "task_default_delivery_mode": "persistent",
        "task_create_missing_queues": False,
        "worker_detect_quorum_queues": True,
        # Events (Flower) and remote control (inspect, ping) on exchanges of this deployment only.
        "event_exchange": f"{settings.key_prefix}.celeryev",
        "event_queue_prefix": f"{settings.key_prefix}.celeryev",
        "control_exchange": f"{settings.key_prefix}.control",
    }
    return Broker(url, "rabbitmq", name, conf=conf, publish={"confirm_timeout": settings.broker_confirm_timeout_s})


def declared_names(settings: Settings) -> dict[str, list[str]]:
    """The durable queues and exchanges a RabbitMQ deployment declares under its prefix (what an
    operator removes when retiring a prefix; tests delete them at teardown). Celery also declares
    auto-deleted event and pidbox queues, and the vhost-wide ``celery_delayed_*`` objects of its
    native delayed delivery, which every Celery app on the vhost shares."""
    p = settings.key_prefix
    return {
        "queues": [f"{p}.tasks"],
        "exchanges": [f"{p}.tasks", f"{p}.celeryev", f"{p}.control.pidbox", f"reply.{p}.control.pidbox"],
    }


class ConfirmedProducer:
    """The dispatcher's own connection to RabbitMQ, in publisher-confirm mode (kombu's
    ``confirm_publish``): each send returns once the broker acknowledged the message (for a quorum
    queue: a majority of its replicas wrote it). A nack, a refused declaration, a lost connection,
    or no answer within ``broker_confirm_timeout_s`` raises, and the dispatcher puts the thread
    back in the due set. Only these sends wait for confirms: the worker's task events (Flower)
    are plain publishes, so a broker that stops confirming (a memory alarm) cannot stall a
    worker's consumer loop on one. Opened on the first send; ``close`` releases it."""

    def __init__(self, app: Any) -> None:
        self._conn = app.connection_for_write(transport_options={"confirm_publish": True})
        self._producer: Any = None
        self._new = lambda: app.amqp.Producer(self._conn, auto_declare=False)

    def get(self) -> Any:
        if self._producer is None:
            self._producer = self._new()
        return self._producer

    def close(self, timeout_s: float = 2.0) -> None:
        """Close politely if the broker answers within ``timeout_s``, else drop the socket: a
        stalled broker must not hang a worker's shutdown."""
        try:
            if self._conn.connected:
                sock = getattr(self._conn.connection.transport, "sock", None)
                if sock is not None:
                    sock.settimeout(timeout_s)
            self._conn.release()
        except Exception:
            self._conn.collect()


class SendBreaker:
    """After a failed send, refuse sends for ``open_s`` without touching the broker: a dead or
    blackholed broker then costs one connection timeout per second, not one per claimed thread
    (each is put back by the dispatcher, due again in ``SEND_FAILURE_DELAY_MS``)."""

    def __init__(self, open_s: float = SEND_FAILURE_DELAY_MS / 1000) -> None:
        self.open_s = open_s
        self._until = 0.0
        self._lock = threading.Lock()

    def check(self) -> None:
        with self._lock:
            if time.monotonic() < self._until:
                raise BrokerUnavailable("a send to the broker failed under a second ago; not trying yet")

    def trip(self) -> None:
        with self._lock:
            self._until = time.monotonic() + self.open_s
