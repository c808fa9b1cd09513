"""How memories are laid out in Qdrant, shared by the hot-path reader and the worker's store.

Pure: collection names, point ids, the user filter every call carries, and the mapping from a
point's payload to a ``MemoryRecord``. By default there is one collection per (namespace,
embedding model) with a tenant ``user_id`` index (``is_tenant=True``), as Qdrant recommends;
``per_user`` gives each user a collection (Qdrant advises against it beyond a few hundred users).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from qdrant_client import models as qm

from schemas.memory import MemoryRecord, MemorySource

Strategy = Literal["shared", "per_user"]
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_USER_UNESCAPED = re.compile(r"[A-Za-z0-9-]")


def safe_part(value: str) -> str:
    """Collection-name piece: only ``[A-Za-z0-9_-]``, and never ``__`` (the separator)."""
    return re.sub(r"_+", "_", _UNSAFE.sub("-", value)).strip("-_") or "x"


def user_suffix(user_id: str) -> str:
    """Injective, collection-safe encoding of a user id: every character outside
    ``[A-Za-z0-9-]`` (``_`` included) becomes ``_xx`` per UTF-8 byte. Very long ids use a hash."""
    escaped = "".join(
        ch if _USER_UNESCAPED.fullmatch(ch) else "".join(f"_{b:02x}" for b in ch.encode("utf-8")) for ch in user_id
    )
    if len(escaped) > 96:
        escaped = "h" + hashlib.blake2b(user_id.encode("utf-8"), digest_size=16).hexdigest()
    return "u_" + escaped


def collection_name(namespace: str, embedder: str, strategy: Strategy, user_id: str | None = None) -> str:
    """``{namespace}__{model}`` (shared) or ``{namespace}__{model}__u_{user}`` (per_user).
    At most 63 + 2 + 64 + 2 + 99 characters, under Qdrant's 255."""
    base = f"{safe_part(namespace)}__{safe_part(embedder)[:64]}"
    if strategy == "shared":
        return base
    if user_id is None:
        raise ValueError("per_user collections need a user_id")
    return f"{base}__{user_suffix(user_id)}"


def point_id(value: str) -> str | int:
    """A Qdrant point id (canonical UUID string, or unsigned int); ``ValueError`` otherwise."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise ValueError(f"memory id {value!r} is not a UUID or unsigned integer") from None


def user_filter(
    user_id: str, *, kind: str | None = None, ids: Sequence[Any] | None = None, ns: str | None = None
) -> qm.Filter:
    """The filter every store call carries: this user's live points (of ``kind``, among ``ids``,
    in profile namespace ``ns``). Tombstoned memories are excluded from every read."""
    must: list[Any] = [qm.FieldCondition(key="user_id", match=qm.MatchValue(value=user_id))]
    if ids is not None:  # first: local mode checks conditions in order, and an id check is cheap
        must.insert(0, qm.HasIdCondition(has_id=list(ids)))
    if kind is not None:
        must.append(qm.FieldCondition(key="kind", match=qm.MatchValue(value=kind)))
    if ns is not None:
        must.append(qm.FieldCondition(key="ns_key", match=qm.MatchValue(value=ns)))
    return qm.Filter(must=must, must_not=[qm.FieldCondition(key="deleted", match=qm.MatchValue(value=True))])


def ms_to_iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record_from_point(user_id: str, point: qm.Record | qm.ScoredPoint) -> MemoryRecord | None:
    """The record of a point, or None if it is not ``user_id``'s (defence in depth: every
    query is filtered already)."""
    p = point.payload or {}
    if p.get("user_id") != user_id:
        return None
    return MemoryRecord(
        id=str(point.id),
        user_id=user_id,
        namespace=p.get("namespace", ""),
        kind=p.get("kind", "semantic"),
        schema_name=p.get("schema_name", "Memory"),
        content=p.get("content", ""),
        data=p.get("data") or {},
        created_at=p["created_at"].replace("Z", "+00:00"),
        updated_at=p["updated_at"].replace("Z", "+00:00"),
        version=p.get("version", 1),
        ns=p.get("ns") or [],
        source=MemorySource.model_validate(p.get("source") or {}),
        score=getattr(point, "score", None),
    )
