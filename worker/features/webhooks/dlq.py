"""Webhook dead letters: one hash field per event an endpoint never accepted.

Dead-lettering writes the letter and acknowledges the stream entry in one MULTI, so an event is
either pending in the endpoint's consumer group (it will be delivered or sent again) or in this
hash, never neither. A replay marks the letter (``replayed_ms``) and sends the delivery again;
the letter is removed only when that delivery succeeds, and replaced if it fails again, so a
worker that dies during a replay loses nothing either (the operator replays again).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from producer.text import as_text
from schemas.webhooks import DeliverArgs, WebhookDeadLetter, dead_letter_field
from worker.features.webhooks.keys import dlq_key, dlq_keys, group, user_dlq_key
from worker.pipeline.keys import WorkerKeys

SCAN_COUNT = 1000


class UnknownDeadLetter(LookupError):
    """No webhook dead letter for that endpoint and event."""


class NotReplayable(ValueError):
    """The letter's stream entry is gone (trimmed by the events cap): there is nothing to send."""


def dead_letter(client: Any, keys: WorkerKeys, letter: WebhookDeadLetter) -> None:
    """Write (or replace) the letter and acknowledge its entry, atomically."""
    pipe = client.pipeline(transaction=True)
    pipe.hset(dlq_key(letter.stream), letter.field, letter.model_dump_json())
    pipe.xack(letter.stream, group(letter.endpoint), letter.stream_id)
    pipe.execute()


def make_letter(
    args: DeliverArgs, attempts: int, *, event_id: str = "", user_id: str = "", status: int | None, error: str
) -> WebhookDeadLetter:
    return WebhookDeadLetter(
        endpoint=args.endpoint,
        event_id=event_id,
        user_id=user_id,
        stream=args.stream,
        stream_id=args.stream_id,
        attempts=attempts,
        status=status,
        error=error,
        at_ms=int(time.time() * 1000),
    )


def dead_letters(client: Any, keys: WorkerKeys, endpoint: str | None = None) -> list[WebhookDeadLetter]:
    """Every webhook dead letter (of ``endpoint``), oldest first."""
    pipe = client.pipeline(transaction=False)
    for key in dlq_keys(keys):
        pipe.hgetall(key)
    letters = [WebhookDeadLetter.model_validate_json(v) for raw in pipe.execute() for v in raw.values()]
    return sorted((d for d in letters if endpoint in (None, d.endpoint)), key=lambda d: (d.at_ms, d.field))


def get_letter(client: Any, keys: WorkerKeys, endpoint: str, ref: str) -> WebhookDeadLetter:
    found = [raw for raw in _each_hash(client, keys, "hget", dead_letter_field(endpoint, ref)) if raw is not None]
    if not found:
        raise UnknownDeadLetter(f"no webhook dead letter for endpoint {endpoint} event {ref}")
    return WebhookDeadLetter.model_validate_json(found[0])


def _each_hash(client: Any, keys: WorkerKeys, command: str, field: str) -> list[Any]:
    """``command`` (hget, hdel) of ``field`` on every dead-letter hash, in one round trip (the
    letter's hash is not known from its reference alone: a stream id names no user)."""
    pipe = client.pipeline(transaction=False)
    for key in dlq_keys(keys):
        getattr(pipe, command)(key, field)
    return list(pipe.execute())


def replay(client: Any, keys: WorkerKeys, letter: WebhookDeadLetter, send: Callable[[DeliverArgs], None]) -> None:
    """Send the delivery again (its attempts start over); the letter stays until it succeeds."""
    if not letter.event_id or not client.xrange(letter.stream, letter.stream_id, letter.stream_id):
        raise NotReplayable(
            f"event {letter.ref} is no longer in {letter.stream} (trimmed by REVERIE_EVENTS_MAX_LEN): "
            "nothing to send; drop the letter"
        )
    marked = letter.model_copy(update={"replayed_ms": int(time.time() * 1000)})
    client.hset(dlq_key(letter.stream), letter.field, marked.model_dump_json())
    send(DeliverArgs(endpoint=letter.endpoint, stream=letter.stream, stream_id=letter.stream_id, replay=True))


def replayed(client: Any, keys: WorkerKeys, args: DeliverArgs, ref: str) -> None:
    """A replayed delivery succeeded: its letter goes."""
    client.hdel(dlq_key(args.stream), dead_letter_field(args.endpoint, ref))


def drop(client: Any, keys: WorkerKeys, endpoint: str, ref: str) -> bool:
    return any(_each_hash(client, keys, "hdel", dead_letter_field(endpoint, ref)))


def _fields_of_user(client: Any, key: str, user_id: str) -> Iterator[str]:
    for field, raw in client.hscan_iter(key, match=f"*|{user_id}:*", count=SCAN_COUNT):
        if WebhookDeadLetter.model_validate_json(raw).user_id == user_id:
            yield as_text(field)


def letters_of_user(client: Any, keys: WorkerKeys, user_id: str) -> tuple[str, list[str]]:
    """The dead-letter hash and the fields of ``user_id``'s letters (for ``forget``). Event ids
    start with ``<user>:`` and ids hold no glob characters, so ``MATCH`` narrows the scan; the
    letter's ``user_id`` decides."""
    key = user_dlq_key(keys, user_id)
    return key, list(_fields_of_user(client, key, user_id))
