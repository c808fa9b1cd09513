"""What ``Producer.status`` returns: where a submission stands, in ids, counts and times only
(never conversation text), so a chat server can show it or log it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

LastOutcome = Literal["committed", "superseded", "rolled_back", "noop", "failed", "dead_lettered"]
ThreadState = Literal["unknown", "idle", "due", "running", "dead_lettered"]


class LastReflection(BaseModel):
    """The reflection of the thread that ended last, as the worker recorded it at that moment
    (in the same Lua call that committed, released or rescheduled it)."""

    model_config = ConfigDict(frozen=True)

    generation: int
    outcome: LastOutcome
    at_ms: int
    """When it ended (the Redis server's clock)."""
    turns: int = 0
    """Turns it read (committed: the turns consumed from the buffer)."""
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    extractor: str = ""
    """``llm:<model>`` or the offline manager's name; empty when no extraction ran."""
    error: str | None = None
    """Exception class of a failed or dead-lettered reflection (details: ``reverie dlq show``)."""


class ThreadStatus(BaseModel):
    """One (user, thread): what is buffered, when it is due, and how its last reflection ended.

    ``state``: ``unknown`` (no trace in Redis: never submitted, forgotten, or reflected and
    expired), ``idle`` (nothing buffered), ``due`` (turns buffered, reflection scheduled),
    ``running`` (a reflection is in flight), ``dead_lettered`` (turns kept, nothing scheduled)."""

    model_config = ConfigDict(frozen=True)

    user_id: str
    thread_id: str
    state: ThreadState
    buffered_turns: int
    """Turns not yet reflected (still in the buffer; a running reflection's turns included)."""
    generation: int
    """Bumped by every submit that added a turn."""
    due_at_ms: int | None
    in_flight: bool
    dead_lettered: bool
    oldest_turn_ms: int | None = None
    """When the oldest unreflected turn arrived (``max_wait`` counts from here)."""
    last_turn_ms: int | None = None
    committed_generation: int = 0
    attempts: int = 0
    """Failed reflections since the last commit."""
    last: LastReflection | None = None
    now_ms: int
    """The Redis server's clock when this was read (due times are on the same clock)."""

    @property
    def due_in_s(self) -> float | None:
        return None if self.due_at_ms is None else (self.due_at_ms - self.now_ms) / 1000


class UserStatus(BaseModel):
    """Every indexed thread of one user (the index lives 8 days after the user's last submit)."""

    model_config = ConfigDict(frozen=True)

    user_id: str
    threads: list[ThreadStatus]
    """Sorted by thread id; at most ``limit`` of them."""
    total_threads: int
    """Threads in the user's index (more than ``len(threads)`` when cut at ``limit``)."""
    now_ms: int
