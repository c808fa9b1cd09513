"""Pure planning: retrieval queries from new turns, and extractor ops → final memory ops.

Aliases are resolved here against the exact list shown to the extractor, so an alias the
model was not given can never reach the store; new ids are decided before anything is
written and journaled with the plan, so a replay after a crash rewrites the same points.
"""

from __future__ import annotations

import uuid

from schemas.memory import MemoryRecord
from schemas.messages import BufferedTurn
from schemas.reflection import CommitPlan, MemoryOp
from worker.embeddings import Embedder
from worker.extraction.base import PlannedOp

MAX_QUERY_TURNS = 8


def retrieval_queries(turns: list[BufferedTurn]) -> list[str]:
    """Each of the last user turns, plus the whole window (LangMem searches only the last message)."""
    users = [t.content for t in turns if t.role == "user" and t.content.strip()][-MAX_QUERY_TURNS:]
    window = "\n".join(t.content for t in turns[-MAX_QUERY_TURNS * 2 :])
    queries = [*users, window] if window.strip() else users
    return list(dict.fromkeys(q[:4000] for q in queries))


def new_point_id() -> str:
    """A fresh id for an insert. Random, not derived: generations and fences may restart after
    a thread's state expires, and a derived id would then overwrite an old memory. Idempotence
    comes from the journal, which records these ids before any write and is replayed as is."""
    return str(uuid.uuid4())


def build_plan(
    *,
    user_id: str,
    thread_id: str,
    generation: int,
    namespace: str,
    turns: list[BufferedTurn],
    existing: list[MemoryRecord],
    ops: list[PlannedOp],
    embedder: Embedder,
    kind: str,
    now_ms: int,
    ns: tuple[str, ...] = (),
    tombstone: bool = False,
) -> CommitPlan:
    """Final ops: inserts get fresh ids; aliases resolve to the shown memories (updates keep id
    and ``created_at``, bump ``version``); deletes are physical or tombstones. Raises
    ``ValueError`` on an alias that was not shown or a record of another user."""
    texts = [op.content for op in ops if op.action != "delete"]
    vectors = iter(embedder.embed(texts)) if texts else iter(())
    out: list[MemoryOp] = []
    for op in ops:
        if op.action == "insert":
            out.append(
                MemoryOp(
                    op="insert",
                    id=new_point_id(),
                    kind=op.kind or kind,
                    schema_name=op.schema_name,
                    content=op.content,
                    data=op.data,
                    vector=next(vectors),
                    created_at_ms=now_ms,
                    ns=list(ns),
                )
            )
            continue
        if op.alias is None or not 0 <= op.alias < len(existing):
            raise ValueError(f"alias {op.alias!r} was not shown to the extractor")
        target = existing[op.alias]
        if target.user_id != user_id:
            raise ValueError("alias resolves to another user's memory")
        if op.action == "delete":
            out.append(
                MemoryOp(
                    op="delete",
                    id=target.id,
                    kind=target.kind,
                    schema_name=target.schema_name,
                    tombstone=tombstone,
                    previous_content=target.content,
                )
            )
        else:
            out.append(
                MemoryOp(
                    op="update",
                    id=target.id,
                    kind=target.kind,
                    schema_name=op.schema_name,
                    content=op.content,
                    data=op.data,
                    vector=next(vectors),
                    created_at_ms=int(target.created_at.timestamp() * 1000),
                    version=target.version + 1,
                    ns=list(target.ns or ns),
                    previous_content=target.content,
                )
            )
    return CommitPlan(
        user_id=user_id,
        thread_id=thread_id,
        generation=generation,
        turn_count=len(turns),
        turn_ids=[t.id for t in turns if t.id],
        namespace=namespace,
        ops=out,
        created_ms=now_ms,
    )
