"""Webhook dead letters: one hash field per event an endpoint never accepted.

Dead-lettering writes the letter and acknowledges the stream entry in one MULTI, so an event is
either pending (it will be delivered or redelivered) or in this hash, never neither. Replaying
sends the delivery task again, then removes the letter only if it is still the one replayed (a
replay that fails at once writes a new one, which stays).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis

from schemas.webhooks import WebhookDeadLetter, dead_letter_field
from worker.features.webhooks.keys import dlq_key, group
from worker.pipeline.keys import WorkerKeys

Send = Callable[[str, str, bool], None]
"""``send(endpoint, stream_id, replay)``: sends one ``reverie.deliver_webhook`` task."""


class UnknownDeadLetter(LookupError):
    """No webhook dead letter for that endpoint and event."""


def dead_letter(client: redis.Redis, keys: WorkerKeys, letter: WebhookDeadLetter) -> None:
    pipe = client.pipeline(transaction=True)
    pipe.hset(dlq_key(keys), letter.field, letter.model_dump_json())
    pipe.xack(keys.events, group(letter.endpoint), letter.stream_id)
    pipe.execute()


def make_letter(
    endpoint: str, event_id: str, stream_id: str, attempts: int, *, status: int | None, error: str
) -> WebhookDeadLetter:
    return WebhookDeadLetter(
        endpoint=endpoint,
        event_id=event_id,
        stream_id=stream_id,
        attempts=attempts,
        status=status,
        error=error,
        at_ms=int(time.time() * 1000),
    )


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def dead_letters(client: Any, keys: WorkerKeys) -> list[WebhookDeadLetter]:
    """Every webhook dead letter, oldest first."""
    raw = client.hgetall(dlq_key(keys))
    letters = [WebhookDeadLetter.model_validate_json(v) for v in raw.values()]
    return sorted(letters, key=lambda d: (d.at_ms, d.field))


def get_letter(client: Any, keys: WorkerKeys, endpoint: str, event_id: str) -> tuple[WebhookDeadLetter, bytes]:
    raw = client.hget(dlq_key(keys), dead_letter_field(endpoint, event_id))
    if raw is None:
        raise UnknownDeadLetter(f"no webhook dead letter for endpoint {endpoint} event {event_id}")
    return WebhookDeadLetter.model_validate_json(raw), raw


def replay(client: redis.Redis, keys: WorkerKeys, endpoint: str, event_id: str, send: Send) -> WebhookDeadLetter:
    """Send the delivery again (attempts start over) and remove the letter."""
    letter, raw = get_letter(client, keys, endpoint, event_id)
    send(letter.endpoint, letter.stream_id, True)
    key, field = dlq_key(keys), letter.field
    for _ in range(10):  # WATCH fails on any change to the hash: other letters come and go too
        with client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(key)
                if pipe.hget(key, field) == raw:  # else the replay already ended in a new letter: it stays
                    pipe.multi()
                    pipe.hdel(key, field)
                    pipe.execute()
                return letter
            except redis.WatchError:
                continue
    return letter
