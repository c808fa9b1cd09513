"""What every extractor returns: planned operations on aliased memories, plus its cost."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from schemas.memory import MemoryRecord
from schemas.messages import BufferedTurn
from worker.memory.llm import Usage


@dataclass(frozen=True, slots=True)
class PlannedOp:
    """An extractor's decision. ``alias`` indexes the existing memories it was shown (``None``
    for inserts); the reflection maps it back to a real id, so the model never sees ids."""

    action: Literal["insert", "update", "delete"]
    schema_name: str = "Memory"
    data: dict[str, Any] = field(default_factory=dict)
    content: str = ""
    alias: int | None = None
    kind: str | None = None
    """Memory kind of an insert; ``None`` means the profile's kind (``episode`` for episodes)."""


@dataclass(slots=True)
class ExtractionOutput(Usage):
    """Planned ops, plus what producing them cost (``Usage``: calls, tokens, cost)."""

    ops: list[PlannedOp] = field(default_factory=list)
    validation_errors: int = 0
    text_replies: int = 0
    """Replies in text with no operation, to turns from the user (a model not doing tool calls?)."""
    text_tool_calls: int = 0
    """Operations read from the reply's text because the model wrote them there."""


class Extractor(Protocol):
    name: str

    def extract(self, turns: list[BufferedTurn], existing: list[MemoryRecord]) -> ExtractionOutput: ...


def render_content(schema_name: str, data: dict[str, Any]) -> str:
    """The text stored (and embedded) for a structured memory."""
    if set(data) == {"content"}:
        return str(data["content"])
    fields = ", ".join(f"{k}={v}" for k, v in data.items())
    return f"{schema_name}({fields})"
