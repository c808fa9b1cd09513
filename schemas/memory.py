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
    source: MemorySource = Field(default_factory=MemorySource)
    score: float | None = None
