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
ID_NAMESPACE = uuid.UUID("5b0f8f3e-2d55-4c55-9d3a-7f0e2f1c9a11")


def retrieval_queries(turns: list[BufferedTurn]) -> list[str]:
    """Each of the last user turns, plus the whole window (LangMem searches only the last message)."""
    users = [t.content for t in turns if t.role == "user" and t.content.strip()][-MAX_QUERY_TURNS:]
    window = "\n".join(t.content for t in turns[-MAX_QUERY_TURNS * 2 :])
    queries = [*users, window] if window.strip() else users
    return list(dict.fromkeys(q[:4000] for q in queries))


def point_id(user_id: str, thread_id: str, generation: int, fence: int, index: int) -> str:
    """Deterministic id of the ``index``-th insert of one reflection attempt."""
    return str(uuid.uuid5(ID_NAMESPACE, f"{user_id}:{thread_id}:{generation}:{fence}:{index}"))


def build_plan(
    *,
    user_id: str,
    thread_id: str,
    generation: int,
    fence: int,
    namespace: str,
    turns: list[BufferedTurn],
    existing: list[MemoryRecord],
    ops: list[PlannedOp],
    embedder: Embedder,
    kind: str,
    now_ms: int,
) -> CommitPlan:
    texts = [op.content for op in ops if op.action != "delete"]
    vectors = iter(embedder.embed(texts)) if texts else iter(())
    out: list[MemoryOp] = []
    for index, op in enumerate(ops):
        if op.action == "insert":
            out.append(
                MemoryOp(
                    op="insert",
                    id=point_id(user_id, thread_id, generation, fence, index),
                    kind=kind,
                    schema_name=op.schema_name,
                    content=op.content,
                    data=op.data,
                    vector=next(vectors),
                    created_at_ms=now_ms,
                )
            )
            continue
        if op.alias is None or not 0 <= op.alias < len(existing):
            raise ValueError(f"alias {op.alias!r} was not shown to the extractor")
        target = existing[op.alias]
        if target.user_id != user_id:
            raise ValueError("alias resolves to another user's memory")
        if op.action == "delete":
            out.append(MemoryOp(op="delete", id=target.id, kind=target.kind, schema_name=target.schema_name))
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
