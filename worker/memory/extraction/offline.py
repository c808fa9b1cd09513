"""The extractor used when no model is configured. It is NOT an LLM: it stores each user
turn verbatim as a semantic memory (like mem0's ``infer=False``), skipping turns whose
embedding is nearly identical to an existing memory or to an earlier turn of the batch."""

from __future__ import annotations

from producer.memories.embeddings import Embedder
from schemas.memory import MemoryKind, MemoryRecord
from schemas.messages import BufferedTurn
from worker.memory.extraction.base import ExtractionOutput, PlannedOp

MIN_CHARS = 3


def _dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=False))


class OfflineExtractor:
    name = "offline-verbatim (not an LLM)"

    def __init__(self, embedder: Embedder, *, similarity: float = 0.92, episodic: bool = False) -> None:
        self.embedder = embedder
        self.similarity = similarity
        self.episodic = episodic

    def extract(self, turns: list[BufferedTurn], existing: list[MemoryRecord]) -> ExtractionOutput:
        episode = [offline_episode(turns)] if self.episodic and turns else []
        texts = [t.content.strip() for t in turns if t.role == "user" and len(t.content.strip()) >= MIN_CHARS]
        if not texts:
            return ExtractionOutput(ops=episode)
        known = self.embedder.embed([m.content for m in existing]) if existing else []
        ops = []
        for text, vec in zip(texts, self.embedder.embed(texts), strict=True):
            if any(_dot(vec, k) >= self.similarity for k in known):
                continue
            known.append(vec)
            ops.append(PlannedOp("insert", "Memory", {"content": text}, text))
        return ExtractionOutput(ops=ops + episode)


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
