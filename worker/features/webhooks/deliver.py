"""One delivery attempt of one event to one endpoint: the ``reverie.deliver_webhook`` core.

The task is at-least-once: the stream entry stays pending in the endpoint's consumer group
until a 2xx (acknowledged) or a dead letter (written and acknowledged in one MULTI). At the
start of each attempt, and before a retry is scheduled, the entry is claimed afresh (``XCLAIM
JUSTID``), which resets its idle time so the relay does not send it again meanwhile; a claim
that finds the entry no longer pending means another copy already finished it, and this one
stops. Every attempt is signed afresh; ``webhook-id`` is the event id, the same on every retry
and redelivery, so receivers deduplicate on it. Logs carry ids only: never the URL, the
secret or content.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from standardwebhooks import Webhook

from schemas.events import ChangeEvent
from schemas.settings import Settings
from schemas.webhooks import DeliverArgs, WebhookEndpoint, payload
from worker.errors import InvalidTaskArguments
from worker.features.webhooks.dlq import dead_letter, make_letter
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
    raise UnknownEndpoint(f"endpoint: {name!r} is not a configured webhook endpoint")


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


def _claim(client: Any, events_key: str, endpoint: str, stream_id: str) -> bool:
    """Reset the entry's idle time; False if it is no longer pending (another copy finished)."""
    return bool(client.xclaim(events_key, group(endpoint), RETRY_CONSUMER, 0, [stream_id], justid=True))


def body_of(runtime: Any, endpoint: WebhookEndpoint, event: ChangeEvent) -> str:
    content: str | None = None
    if endpoint.include_content and event.memory_id:
        found = runtime.store.get(event.user_id, [event.memory_id])
        content = found[0].content if found else None  # gone (deleted, merged, forgotten): null
    at = datetime.fromtimestamp(event.ts_ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    data = payload(event, at, content=content, with_content=endpoint.include_content)
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def deliver(runtime: Any, args: DeliverArgs, attempt: int) -> Outcome:
    """Attempt ``attempt`` (1-based) of delivering one stream entry to one endpoint."""
    settings: Settings = runtime.settings
    endpoint = find_endpoint(settings, args.endpoint)
    r, events_key = runtime.redis, runtime.coordinator.keys.events
    ids = {"endpoint": endpoint.name, "stream_id": args.stream_id, "attempt": attempt}
    entries = r.xrange(events_key, args.stream_id, args.stream_id)
    if not entries:  # trimmed (the consumer fell behind the cap): it can never be sent
        dead_letter(
            r,
            runtime.coordinator.keys,
            make_letter(endpoint.name, "", args.stream_id, attempt, status=None, error="trimmed"),
        )
        log.warning("webhook event trimmed before delivery, dead-lettered", **ids)
        return Outcome("dead_lettered", attempt, error="trimmed")
    event = decode_entries(entries)[0]
    ids["event_id"] = event.event_id
    if not args.replay and not _claim(r, events_key, endpoint.name, args.stream_id):
        return Outcome("already_done", attempt)
    if not endpoint.wants(event.op):  # the filter changed since the relay read it
        r.xack(events_key, group(endpoint.name), args.stream_id)
        return Outcome("filtered", attempt)
    body = body_of(runtime, endpoint, event)
    result = post(endpoint, sign(endpoint, event.event_id, body, datetime.now(UTC)), body, settings.webhook_timeout_s)
    if result.ok:
        r.xack(events_key, group(endpoint.name), args.stream_id)
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
            endpoint.name, event.event_id, args.stream_id, attempt, status=result.status, error=result.error
        )
        dead_letter(r, runtime.coordinator.keys, letter)
        log.warning("webhook dead-lettered", error=result.error, **ids)
        return Outcome("dead_lettered", attempt, result.status, result.error)
    if not args.replay:
        _claim(r, events_key, endpoint.name, args.stream_id)
    log.info("webhook attempt failed, will retry", error=result.error, retry_in_s=round(delay, 3), **ids)
    return Outcome("retry", attempt, result.status, result.error, delay)
