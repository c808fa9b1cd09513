"""Memory records as stored in Qdrant, and the built-in memory kinds."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class MemoryKind(StrEnum):
    """LangMem's three kinds. Custom schemas are stored as ``semantic`` with their schema name."""

    SEMANTIC = "semantic"
    EPISODE = "episode"
    PROCEDURAL = "procedural"


class Memory(BaseModel):
    """The default schema: one free-text fact or preference about the user."""

    content: str = Field(
        min_length=1,
        max_length=2000,
        description="One self-contained fact, preference or piece of context about the user.",
    )


class Episode(BaseModel):
    """What happened in this conversation and how it ended (episodic memory)."""

    summary: str = Field(min_length=1, max_length=2000, description="What happened, in one or two sentences.")
    outcome: str = Field(default="", max_length=500, description="How it ended: resolved, open question, decision.")


class MemorySource(BaseModel):
    """Where a memory came from: thread, reflection generation and the turn ids it used."""

    model_config = ConfigDict(frozen=True)

    thread_id: str | None = None
    generation: int | None = None
    turn_ids: list[str] = Field(default_factory=list)
    turn_count: int = 0


class MemoryRecord(BaseModel):
    """A memory as read back from the store."""

    model_config = ConfigDict(frozen=True)

    id: str
    user_id: str
    namespace: str
    kind: str = MemoryKind.SEMANTIC
    schema_name: str = "Memory"
    content: str
    data: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime
    version: int = 1
    ns: list[str] = Field(default_factory=list)
    source: MemorySource = Field(default_factory=MemorySource)
    score: float | None = None
    pending: bool = False
    """A buffered turn not yet reflected (``search(include_pending=True)``), not a memory."""


class HistoryEntry(BaseModel):
    """One audit record of a memory change (insert, update, delete, merge, expire)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    v: int = 1
    memory_id: str
    op: str
    old_content: str | None = None
    new_content: str | None = None
    version: int | None = None
    reflection_id: str | None = None
    """``thread_id:g<generation>`` for reflections, ``tool:…`` or ``consolidate:…`` otherwise."""
    thread_id: str | None = None
    at_ms: int
