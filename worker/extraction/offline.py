"""The extractor used when no model is configured. It is NOT an LLM: it stores each user
turn verbatim as a semantic memory (like mem0's ``infer=False``), skipping turns whose
embedding is nearly identical to an existing memory or to an earlier turn of the batch."""

from __future__ import annotations

from schemas.memory import MemoryRecord
from schemas.messages import BufferedTurn
from worker.embeddings import Embedder
from worker.extraction.base import ExtractionOutput, PlannedOp

MIN_CHARS = 3


def _dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=False))


class OfflineExtractor:
    name = "offline-verbatim (not an LLM)"

    def __init__(self, embedder: Embedder, *, similarity: float = 0.92) -> None:
        self.embedder = embedder
        self.similarity = similarity

    def extract(self, turns: list[BufferedTurn], existing: list[MemoryRecord]) -> ExtractionOutput:
        texts = [t.content.strip() for t in turns if t.role == "user" and len(t.content.strip()) >= MIN_CHARS]
        if not texts:
            return ExtractionOutput(ops=[])
        known = self.embedder.embed([m.content for m in existing]) if existing else []
        ops = []
        for text, vec in zip(texts, self.embedder.embed(texts), strict=True):
            if any(_dot(vec, k) >= self.similarity for k in known):
                continue
            known.append(vec)
            ops.append(PlannedOp("insert", "Memory", {"content": text}, text))
        return ExtractionOutput(ops=ops)
