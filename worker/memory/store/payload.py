"""The payload a memory is stored with (pure). Reads map it back in ``producer.memories.layout``."""

from __future__ import annotations

from typing import Any

from producer.memories.layout import ms_to_iso
from schemas.memory import MemorySource
from schemas.reflection import MemoryOp


def build_payload(user_id: str, namespace: str, op: MemoryOp, *, source: MemorySource, now_ms: int) -> dict[str, Any]:
    """Payload of an insert or update. An update keeps its ``created_at_ms`` (required)."""
    if op.op == "update" and op.created_at_ms is None:
        raise ValueError(f"update of memory {op.id} needs created_at_ms (the original creation time)")
    created_ms = op.created_at_ms if op.created_at_ms is not None else now_ms
    return {
        "user_id": user_id,
        "namespace": namespace,
        "kind": op.kind,
        "schema_name": op.schema_name,
        "content": op.content,
        "data": op.data,
        "created_at": ms_to_iso(created_ms),
        "created_at_ms": created_ms,
        "updated_at": ms_to_iso(now_ms),
        "updated_at_ms": now_ms,
        "version": op.version,
        "ns": list(op.ns),
        "ns_key": "/".join(op.ns),
        "deleted": False,
        "source": source.model_dump(mode="json"),
    }
