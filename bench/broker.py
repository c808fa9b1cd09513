"""Figure 1, optional rows: what one dispatcher send costs on RabbitMQ (quorum queue, publisher
confirms: the send returns once the broker has the message) next to the Redis broker, same run,
same sender (``worker.app.sender``). Skipped, with a note, when RabbitMQ is not reachable
(``RABBITMQ_URL``, else guest/guest on 127.0.0.1:5672)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable
from typing import Any

from pydantic import SecretStr

from bench.env import BenchEnv
from bench.report import Section, percentile

ROUNDS = 10
DEFAULT_RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"


def _reachable(url: str) -> bool:
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1)
        return True
    except Exception:
        return False


def _sender(
    env: BenchEnv, prefix: str, broker_url: str | None, *, confirms: bool = True
) -> tuple[Callable[[int], Any], tuple[Any, Any]]:
    from schemas.settings import Settings
    from worker.app import create_app, sender
    from worker.pipeline.coordinator import Claimed

    settings = Settings(
        redis_url=SecretStr(env.redis_url),
        broker_url=SecretStr(broker_url) if broker_url else None,
        key_prefix=prefix,
        dispatcher_in_worker=False,
    )
    app = create_app(settings)
    if not confirms:  # the same queue and messages through the app's plain producer pool
        app.reverie_broker = dataclasses.replace(app.reverie_broker, publish={})
    send = sender(app)
    if not confirms and send.confirmed is not None:
        send.confirmed.close()
        send.confirmed = None

    def one(i: int) -> Any:
        # No worker consumes this prefix's queue: the message just lands in the broker.
        return send(Claimed(user_id=f"user{i % 500}", thread_id=f"t{i % 3}", generation=i + 1, lag_ms=0))

    return one, (app, send)


def _delete_rabbitmq_names(url: str, prefix: str) -> None:
    from kombu import Connection

    from schemas.settings import Settings
    from worker.broker import declared_names

    names = declared_names(Settings(key_prefix=prefix))
    with Connection(url, connect_timeout=2) as conn:
        for queue in names["queues"]:
            with contextlib.suppress(Exception):
                conn.default_channel.queue_delete(queue)
        for exchange in names["exchanges"]:
            with contextlib.suppress(Exception):
                conn.default_channel.exchange_delete(exchange)


def dispatch_send(env: BenchEnv, section: Section, calls: int) -> None:
    """Adds the rows to ``section`` (figure 1)."""
    url = os.environ.get("RABBITMQ_URL") or DEFAULT_RABBITMQ_URL
    if not _reachable(url):
        section.notes.append("RabbitMQ not reachable (RABBITMQ_URL, else 127.0.0.1:5672): no broker send rows.")
        return
    n = max(ROUNDS * 5, min(calls // 5, 1000))
    per_round = n // ROUNDS
    rabbit_prefix = env.sub_prefix("send-amqp")
    senders = {
        "redis": _sender(env, env.sub_prefix("send-redis"), None),
        "rabbitmq": _sender(env, rabbit_prefix, url),
        "rabbitmq_no_confirms": _sender(env, rabbit_prefix, url, confirms=False),
    }
    lat: dict[str, list[float]] = {label: [] for label in senders}
    clock = time.perf_counter_ns
    try:
        for send, _ in senders.values():  # warm-up: connections, declarations, first publish
            for i in range(50):
                send(i)
        for r in range(ROUNDS):  # interleaved, so drift hits all alike
            for label, (send, _) in senders.items():
                for i in range(r * per_round, (r + 1) * per_round):
                    t0 = clock()
                    send(i)
                    lat[label].append((clock() - t0) / 1000)
    finally:
        for _, (app, send) in senders.values():
            send.close()
            app.close()
        _delete_rabbitmq_names(url, rabbit_prefix)
    for q in (50, 99):
        section.add(
            "1",
            f"dispatch send p{q}, RabbitMQ (quorum queue, publisher confirms)",
            percentile(lat["rabbitmq"], q),
            "µs",
            f"dispatch send p{q}, Redis broker",
            percentile(lat["redis"], q),
        )
    section.add(
        "1",
        "dispatch send p50, RabbitMQ (quorum queue, publisher confirms)",
        percentile(lat["rabbitmq"], 50),
        "µs",
        "same queue without confirms p50",
        percentile(lat["rabbitmq_no_confirms"], 50),
    )
    section.counters["dispatch_sends_per_broker"] = len(lat["rabbitmq"])
    section.notes.append(
        f"Dispatch send: worker.app.sender (Celery send_task of one reflect task, ids only; on Redis plus its "
        f"task-sent event, which RabbitMQ deployments turn off), {len(lat['rabbitmq'])} per broker in {ROUNDS} "
        "interleaved rounds. On RabbitMQ each send waits for the broker's confirm (the message is in the quorum "
        "queue's log); on Redis it is a list push."
    )
