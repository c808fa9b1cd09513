"""Webhooks: endpoint configuration, the delivery task's arguments, the payload and the dead letter.

An endpoint receives the change events (``schemas.events``) it subscribes to, one signed POST
each, the Standard Webhooks way (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``).
The payload holds ids only unless the endpoint opts in to memory content (``include_content``).
The secret is a ``SecretStr`` and errors hide their input, so neither the secret nor a URL
reaches a repr, a log line or an error message.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from schemas.events import ChangeEvent, EventOp

EventType = Literal["memory.created", "memory.updated", "memory.deleted", "memory.merged", "user.forgotten"]
EVENT_TYPES: dict[EventOp, EventType] = {
    "insert": "memory.created",
    "update": "memory.updated",
    "delete": "memory.deleted",
    "merge": "memory.merged",
    "forget": "user.forgotten",
}
ALL_EVENT_TYPES: tuple[EventType, ...] = tuple(EVENT_TYPES.values())
CONTENT_OPS = frozenset({"insert", "update"})
"""Ops whose memory still exists after the change: the only ones that can carry content."""
ENDPOINT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
STREAM_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_{}:./-]{0,200}$")
"""A key of ``WorkerKeys.event_streams()``: the prefix, a shard's hash tag (``{3/16.43}``) when sharded."""
MAX_URL_LEN = 2048
SECRET_PREFIX = "whsec_"
SECRET_BYTES = (24, 64)
"""Standard Webhooks: a secret is 24 to 64 random bytes, base64 after ``whsec_``."""


def check_endpoint_name(value: str) -> str:
    if not ENDPOINT_NAME.fullmatch(value):
        raise ValueError("must be 1-63 letters, digits, '_' or '-', starting with a letter or digit")
    return value


def check_url(value: str) -> str:
    """http:// or https:// to any host (plain http is allowed, for receivers on a private
    network); no credentials, no fragment, no whitespace. Messages never repeat the URL."""
    if len(value) > MAX_URL_LEN:
        raise ValueError(f"must be at most {MAX_URL_LEN} characters")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("must not contain whitespace or control characters")
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        raise ValueError("is not a valid URL (bad host or port)") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("must start with http:// or https:// (plain http is allowed, to any host)")
    if not host:
        raise ValueError("needs a host, as in https://host/path")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry credentials (user:password@): receivers verify the signature instead")
    if parts.fragment or value.endswith("#"):
        raise ValueError("must not have a #fragment")
    return value


def check_secret(raw: str) -> None:
    """``whsec_`` + base64 of 24-64 bytes; messages never repeat the secret."""
    from standardwebhooks import Webhook

    if not raw.startswith(SECRET_PREFIX):
        raise ValueError(f"must start with {SECRET_PREFIX!r}, then the base64 of 24-64 random bytes")
    try:
        key = base64.b64decode(raw.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"must be {SECRET_PREFIX!r} followed by valid base64") from None
    if not SECRET_BYTES[0] <= len(key) <= SECRET_BYTES[1]:
        raise ValueError(f"must decode to 24-64 bytes, got {len(key)}")
    Webhook(raw)  # the library reads it the same way (it raises on an empty key only)


class WebhookEndpoint(BaseModel):
    """One receiver: where, how it is signed, which events, and whether content goes along."""

    # hide_input_in_errors: a refused URL or secret is not echoed into an error (Settings, which
    # holds the endpoints, hides its inputs too)
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    name: str = Field(description="Id-like, unique: names the consumer group and the dead letters.")
    url: str = Field(description="http:// or https:// URL, any host; no user:password@, no #fragment.")
    secret: SecretStr = Field(description="Signing secret, whsec_<base64 of 24-64 bytes>.")
    events: tuple[EventType, ...] = Field(default=ALL_EVENT_TYPES, description="Event types to send (default: all).")
    include_content: bool = Field(default=False, description="Add the memory's current content (default: ids only).")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_endpoint_name(value)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_url(value)

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        check_secret(value.get_secret_value())
        return value

    @field_validator("events")
    @classmethod
    def _events(cls, value: tuple[EventType, ...]) -> tuple[EventType, ...]:
        if not value:
            raise ValueError("must name at least one event type (omit it for all)")
        return tuple(dict.fromkeys(value))

    def wants(self, op: str) -> bool:
        """Does this endpoint subscribe to change events of ``op``?"""
        kind = EVENT_TYPES.get(op)  # type: ignore[call-overload]
        return kind is not None and kind in self.events

    def where(self) -> str:
        """``scheme://host[:port]`` only, for operators' tables (a path or query may hold a token)."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"


class DeliverArgs(BaseModel):
    """The delivery task's arguments: ids only (untrusted: validated, extra keys refused)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    endpoint: str
    stream: str
    """The events stream the entry is in (one of ``WorkerKeys.event_streams()``)."""
    stream_id: str
    replay: bool = False
    """Sent by ``reverie dlq replay-webhook``: the entry was acknowledged when it was
    dead-lettered; the letter stays until this delivery succeeds."""

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        return check_endpoint_name(value)

    @field_validator("stream")
    @classmethod
    def _stream(cls, value: str) -> str:
        if not STREAM_KEY.fullmatch(value):
            raise ValueError("must be an events stream key")
        return value

    @field_validator("stream_id")
    @classmethod
    def _stream_id(cls, value: str) -> str:
        if not STREAM_ID.fullmatch(value):
            raise ValueError("must be a stream entry id <ms>-<seq>")
        return value


class WebhookDeadLetter(BaseModel):
    """An event an endpoint never accepted: a 4xx other than 408/425/429, attempts used up, or
    an entry trimmed from the stream before it could be sent."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    v: int = 1
    endpoint: str
    event_id: str
    """Empty when the entry was trimmed from the stream before it could be read."""
    user_id: str = ""
    """Whose change it was (empty when trimmed): ``forget`` removes a user's letters by it."""
    stream: str
    stream_id: str
    attempts: int
    status: int | None = None
    """The receiver's last HTTP status, if it answered."""
    error: str
    """``HTTP 410``, an exception class name (``ConnectTimeout``), ``trimmed`` or ``undecodable``."""
    at_ms: int
    replayed_ms: int = 0
    """When ``replay-webhook`` last sent it again (0: never); the letter is removed when that
    delivery succeeds, and replaced if it fails again."""

    @property
    def ref(self) -> str:
        """How operators name it: the event id, else ``<stream id>@<stream>``."""
        return self.event_id or f"{self.stream_id}@{self.stream}"

    @property
    def field(self) -> str:
        return dead_letter_field(self.endpoint, self.ref)


def dead_letter_field(endpoint: str, ref: str) -> str:
    """The hash field of a dead letter: ``<endpoint>|<event id>`` (neither contains ``|``)."""
    return f"{endpoint}|{ref}"


def payload(
    event: ChangeEvent, timestamp: str, *, content: str | None = None, with_content: bool = False
) -> dict[str, Any]:
    """The JSON body of one delivery (pure): type, timestamp and the event's ids; ``content``
    (``None`` when the memory is gone) only for endpoints that opted in."""
    data: dict[str, Any] = {
        "event_id": event.event_id,
        "user_id": event.user_id,
        "memory_id": event.memory_id,
        "op": event.op,
        "kind": event.kind,
        "thread_id": event.thread_id,
        "generation": event.generation,
        "into": event.into,
        "ts_ms": event.ts_ms,
    }
    if with_content:
        data["content"] = content
    return {"type": EVENT_TYPES[event.op], "timestamp": timestamp, "data": data}
