"""Pure consolidation decisions: near-duplicate groups and retention victims. No I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np

from schemas.memory import MemoryRecord

DAY_MS = 86_400_000
BLOCK = 512


@dataclass(frozen=True, slots=True)
class Item:
    record: MemoryRecord
    vector: list[float]


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    na = sum(x * x for x in a) ** 0.5
    nb = sum(y * y for y in b) ** 0.5
    return dot / (na * nb) if na and nb else 0.0


def similar_pairs(vectors: list[list[float]], threshold: float) -> list[tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i < j``, with cosine similarity >= ``threshold``. Blocked matrix
    products (numpy comes with qdrant-client), so 10k memories take seconds, not minutes."""
    if len(vectors) < 2:
        return []
    m = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    m = m / np.where(norms == 0, 1, norms)
    pairs: list[tuple[int, int]] = []
    for start in range(0, len(m), BLOCK):
        sims = m[start : start + BLOCK] @ m.T
        rows, cols = np.nonzero(sims >= threshold)
        pairs.extend((start + int(r), int(c)) for r, c in zip(rows, cols, strict=True) if start + int(r) < int(c))
    return pairs


def near_duplicate_groups(items: list[Item], threshold: float) -> list[list[MemoryRecord]]:
    """Groups (size >= 2) of memories of the same kind, schema and namespace whose vectors are
    within ``threshold`` cosine similarity of another member (single linkage, union-find)."""
    parent = list(range(len(items)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    buckets: dict[tuple[str, str, str], list[int]] = {}
    for i, item in enumerate(items):
        r = item.record
        buckets.setdefault((r.kind, r.schema_name, "/".join(r.ns)), []).append(i)
    for members in buckets.values():
        for a, b in similar_pairs([items[i].vector for i in members], threshold):
            parent[find(members[a])] = find(members[b])
    groups: dict[int, list[MemoryRecord]] = {}
    for i, item in enumerate(items):
        groups.setdefault(find(i), []).append(item.record)
    return [sorted(g, key=lambda r: r.id) for g in groups.values() if len(g) > 1]


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def retention_victims(
    records: list[MemoryRecord], rules: dict[str, dict[str, float]], now_ms: int
) -> list[MemoryRecord]:
    """Memories past their kind's ``ttl_days`` (by ``updated_at``), then beyond its newest
    ``max_count``. Kinds without a rule are kept forever."""
    victims: dict[str, MemoryRecord] = {}
    for kind, rule in rules.items():
        mine = sorted((r for r in records if r.kind == kind), key=lambda r: (r.updated_at, r.id), reverse=True)
        ttl_days = rule.get("ttl_days")
        if ttl_days:
            for r in mine:
                if now_ms - _ms(r.updated_at) > ttl_days * DAY_MS:
                    victims[r.id] = r
        max_count = rule.get("max_count")
        if max_count is not None:
            alive = [r for r in mine if r.id not in victims]
            for r in alive[int(max_count) :]:
                victims[r.id] = r
    return sorted(victims.values(), key=lambda r: (r.updated_at, r.id))
