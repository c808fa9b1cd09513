"""The memory manager used when no model is configured. It is NOT an LLM, and says so wherever
its name is shown. What it does, from the user's turns alone:

- splits them into statements and drops questions and chit-chat (greetings, thanks, "ok");
- compares each statement with the existing memories it was shown and with the statements
  before it in the batch, by embedding cosine (``thresholds.py``, calibrated per embedder on the
  eval scenarios, never guessed);
- a statement about the subject of a memory **updates that memory in place** (same id and
  ``created_at``; the history keeps the old text): the latest statement wins, so a paraphrase is
  no duplicate and a changed preference is no contradiction;
- when the profile allows deletes, a statement on that subject that takes it back ("I no longer
  smoke", 「パスタは嫌いになりました」: ``statements.RETRACTION_CUES``) deletes the memory instead;
- anything else is a new memory, verbatim.

It fills only the free-text ``Memory`` schema (structured profiles need a model) and leaves
structured memories alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from producer.memories.embeddings import Embedder
from schemas.memory import MemoryKind, MemoryRecord
from schemas.messages import BufferedTurn
from worker.memory.extraction.base import ExtractionOutput, PlannedOp
from worker.memory.extraction.statements import (
    CHITCHAT_PROTOTYPES,
    is_question,
    is_retraction,
    normalise,
    share_subject_term,
    statements,
)
from worker.memory.extraction.thresholds import CONSERVATIVE, OFFLINE, Thresholds

NAME = "offline manager (not an LLM)"


def _cos(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


@dataclass
class _Slot:
    """A memory the batch may change: an existing one (``alias``) or one planned here (``op``)."""

    content: str
    vector: list[float]
    alias: int | None = None
    op: int | None = None


def user_statements(turns: list[BufferedTurn]) -> list[str]:
    """The statements of the user's turns that could be facts, in order (questions dropped)."""
    return [s for t in turns if t.role == "user" for s in statements(t.content) if not is_question(s)]


def same_subject(similarity: float, a: str, b: str, t: Thresholds) -> bool:
    """The offline manager's one decision: are two statements about one subject?"""
    return similarity >= t.same_subject or (similarity >= t.same_subject_with_term and share_subject_term(a, b))


class OfflineExtractor:
    name = NAME

    def __init__(
        self,
        embedder: Embedder,
        *,
        thresholds: Thresholds | None = None,
        episodic: bool = False,
        inserts: bool = True,
        updates: bool = True,
        deletes: bool = False,
    ) -> None:
        self.embedder = embedder
        self.thresholds = thresholds or OFFLINE.get(embedder.name, CONSERVATIVE)
        self.episodic = episodic
        self.inserts = inserts
        self.updates = updates
        self.deletes = deletes
        self._chitchat: list[list[float]] | None = None

    def is_chitchat(self, vector: list[float]) -> bool:
        if self._chitchat is None:
            self._chitchat = self.embedder.embed(list(CHITCHAT_PROTOTYPES))
        return max(_cos(vector, p) for p in self._chitchat) >= self.thresholds.chitchat

    def extract(self, turns: list[BufferedTurn], existing: list[MemoryRecord]) -> ExtractionOutput:
        episode = [offline_episode(turns)] if self.episodic and turns else []
        found = user_statements(turns)
        if not found:
            return ExtractionOutput(ops=episode)
        mine = [(i, m) for i, m in enumerate(existing) if m.schema_name == "Memory" and m.kind != MemoryKind.EPISODE]
        vectors = self.embedder.embed(found + [m.content for _, m in mine])
        slots = [_Slot(m.content, v, alias=i) for (i, m), v in zip(mine, vectors[len(found) :], strict=True)]
        ops: list[PlannedOp | None] = []
        for text, vector in zip(found, vectors[: len(found)], strict=True):
            if self.is_chitchat(vector):
                continue
            scored = [(_cos(vector, s.vector), s) for s in slots]
            best = max(scored, key=lambda pair: pair[0], default=None)
            if best is not None and normalise(best[1].content) == normalise(text):
                continue  # said again, word for word
            if best is not None and same_subject(best[0], text, best[1].content, self.thresholds):
                slot = best[1]
                if self.deletes and is_retraction(text):
                    self._retract(slot, ops)
                    slots.remove(slot)
                elif self.updates or slot.op is not None:
                    self._replace(slot, text, vector, ops)
                continue  # updates off: the memory stands, and the statement is no new fact
            if not self.inserts:
                continue
            ops.append(PlannedOp("insert", "Memory", {"content": text}, text))
            slots.append(_Slot(text, vector, op=len(ops) - 1))
        return ExtractionOutput(ops=[op for op in ops if op is not None] + episode)

    @staticmethod
    def _retract(slot: _Slot, ops: list[PlannedOp | None]) -> None:
        """Taken back: delete the memory, or drop what this batch planned for it."""
        if slot.alias is not None:
            if slot.op is not None:
                ops[slot.op] = None
            ops.append(PlannedOp("delete", alias=slot.alias))
        elif slot.op is not None:
            ops[slot.op] = None

    @staticmethod
    def _replace(slot: _Slot, text: str, vector: list[float], ops: list[PlannedOp | None]) -> None:
        """The latest statement wins: update the memory (or the op planned in this batch)."""
        if slot.op is None:
            ops.append(PlannedOp("update", "Memory", {"content": text}, text, alias=slot.alias))
            slot.op = len(ops) - 1
        else:
            old = ops[slot.op]
            assert old is not None
            ops[slot.op] = PlannedOp(old.action, "Memory", {"content": text}, text, alias=old.alias)
        slot.content, slot.vector = text, vector


def offline_episode(turns: list[BufferedTurn]) -> PlannedOp:
    """A deterministic episode, labelled as such: counts plus the first and last user turn."""
    users = [t.content.strip() for t in turns if t.role == "user" and t.content.strip()]
    first = users[0][:200] if users else ""
    last = users[-1][:200] if len(users) > 1 else ""
    summary = f"[offline summary, not an LLM] {len(turns)} turns ({len(users)} from the user)."
    if first:
        summary += f" First user turn: {first!r}."
    if last:
        summary += f" Last user turn: {last!r}."
    data = {"summary": summary, "outcome": "unknown (offline)"}
    return PlannedOp("insert", "Episode", data, summary, kind=MemoryKind.EPISODE)
