"""Change events: what the scripts that commit memory changes ``XADD`` to the events stream.

Like the history, events are built in Python from the change alone (the commit journal, or the
ops of a tool call or a consolidation) and written by the same Lua script that records the
change, so a crash can neither lose an event nor write it twice. The script takes one JSON
argument (a list of flat ``field, value`` lists) and adds the server time as ``ts_ms``; with
``max_len`` 0 it writes nothing. Reading (``read_events``) is for the CLI and tests; services
read with consumer groups (README, "Change events").
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from producer.text import as_text
from schemas.events import ChangeEvent, EventOp, encode_events
from schemas.reflection import CommitPlan, MemoryOp
from worker.memory.history import reflection_id

__all__ = ["encode_events", "event_for_op", "events_from_plan", "forget_event", "read_events"]


def event_id(user_id: str, source: str, at_ms: int, index: int) -> str:
    """Stable id of one change: ids cannot contain ``:``, so it splits back unambiguously."""
    return f"{user_id}:{source}:{at_ms}:{index}"


def event_for_op(
    user_id: str,
    op: MemoryOp,
    *,
    source: str,
    at_ms: int,
    index: int,
    thread_id: str | None = None,
    generation: int = 0,
    event_op: EventOp | None = None,
    into: str = "",
) -> ChangeEvent:
    """The event of one planned write (pure); ``event_op`` overrides the op (``merge``)."""
    return ChangeEvent(
        event_id=event_id(user_id, source, at_ms, index),
        user_id=user_id,
        memory_id=op.id,
        op=event_op or op.op,
        kind=op.kind,
        thread_id=thread_id or "",
        generation=generation,
        into=into,
    )


def events_from_plan(plan: CommitPlan) -> list[ChangeEvent]:
    """Events of a committed reflection, derived from its journal alone (a replay after a crash
    derives the same ids); one per op, in the order of the history entries."""
    rid = reflection_id(plan.thread_id, plan.generation)
    return [
        event_for_op(
            plan.user_id,
            op,
            source=rid,
            at_ms=plan.created_ms,
            index=i,
            thread_id=plan.thread_id,
            generation=plan.generation,
        )
        for i, op in enumerate(plan.ops)
    ]


def forget_event(user_id: str, at_ms: int) -> ChangeEvent:
    return ChangeEvent(event_id=event_id(user_id, "forget", at_ms, 0), user_id=user_id, op="forget")


def decode_entries(entries: Iterable[Any]) -> list[ChangeEvent]:
    """``XRANGE``/``XREAD`` entries (``(id, {field: value})``) as events."""
    return [ChangeEvent.from_stream(as_text(i), {as_text(k): as_text(v) for k, v in f.items()}) for i, f in entries]


def read_events(
    client: Any,
    key: str,
    *,
    since: str = "-",
    count: int = 100,
    block_ms: int | None = None,
) -> list[ChangeEvent]:
    """Events after ``since`` (a stream id, exclusive; ``-`` from the oldest kept), oldest first.
    With ``block_ms`` wait that long for new ones (``XREAD BLOCK``; ``since='$'``: only new)."""
    if block_ms is None:
        start = since if since == "-" else f"({since}"
        return decode_entries(client.xrange(key, min=start, max="+", count=count))
    reply = client.xread({key: since}, count=count, block=block_ms)
    return decode_entries(reply[0][1]) if reply else []


def last_id(client: Any, key: str) -> str:
    """The newest entry's id (``0-0`` if the stream is empty): where ``--follow`` starts."""
    info = client.xrevrange(key, count=1)
    return as_text(info[0][0]) if info else "0-0"
