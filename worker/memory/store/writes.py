"""Writing planned ops: validate everything first (ownership: the fence against writing another
user's point), then upsert, delete or tombstone in op order, batching runs of one sort."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from qdrant_client import models as qm

from producer.memories.layout import ms_to_iso, point_id, user_filter
from producer.memories.live import concrete
from schemas.memory import MemorySource
from schemas.reflection import MemoryOp
from worker.errors import ForeignMemoryError
from worker.memory.store.payload import build_payload

if TYPE_CHECKING:
    from producer.memories.reader import MemoryReader

Ops = list[MemoryOp]


def prepare_points(
    store: MemoryReader, user_id: str, ops: Ops, *, source: MemorySource, now_ms: int
) -> dict[int, qm.PointStruct]:
    """Validate every op and build the points to upsert (keyed by op position). Ops without a
    vector, or with one of another model than the collection's (a re-embed switched it since the
    op was planned), get their ``content`` embedded."""
    embedder = concrete(store.embedder)  # the pinned view's
    missing = [i for i, op in enumerate(ops) if op.op != "delete" and not _fits(op, embedder.name)]
    embedded = dict(zip(missing, embedder.embed([ops[i].content for i in missing]), strict=True))
    points: dict[int, qm.PointStruct] = {}
    for i, op in enumerate(ops):
        pid = point_id(op.id)
        if op.op == "delete":
            continue
        vector = embedded[i] if i in embedded else list(op.vector)
        store._check_dims(vector)
        payload = build_payload(user_id, store.namespace, op, source=source, now_ms=now_ms)
        points[i] = qm.PointStruct(id=pid, vector=vector, payload=payload)
    return points


def _fits(op: MemoryOp, model: str) -> bool:
    """The op's vector can be stored as is: it has one, of this model (when it says which; a
    vector of the wrong size is a caller's bug, refused by ``_check_dims``)."""
    return bool(op.vector) and op.vector_model in ("", model)


def check_ownership(store: MemoryReader, name: str, user_id: str, ops: Ops) -> None:
    """Updates must target this user's memories (or ones inserted earlier in ``ops``);
    no insert or update may reuse a point id of another user (that would overwrite it)."""
    write_ids = list(dict.fromkeys(point_id(op.id) for op in ops if op.op != "delete"))
    if not write_ids:
        return
    # Counts points among the ids that are NOT this user's: the user condition is negated,
    # and only a number comes back, never another user's data.
    foreign = qm.Filter(
        must=[qm.HasIdCondition(has_id=write_ids)],
        must_not=[qm.FieldCondition(key="user_id", match=qm.MatchValue(value=user_id))],
    )
    if store._call(store.client.count, name, count_filter=foreign).count:
        raise ForeignMemoryError(f"{name}: a write targets a memory id that is not one of this user's")
    update_ids = list(dict.fromkeys(point_id(op.id) for op in ops if op.op == "update"))
    mine = store._scroll(user_id, user_filter(user_id, ids=update_ids), len(update_ids))
    owned = {point_id(r.id) for r in mine}
    inserted: set[str | int] = set()
    for op in ops:
        pid = point_id(op.id)
        if op.op == "insert":
            inserted.add(pid)
        elif op.op == "update" and pid not in owned and pid not in inserted:
            raise ForeignMemoryError(f"update of memory {op.id}: not one of this user's memories")


def write_ops(
    store: MemoryReader, name: str, user_id: str, ops: Ops, points: dict[int, qm.PointStruct], now_ms: int
) -> None:
    """Upsert/delete/tombstone in op order, batching consecutive ops of the same sort."""

    def sort(pair: tuple[int, MemoryOp]) -> str:
        op = pair[1]
        return "tombstone" if op.op == "delete" and op.tombstone else op.op if op.op == "delete" else "upsert"

    for what, group in itertools.groupby(enumerate(ops), key=sort):
        batch = list(group)
        if what == "upsert":
            store._call(store.client.upsert, name, points=[points[i] for i, _ in batch], wait=True)
            continue
        ids = list(dict.fromkeys(point_id(op.id) for _, op in batch))
        selector = qm.FilterSelector(filter=user_filter(user_id, ids=ids))
        if what == "delete":
            store._call(store.client.delete, name, points_selector=selector, wait=True)
        else:  # a tombstone: the point stays (audit), hidden from every read by user_filter
            marks = {"deleted": True, "deleted_at": ms_to_iso(now_ms), "deleted_at_ms": now_ms}
            store._call(store.client.set_payload, name, payload=marks, points=selector, wait=True)
