"""Change events: one entry of the ``<prefix>:events`` Redis stream per committed memory change.

Ids only, never memory content: the stream is read by other services (search indexes, caches,
webhooks) that must not become a second copy of what users said. ``event_id`` is derived from the
change itself (``<user>:<reflection id>:<at ms>:<op index>``), so a journal replayed after a crash
would produce the same id, and a consumer can deduplicate on it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from schemas.errors import DecodeError

EventOp = Literal["insert", "update", "delete", "merge", "forget"]
FIELDS = ("v", "event_id", "user_id", "memory_id", "op", "kind", "thread_id", "generation", "into")
"""Stream fields in the order they are written (``ts_ms`` is added by the server's clock)."""


class ChangeEvent(BaseModel):
    """One committed change. ``merge``: the memory was folded into ``into`` and removed;
    ``forget``: every memory of the user is gone (``memory_id`` empty)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    v: int = 1
    event_id: str
    user_id: str
    memory_id: str = ""
    op: EventOp
    kind: str = ""
    thread_id: str = ""
    generation: int = 0
    """The reflection's generation; 0 for changes outside reflections."""
    into: str = ""
    """For ``merge``: the surviving memory's id."""
    ts_ms: int = 0
    """Server time of the commit (set by the script that writes the event)."""
    stream_id: str = ""
    """The stream entry id (``<ms>-<seq>``), set when read back."""

    def fields(self) -> list[str]:
        """Flat ``field, value, …`` for XADD (``ts_ms`` comes from the server)."""
        out: list[str] = []
        for name in FIELDS:
            out += [name, str(getattr(self, name))]
        return out

    @classmethod
    def from_stream(cls, stream_id: str, fields: dict[str, str]) -> ChangeEvent:
        try:
            return cls.model_validate({**fields, "stream_id": stream_id})
        except ValidationError as e:
            raise DecodeError(f"stream entry {stream_id} is not a change event") from e


def encode_events(events: Iterable[ChangeEvent]) -> str:
    """The writing scripts' argument: a JSON list of flat ``field, value`` lists."""
    return json.dumps([e.fields() for e in events], separators=(",", ":"))
