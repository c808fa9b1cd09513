"""Reflection wire formats: task arguments, planned memory operations, commit journals, results,
dead letters."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.events import ChangeEvent
from schemas.ids import SafeId
from schemas.memory import HistoryEntry, MemorySource

WIRE_VERSION = 1


class ReflectArgs(BaseModel):
    """Arguments of the ``reverie.reflect`` Celery task: ids only, never text."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: SafeId
    thread_id: SafeId
    generation: int = Field(ge=1)


class MemoryOp(BaseModel):
    """One planned write. Ids are final Qdrant point ids, decided before anything is written,
    so replaying the op after a crash writes the same point again instead of a duplicate."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    op: Literal["insert", "update", "delete"]
    id: str
    kind: str = "semantic"
    schema_name: str = "Memory"
    content: str = ""
    data: dict[str, Any] = Field(default_factory=dict)
    vector: list[float] = Field(default_factory=list)
    vector_model: str = ""
    """The embedder (``Embedder.name``) that made ``vector``: a write into a collection of another
    model (a re-embed switched it meanwhile) embeds ``content`` again instead. Empty: unknown."""
    created_at_ms: int | None = None
    version: int = 1
    ns: list[str] = Field(default_factory=list)
    """Profile namespace, e.g. ``["chat", "alice"]`` (stored in the payload; empty: none)."""
    tombstone: bool = False
    """For a delete: keep the point, marked deleted (hidden from every read), instead of removing it."""
    previous_content: str | None = None
    """For an update or delete: the content before, recorded in the memory's history."""


class CommitPlan(BaseModel):
    """The write-ahead journal of one reflection: stored in Redis before Qdrant is touched."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: int = WIRE_VERSION
    user_id: str
    thread_id: str
    generation: int
    turn_count: int
    turn_ids: list[str] = Field(default_factory=list)
    namespace: str
    ops: list[MemoryOp]
    created_ms: int
    extractor: str = ""
    """Name of the extractor that planned it (recorded as the last reflection's on commit)."""


class JournaledWrite(BaseModel):
    """One ``MemoryStore.apply`` call of a change: its ops and the source their payload keeps."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ops: list[MemoryOp]
    source: MemorySource = Field(default_factory=MemorySource)


class ChangeJournal(BaseModel):
    """The write-ahead journal of one memory change outside a reflection (an agent tool call, a
    consolidation run): stored in the user's ``changes`` hash under ``change_id`` before Qdrant
    is touched, with the history entries and events already derived (from ``at_ms``), so that a
    replay writes the same points and records the same entries and event ids."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: int = WIRE_VERSION
    change_id: str
    user_id: str
    at_ms: int
    writes: list[JournaledWrite]
    entries: list[HistoryEntry]
    events: list[ChangeEvent]
    mark_changed: bool = True


Outcome = Literal["committed", "superseded", "rolled_back", "deferred", "noop", "failed", "dead_lettered", "replayed"]


class ReflectionResult(BaseModel):
    """What the task returns (shown in Flower): counts and ids, no text."""

    model_config = ConfigDict(frozen=True)

    outcome: Outcome
    user_id: str
    thread_id: str
    generation: int
    turns: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    extractor: str = ""
    reason: str | None = None
    siblings: list[str] = Field(default_factory=list)
    """Other threads of the user reflected in the same run (a joint reflection): committed too."""


class DeadLetter(BaseModel):
    """A thread whose reflection kept failing. Its turns stay buffered until replay or forget."""

    model_config = ConfigDict(frozen=True)

    v: int = WIRE_VERSION
    user_id: str
    thread_id: str
    generation: int
    attempts: int
    reason: str
    failed_ms: int
