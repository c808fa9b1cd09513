"""One delivery attempt of one event to one endpoint: the ``reverie.deliver_webhook`` core.

At least once: the stream entry stays pending in the endpoint's consumer group until a 2xx
(acknowledged) or a dead letter (written and acknowledged in one MULTI). At the start of each
attempt, and before a retry is scheduled, the entry is claimed afresh (``XCLAIM JUSTID``), which
resets its idle time so the relay does not send it again meanwhile; a claim that finds the entry
no longer pending means another copy already finished it, and this one stops. Every attempt is
signed afresh; ``webhook-id`` is the event id, the same on every retry and redelivery, so
receivers deduplicate on it. Logs carry ids only: never the URL, the secret or content.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from standardwebhooks import Webhook

from producer.errors import StoreUnavailable
from schemas.errors import DecodeError
from schemas.events import ChangeEvent
from schemas.settings import Settings
from schemas.webhooks import CONTENT_OPS, DeliverArgs, WebhookEndpoint, payload
from worker.errors import InvalidTaskArguments
from worker.features.webhooks.dlq import dead_letter, make_letter, replayed
from worker.features.webhooks.keys import RETRY_CONSUMER, group
from worker.features.webhooks.policy import Attempt, next_delay_s
from worker.memory.events import decode_entries
from worker.observability.logs import get_logger

log = get_logger("reverie.webhooks")
Result = Literal["delivered", "retry", "dead_lettered", "already_done", "filtered"]
USER_AGENT = "reverie-webhooks/1"


@dataclass(frozen=True)
class Outcome:
    result: Result
    attempt: int
    status: int | None = None
    error: str = ""
    retry_in_s: float | None = None

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, "")}


class UnknownEndpoint(InvalidTaskArguments):
    """The task names an endpoint that is not configured (REVERIE_WEBHOOKS) in this worker."""


class UnknownStream(InvalidTaskArguments):
    """The task names a stream that is not one of this deployment's events streams."""


_client_lock = threading.Lock()
_client: httpx.Client | None = None


def http_client() -> httpx.Client:
    """One pooled client per process (thread-safe), made on first use (after a fork)."""
    global _client
    with _client_lock:
        if _client is None:
            _client = httpx.Client(follow_redirects=False, headers={"user-agent": USER_AGENT})
        return _client


def find_endpoint(settings: Settings, name: str) -> WebhookEndpoint:
    for endpoint in settings.webhooks:
        if endpoint.name == name:
            return endpoint
    raise UnknownEndpoint(f"endpoint: {name!r} is not a configured webhook endpoint (REVERIE_WEBHOOKS)")


def check_stream(streams: list[str], stream: str) -> str:
    if stream not in streams:
        raise UnknownStream(f"stream: {stream!r} is not an events stream of this key prefix")
    return stream


def sign(endpoint: WebhookEndpoint, msg_id: str, body: str, now: datetime) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt (signed with ``standardwebhooks``)."""
    signature = Webhook(endpoint.secret.get_secret_value()).sign(msg_id, now, body)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


def post(endpoint: WebhookEndpoint, headers: dict[str, str], body: str, timeout_s: float) -> Attempt:
    try:
        response = http_client().post(endpoint.url, content=body.encode(), headers=headers, timeout=timeout_s)
    except httpx.HTTPError as e:  # connection refused, timeouts, protocol errors: retried
        return Attempt(None, type(e).__name__)
    return Attempt(response.status_code, f"HTTP {response.status_code}", response.headers.get("retry-after"))


def body_of(runtime: Any, endpoint: WebhookEndpoint, event: ChangeEvent) -> str:
    """The payload: ids; plus, for endpoints that opted in, the memory's content as it is now
    (``null`` when it is gone: deleted, merged, forgotten)."""
    content: str | None = None
    if endpoint.include_content and event.op in CONTENT_OPS and event.memory_id:
        found = runtime.store.get(event.user_id, [event.memory_id])
        content = found[0].content if found else None
    at = datetime.fromtimestamp(event.ts_ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    data = payload(event, at, content=content, with_content=endpoint.include_content)
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def _claim(client: Any, args: DeliverArgs) -> bool:
    """Reset the entry's idle time; False if it is no longer pending (another copy finished)."""
    return bool(client.xclaim(args.stream, group(args.endpoint), RETRY_CONSUMER, 0, [args.stream_id], justid=True))


