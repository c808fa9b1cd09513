"""Moving points from the old collection to the new one: same id, same payload, the new model's
vector of ``content``. Admin I/O over whole collections (every user's points), through the
store's client and its local-mode lock.

Before the switch nothing but the re-embed writes the new collection, so its writes are plain.
After it, writers write there too, so a copy is conditional (Qdrant's ``update_filter``): it
replaces a point only if the stored one is older, by (``version``, ``updated_at_ms``, tombstone),
and a removal only happens if the point is still exactly the one looked at. A stale copy can
never overwrite a newer write.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from qdrant_client import models as qm

from producer.memories.embeddings import Embedder
from worker.memory.store import MemoryStore

PointId = str | int
LOCAL_UPSERT = 8
"""Points per upsert call in local mode, where a search waits for the call in flight (a local
upsert persists each point with its own commit: milliseconds each)."""


def freshness(payload: dict[str, Any]) -> tuple[int, int, int]:
    """How recent a stored memory is: a write bumps ``version`` (updates) or ``updated_at_ms``;
    a tombstone is newer than the same version alive."""
    return int(payload.get("version", 1)), int(payload.get("updated_at_ms", 0)), int(bool(payload.get("deleted")))


def alive(payload: dict[str, Any] | None) -> bool:
    return payload is not None and not payload.get("deleted")


def _match(key: str, value: Any) -> qm.FieldCondition:
    return qm.FieldCondition(key=key, match=qm.MatchValue(value=value))


def older_than(payload: dict[str, Any]) -> qm.Filter:
    """Matches a stored point strictly older than ``payload`` (``update_filter`` of a copy)."""
    version, updated, deleted = freshness(payload)
    should: list[Any] = [
        qm.FieldCondition(key="version", range=qm.Range(lt=version)),
        qm.Filter(
            must=[_match("version", version), qm.FieldCondition(key="updated_at_ms", range=qm.Range(lt=updated))]
        ),
    ]
    if deleted:
        should.append(
            qm.Filter(
                must=[_match("version", version), _match("updated_at_ms", updated)], must_not=[_match("deleted", True)]
            )
        )
    return qm.Filter(should=should)


def exactly(pid: PointId, payload: dict[str, Any]) -> qm.Filter:
    """Matches the point only while it is still the (alive) version looked at."""
    version, updated, _ = freshness(payload)
    return qm.Filter(
        must=[qm.HasIdCondition(has_id=[pid]), _match("version", version), _match("updated_at_ms", updated)],
        must_not=[_match("deleted", True)],
    )


@dataclass
class Transfer:
    store: MemoryStore
    source: str
    target: str
    embedder: Embedder
    """The new model's embedder (the target collection's)."""

    def _call(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        return self.store._call(fn, *args, **kwargs)

    def page(self, collection: str, offset: PointId | None, limit: int) -> tuple[list[qm.Record], PointId | None]:
        """One page of every point (tombstones included), payloads without vectors."""
        points, next_offset = self._call(
            self.store.client.scroll, collection, limit=limit, offset=offset, with_payload=True, with_vectors=False
        )
        return list(points), next_offset

    def fetch(self, collection: str, ids: Sequence[PointId]) -> dict[PointId, dict[str, Any]]:
        """Payloads of the points among ``ids`` (tombstones included)."""
        if not ids:
            return {}
        found = self._call(self.store.client.retrieve, collection, ids=list(ids), with_payload=True, with_vectors=False)
        return {p.id: dict(p.payload or {}) for p in found}

    def count(self, collection: str) -> int:
        return int(self._call(self.store.client.count, collection, exact=True).count)

    def copy(self, points: Iterable[tuple[PointId, dict[str, Any]]], *, conditional: bool = False) -> int:
        """Write these (id, payload) into the target with new vectors; returns how many."""
        items = list(points)
        if not items:
            return 0
        vectors = self.embedder.embed([str(payload.get("content", "")) for _, payload in items])
        structs = [qm.PointStruct(id=pid, vector=v, payload=p) for (pid, p), v in zip(items, vectors, strict=True)]
        if not conditional:
            # Local mode serialises every call on one lock: small upserts let searches in between.
            step = LOCAL_UPSERT if self.store.local else len(structs)
            for i in range(0, len(structs), step):
                self._call(self.store.client.upsert, self.target, points=structs[i : i + step], wait=True)
            return len(structs)
        for struct in structs:  # each with its own condition
            self._call(
                self.store.client.upsert,
                self.target,
                points=[struct],
                update_filter=older_than(struct.payload or {}),
                wait=True,
            )
        return len(structs)

    def delete(self, ids: Sequence[PointId]) -> int:
        if ids:
            selector = qm.PointIdsList(points=list(ids))
            self._call(self.store.client.delete, self.target, points_selector=selector, wait=True)
        return len(ids)

    def delete_if_unchanged(self, pid: PointId, payload: dict[str, Any]) -> None:
        selector = qm.FilterSelector(filter=exactly(pid, payload))
        self._call(self.store.client.delete, self.target, points_selector=selector, wait=True)

    def purge_user(self, user_id: str, keep: Iterable[PointId]) -> None:
        """Remove the user's points from the target except ``keep`` (after a forget)."""
        kept = list(keep)
        flt = qm.Filter(must=[_match("user_id", user_id)], must_not=[qm.HasIdCondition(has_id=kept)] if kept else None)
        self._call(self.store.client.delete, self.target, points_selector=qm.FilterSelector(filter=flt), wait=True)
