"""The memory store: Qdrant is the only memory store, and this is the only writer.

``MemoryStore`` is the hot-path ``MemoryReader`` plus idempotent writes, per-user erasure and
the vector listing consolidation needs. Every read and write carries the user filter.
"""

from __future__ import annotations

import contextlib

from qdrant_client import models as qm

from producer.memories import open_pending, open_qdrant
from producer.memories.embeddings import Embedder, embedder_factory, make_embedder
from producer.memories.layout import record_from_point, safe_part, user_filter, user_suffix
from producer.memories.reader import CollectionMissing, MemoryReader
from schemas.ids import check_id
from schemas.memory import MemoryRecord, MemorySource
from schemas.reflection import MemoryOp
from schemas.settings import Settings
from worker.errors import StoreUnavailable
from worker.memory.store.collections import create_collection
from worker.memory.store.writes import check_ownership, prepare_points, write_ops

Ops = list[MemoryOp]


class MemoryStore(MemoryReader):
    """User-scoped memory reads (inherited) and idempotent writes over one Qdrant client."""

    def list_vectors(self, user_id: str, *, limit: int = 1000) -> list[tuple[MemoryRecord, list[float]]]:
        """Up to ``limit`` of this user's memories with their vectors (for consolidation)."""
        check_id(user_id)
        out: list[tuple[MemoryRecord, list[float]]] = []
        with self.pinned():
            for point in self._scroll_points(user_id, user_filter(user_id), limit, with_vectors=True):
                record = record_from_point(user_id, point)
                if record is not None and isinstance(point.vector, list):
                    out.append((record, [float(x) for x in point.vector]))
        return out

    def ensure_collection(self, user_id: str) -> str:
        """This user's collection, created on first write."""
        name = self._collection_name(user_id)
        if name in self._known:
            return name
        with self._known_lock:
            if name not in self._known:
                if self._call(self.client.collection_exists, name):
                    self._check_collection_dims(name)
                elif self.live is not None and name != self.live.default.collection:
                    raise CollectionMissing()  # a re-embed's collection, dropped: never re-created
                else:
                    create_collection(self, name)
                self._known.add(name)
        return name

    def apply(self, user_id: str, ops: Ops, *, source: MemorySource, now_ms: int) -> None:
        """Write planned ops, in order. Idempotent: op ids are final point ids, so replaying the
        same ops (ideally with the same ``now_ms``) leaves the same state and no duplicates.

        Everything is validated before anything is written: an update must target one of this
        user's memories (else :class:`ForeignMemoryError`) and carry ``created_at_ms``; an
        insert must not reuse another user's point id. ``version`` is written as given, so the
        planner sets it (existing version + 1 for an update). Ops without a vector, or with one
        of another model than the collection's, get their ``content`` embedded.
        """
        check_id(user_id)
        if not ops:
            return
        with self.pinned():  # the block's view (a reflection's), else the live one as cached
            written = self._write(user_id, ops, source=source, now_ms=now_ms)
        if self.live is None:
            return
        # A re-embed may have switched the live alias since the view was looked up: check once
        # more, after the write, and write the same ops (idempotent, re-embedded) there too, so
        # that the change is in the live collection before this returns (before its event).
        live = self.live.refresh()
        if live.collection != written:
            with self.pinned(live):
                self._write(user_id, ops, source=source, now_ms=now_ms, check=False)

    def _write(self, user_id: str, ops: Ops, *, source: MemorySource, now_ms: int, check: bool = True) -> str:
        """Write into the pinned (or live) view's collection; returns its name. ``check=False``:
        ownership was checked against the collection the ops were first written to."""
        for attempt in (1, 2):
            # the second attempt writes where the alias points now (the first one's is gone)
            retry = self.live.refresh() if attempt == 2 and self.live is not None else None
            with self.pinned(retry):
                points = prepare_points(self, user_id, ops, source=source, now_ms=now_ms)
                name = self._collection_name(user_id)
                try:
                    name = self.ensure_collection(user_id)
                    if check:
                        check_ownership(self, name, user_id, ops)
                    write_ops(self, name, user_id, ops, points, now_ms)
                    return name
                except CollectionMissing:
                    self._known.discard(name)
                    if attempt == 2:
                        raise StoreUnavailable(f"collection {name} keeps disappearing") from None
        raise AssertionError("unreachable: the second attempt returns or raises")

    def delete_user(self, user_id: str) -> int:
        """Forget every memory of this user in this namespace (all embedding models); returns
        how many were removed. Per-user collections of the user are dropped."""
        check_id(user_id)
        prefix = f"{safe_part(self.namespace)}__"
        suffix = f"__{user_suffix(user_id)}"
        names = [c.name for c in self._call(self.client.get_collections).collections]
        removed = 0
        for name in names:
            parts = name.removeprefix(prefix).split("__")
            if not name.startswith(prefix) or len(parts) > 2:
                continue
            per_user = len(parts) == 2
            if per_user and not name.endswith(suffix):
                continue
            # tombstones included: forgetting a user removes everything
            flt = qm.Filter(must=[qm.FieldCondition(key="user_id", match=qm.MatchValue(value=user_id))])
            with contextlib.suppress(CollectionMissing):
                mine = self._call(self.client.count, name, count_filter=flt).count
                if mine:
                    self._call(self.client.delete, name, points_selector=qm.FilterSelector(filter=flt), wait=True)
                    removed += mine
                if per_user and self._call(self.client.count, name).count == 0:
                    self._call(self.client.delete_collection, name)
                    self._known.discard(name)
        return removed


def open_store(settings: Settings, *, embedder: Embedder | None = None) -> MemoryStore:
    """A store for these settings: a Qdrant server when ``qdrant_url`` is set, else local mode."""
    return MemoryStore(
        open_qdrant(settings),
        embedder or make_embedder(settings),
        namespace=settings.namespace,
        strategy=settings.collection_strategy,
        pending=open_pending(settings),  # the read socket's search(include_pending=True)
        refresh_s=settings.collection_refresh_s,
        embedder_factory=embedder_factory(settings),
    )
