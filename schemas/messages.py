"""Conversation turns in OpenAI chat format, as chat servers hand them to Reverie."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.ids import SafeId

Role = Literal["user", "assistant", "system", "tool"]
MAX_CONTENT_BYTES = 32 * 1024
MAX_MESSAGES_PER_SUBMIT = 200
MAX_SUBMIT_BYTES = 512 * 1024
MAX_DELAY_S = 7 * 24 * 3600.0


def _check_text(value: object) -> str:
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"is not valid UTF-8 (byte {e.start})") from e
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {type(value).__name__}")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as e:
        raise ValueError(f"is not valid UTF-8 (lone surrogate at position {e.start})") from e
    if size > MAX_CONTENT_BYTES:
        raise ValueError(f"is {size} bytes, over the {MAX_CONTENT_BYTES}-byte limit")
    return value


class Message(BaseModel):
    """One chat turn. ``id`` makes re-submission idempotent (chat servers retry)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Role
    content: str
    name: str | None = Field(default=None, max_length=64)
    id: SafeId | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _content(cls, value: object) -> str:
        text = _check_text(value)
        if not text.strip():
            raise ValueError("must not be empty or whitespace only")
        return text

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: object) -> object:
        return None if value is None else _check_text(value)


def check_delay(value: float | None, field: str) -> float | None:
    """Validate a delay in seconds: finite, non-negative, at most a week."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{field} must be a number of seconds")
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{field} must be finite")
    if value < 0:
        raise ValueError(f"{field} must not be negative")
    if value > MAX_DELAY_S:
        raise ValueError(f"{field} must be at most {MAX_DELAY_S:.0f} seconds")
    return float(value)


class SubmitRequest(BaseModel):
    """What a chat server submits: new turns of one (user, thread)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: SafeId
    thread_id: SafeId
    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES_PER_SUBMIT)
    after_seconds: float | None = None
    max_wait: float | None = None
    profile: SafeId = "default"

    @field_validator("after_seconds", "max_wait", mode="before")
    @classmethod
    def _delays(cls, value: object, info: object) -> float | None:
        return check_delay(value, getattr(info, "field_name", "delay"))  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _total_size(self) -> SubmitRequest:
        total = sum(len(m.content.encode("utf-8")) for m in self.messages)
        if total > MAX_SUBMIT_BYTES:
            raise ValueError(f"messages total {total} bytes, over the {MAX_SUBMIT_BYTES}-byte limit")
        if self.max_wait is not None and self.max_wait == 0:
            raise ValueError("max_wait must be greater than 0")
        return self


class BufferedTurn(BaseModel):
    """A turn as stored in the thread buffer (JSON in a Redis list)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    v: int = 1
    id: str | None = None
    role: Role
    content: str
    name: str | None = None
    ts_ms: int
    thread: str | None = None
    """Set in memory only, when a joint reflection merges several threads' turns (never stored):
    the extraction prompt names each turn's chat."""


class SubmitReceipt(BaseModel):
    """What ``submit`` returns: enough to log, never the text."""

    model_config = ConfigDict(frozen=True)

    status: Literal["accepted", "duplicate", "dropped", "spooled"]
    accepted: int
    duplicates: int
    generation: int
    due_at_ms: int | None
    replicas: int | None = None
    """Replicas that acknowledged the write within ``replica_wait_ms`` (``WAIT 1``); None when the
    producer does not wait. 0: accepted by the primary only, lost if it dies before replicating."""

    @property
    def due_at_s(self) -> float | None:
        return None if self.due_at_ms is None else self.due_at_ms / 1000.0
