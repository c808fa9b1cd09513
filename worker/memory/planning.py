"""Pure planning: retrieval queries from new turns, and extractor ops → final memory ops.

Aliases are resolved here against the exact list shown to the extractor, so an alias the
model was not given can never reach the store; new ids are decided before anything is
written and journaled with the plan, so a replay after a crash rewrites the same points.
"""

from __future__ import annotations

import uuid

from producer.memories.embeddings import Embedder
from producer.memories.live import concrete
from schemas.memory import MemoryKind, MemoryRecord
from schemas.messages import BufferedTurn
from schemas.reflection import CommitPlan, MemoryOp
from worker.memory.extraction.base import PlannedOp

MAX_QUERY_TURNS = 8
_EPISODES = uuid.UUID("6f1f2a52-7c1e-4d55-9d7e-5e0e6a1f0e01")


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


def episode_id(user_id: str, ns: tuple[str, ...] | list[str], thread_id: str) -> str:
    """The one episode memory of a thread (in a namespace): derived, so each reflection of the
    thread updates it. Its ``created_at`` survives because the reflection shows the current
    episode to the planner (``select_existing`` pins it), which turns the insert into an update."""
    return str(uuid.uuid5(_EPISODES, "\x1f".join([user_id, *ns, thread_id])))


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
    embedder = concrete(embedder)  # one model for the vectors and the name recorded with them
    model = embedder.name
    vectors = iter(embedder.embed(texts)) if texts else iter(())
    out: list[MemoryOp] = []
    by_id = {r.id: r for r in existing}
    for op in ops:
        if op.action == "insert" and op.kind == MemoryKind.EPISODE:
            out = [o for o in out if o.id != episode_id(user_id, ns, thread_id)]  # the last episode call wins
            episode = _episode_op(op, user_id, thread_id, ns, by_id, next(vectors), now_ms)
            out.append(episode.model_copy(update={"vector_model": model}))
            continue
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
                    vector_model=model,
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
                    vector_model=model,
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


def _episode_op(
    op: PlannedOp,
    user_id: str,
    thread_id: str,
    ns: tuple[str, ...],
    by_id: dict[str, MemoryRecord],
    vector: list[float],
    now_ms: int,
) -> MemoryOp:
    pid = episode_id(user_id, ns, thread_id)
    prior = by_id.get(pid)
    return MemoryOp(
        op="insert" if prior is None else "update",
        id=pid,
        kind=MemoryKind.EPISODE,
        schema_name=op.schema_name,
        content=op.content,
        data=op.data,
        vector=vector,
        created_at_ms=now_ms if prior is None else int(prior.created_at.timestamp() * 1000),
        version=1 if prior is None else prior.version + 1,
        ns=list(ns),
        previous_content=None if prior is None else prior.content,
    )
