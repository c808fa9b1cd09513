"""Webhooks: endpoint configuration, the delivery task's arguments, the payload and the dead letter.

An endpoint receives the change events (``schemas.events``) it subscribes to, one signed POST
each, the Standard Webhooks way (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``).
The payload holds ids only unless the endpoint opts in to memory content (``include_content``).
The secret is a ``SecretStr``: never in a repr, a log line or an error message.
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
ENDPOINT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
SECRET_PREFIX = "whsec_"
SECRET_BYTES = (24, 64)
"""Standard Webhooks: a secret is 24 to 64 random bytes, base64 after ``whsec_``."""


def check_endpoint_name(value: str) -> str:
    if not ENDPOINT_NAME.fullmatch(value):
        raise ValueError("must be 1-63 letters, digits, '_' or '-', starting with a letter or digit")
    return value


class WebhookEndpoint(BaseModel):
    """One receiver: where, how it is signed, which events, and whether content goes along."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="Id-like, unique: names the consumer group and the dead letters.")
    url: str = Field(description="http:// or https:// URL the events are POSTed to.")
    secret: SecretStr = Field(description="Signing secret, whsec_<base64 of 24-64 bytes>.")
    events: tuple[EventType, ...] = Field(default=ALL_EVENT_TYPES, min_length=1)
    include_content: bool = Field(default=False, description="Add the memory's current content (default: ids only).")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_endpoint_name(value)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        try:
            parts = urlsplit(value)
            host = parts.hostname
            parts.port  # noqa: B018  (raises ValueError on a bad port)
        except ValueError:
            raise ValueError("is not a valid URL") from None
        if parts.scheme not in ("http", "https"):
            raise ValueError("must start with http:// or https://")
        if not host:
            raise ValueError("needs a host")
        if parts.username is not None or parts.password is not None:
            raise ValueError("must not carry credentials (user:password@): receivers verify the signature instead")
        if parts.fragment:
            raise ValueError("must not have a #fragment")
        return value

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        from standardwebhooks import Webhook

        raw = value.get_secret_value()
        if not raw.startswith(SECRET_PREFIX):
            raise ValueError(f"must start with {SECRET_PREFIX!r} (then base64 of 24-64 random bytes)")
        try:
            key = base64.b64decode(raw.removeprefix(SECRET_PREFIX), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"must be {SECRET_PREFIX!r} followed by valid base64") from None
        if not SECRET_BYTES[0] <= len(key) <= SECRET_BYTES[1]:
            raise ValueError(f"must decode to 24-64 bytes, got {len(key)}")
        try:
            Webhook(raw)
        except Exception as e:  # the library's own check has the last word
            raise ValueError(f"is refused by standardwebhooks ({type(e).__name__})") from None
        return value

    @field_validator("events")
    @classmethod
    def _events(cls, value: tuple[EventType, ...]) -> tuple[EventType, ...]:
        return tuple(dict.fromkeys(value))

    def wants(self, op: str) -> bool:
        """Does this endpoint subscribe to change events of ``op``?"""
        kind = EVENT_TYPES.get(op)  # type: ignore[call-overload]
        return kind is not None and kind in self.events


class DeliverArgs(BaseModel):
    """The delivery task's arguments: ids only (untrusted: validated, extra keys refused)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    endpoint: str
    stream_id: str
    replay: bool = False
    """Sent by ``reverie dlq replay-webhook``: the entry was already acknowledged."""

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        return check_endpoint_name(value)

    @field_validator("stream_id")
    @classmethod
    def _stream_id(cls, value: str) -> str:
        if not STREAM_ID.fullmatch(value):
            raise ValueError("must be a stream entry id <ms>-<seq>")
        return value


class WebhookDeadLetter(BaseModel):
    """An event an endpoint never accepted: a 4xx other than 429, attempts used up, or trimmed."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    v: int = 1
    endpoint: str
    event_id: str
    """Empty when the entry was trimmed from the stream before it could be read."""
    stream_id: str
    attempts: int
    status: int | None = None
    """The receiver's last HTTP status, if it answered."""
    error: str
    """``HTTP 410``, an exception class name (``ConnectTimeout``), or ``trimmed``."""
    at_ms: int

    @property
    def field(self) -> str:
        return dead_letter_field(self.endpoint, self.event_id or self.stream_id)


def dead_letter_field(endpoint: str, event_id: str) -> str:
    """The hash field of a dead letter: ``<endpoint>|<event id>`` (neither contains ``|``)."""
    return f"{endpoint}|{event_id}"


def payload(
    event: ChangeEvent, timestamp: str, *, content: str | None = None, with_content: bool = False
) -> dict[str, Any]:
    """The JSON body of one delivery (pure): type, timestamp and the event's ids; ``content``
    (``None`` when the memory is gone) only for endpoints that opted in."""
    data: dict[str, Any] = {
        "event_id": event.event_id,
        "user_id": event.user_id,
        "memory_id": event.memory_id,
        "kind": event.kind,
        "thread_id": event.thread_id,
        "generation": event.generation,
        "into": event.into,
        "ts_ms": event.ts_ms,
    }
    if with_content:
        data["content"] = content
    return {"type": EVENT_TYPES[event.op], "timestamp": timestamp, "data": data}