def _pending(client: Any, args: DeliverArgs) -> bool:
    found = client.xpending_range(args.stream, group(args.endpoint), args.stream_id, args.stream_id, 1)
    return bool(found)


def _load(runtime: Any, args: DeliverArgs, attempt: int, ids: dict[str, Any]) -> ChangeEvent | Outcome:
    """The entry's event, or how the delivery ends without a POST."""
    r, keys = runtime.redis, runtime.coordinator.keys
    entries = r.xrange(args.stream, args.stream_id, args.stream_id)
    error = ""
    if not entries:
        if args.replay:  # trimmed since the replay was asked for: its letter stays as it is
            log.warning("replayed webhook event is gone from the stream", **ids)
            return Outcome("dead_lettered", attempt, error="trimmed")
        if not _pending(r, args):
            return Outcome("already_done", attempt)
        error = "trimmed"  # by the events cap, before it could be sent: it never can be
    else:
        try:
            return decode_entries(entries)[0]
        except DecodeError:
            if not args.replay and not _pending(r, args):
                return Outcome("already_done", attempt)
            error = "undecodable"
    dead_letter(r, keys, make_letter(args, attempt, status=None, error=error))
    log.warning("webhook event cannot be sent, dead-lettered", error=error, **ids)
    return Outcome("dead_lettered", attempt, error=error)


def deliver(runtime: Any, args: DeliverArgs, attempt: int) -> Outcome:
    """Attempt ``attempt`` (1-based) of delivering one stream entry to one endpoint."""
    settings: Settings = runtime.settings
    endpoint = find_endpoint(settings, args.endpoint)
    r, keys = runtime.redis, runtime.coordinator.keys
    check_stream(keys.event_streams(), args.stream)
    ids: dict[str, Any] = {"endpoint": endpoint.name, "stream_id": args.stream_id, "attempt": attempt}
    if args.replay:
        ids["replay"] = True
    event = _load(runtime, args, attempt, ids)
    if isinstance(event, Outcome):
        return event
    ids["event_id"] = event.event_id
    if not args.replay:
        if not _claim(r, args):
            return Outcome("already_done", attempt)
        if not endpoint.wants(event.op):  # the relay's filter was another configuration's
            r.xack(args.stream, group(endpoint.name), args.stream_id)
            return Outcome("filtered", attempt)
    try:
        body = body_of(runtime, endpoint, event)
    except StoreUnavailable:  # the content could not be read: an attempt that failed, retried
        result = Attempt(None, "StoreUnavailable")
    else:
        headers = sign(endpoint, event.event_id, body, datetime.now(UTC))
        result = post(endpoint, headers, body, settings.webhook_timeout_s)
    if result.ok:
        if args.replay:
            replayed(r, keys, args, event.event_id)
        else:
            r.xack(args.stream, group(endpoint.name), args.stream_id)
        log.info("webhook delivered", status=result.status, **ids)
        return Outcome("delivered", attempt, result.status)
    delay = next_delay_s(
        result,
        attempt,
        base_s=settings.webhook_backoff_s,
        cap_s=settings.webhook_backoff_max_s,
        max_attempts=settings.webhook_max_attempts,
    )
    if delay is None:
        letter = make_letter(
            args, attempt, event_id=event.event_id, user_id=event.user_id, status=result.status, error=result.error
        )
        dead_letter(r, keys, letter)
        log.warning("webhook dead-lettered", error=result.error, **ids)
        return Outcome("dead_lettered", attempt, result.status, result.error)
    if not args.replay:
        _claim(r, args)
    log.info("webhook attempt failed, will retry", error=result.error, retry_in_s=round(delay, 3), **ids)
    return Outcome("retry", attempt, result.status, result.error, delay)
