"""The memory manager as a plain library call, LangMem's ``create_memory_manager(...).invoke``:
messages and existing memories in, typed operations out (insert, update with the given id,
delete). No side effects: nothing is read or written but the model call.

It runs the worker's own extractors (``LLMExtractor`` or the offline manager) on the worker's
prompt, with the same aliases, validation feedback and retries: the model sees the existing
memories as ``[0]``, ``[1]``…, and an id it returns that it was not given is refused. ::

    manager = create_memory_manager("openai/gpt-4o-mini", schemas=[UserFoodPreference],
                                    instructions="…", enable_deletes=True)
    result = manager.invoke({"messages": [{"role": "user", "content": "ラーメンが大好き"}],
                             "existing": [("mem-1", {"food_name": "パスタ", …})]})
    for op in result.ops: ...        # Insert | Update(id="mem-1", …) | Delete(id=…)
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from producer.memories.embeddings import Embedder, embedder_for
from schemas.memory import Memory, MemoryKind, MemoryRecord
from schemas.messages import BufferedTurn, Message
from schemas.profiles import DEFAULT_INSTRUCTIONS, Profile
from worker.memory.extraction import Extractor, LLMExtractor, OfflineExtractor, PlannedOp
from worker.memory.llm import LLMClient

_EPOCH = datetime.fromtimestamp(0, UTC)


class _Op(BaseModel):
    model_config = ConfigDict(frozen=True)


class Insert(_Op):
    op: Literal["insert"] = "insert"
    schema_name: str = "Memory"
    content: str
    data: dict[str, Any] = Field(default_factory=dict)


class Update(_Op):
    op: Literal["update"] = "update"
    id: str
    """One of the ids of ``existing``, never anything else."""
    schema_name: str = "Memory"
    content: str
    data: dict[str, Any] = Field(default_factory=dict)


class Delete(_Op):
    op: Literal["delete"] = "delete"
    id: str


Operation = Insert | Update | Delete


class ManagerResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    ops: list[Operation]
    extractor: str
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0


def _turn(item: Message | Mapping[str, Any] | Any) -> BufferedTurn:
    if isinstance(item, Message):
        return BufferedTurn(role=item.role, content=item.content, name=item.name, id=item.id, ts_ms=0)
    if isinstance(item, Mapping):
        message = Message.model_validate({k: item[k] for k in ("role", "content", "name", "id") if k in item})
        return _turn(message)
    role, content = getattr(item, "type", None), getattr(item, "content", None)  # LangChain messages
    if isinstance(content, str) and role in ("human", "ai", "system", "tool"):
        mapped = {"human": "user", "ai": "assistant"}.get(role, role)
        return BufferedTurn(role=mapped, content=content, ts_ms=0)  # type: ignore[arg-type]
    raise TypeError(f"messages: cannot read a {type(item).__name__} (give role/content dicts)")


def _record(item: Any) -> MemoryRecord:
    """An existing memory: a ``MemoryRecord``, ``(id, content)`` with content a str, a dict or a
    pydantic model (LangMem's form), or ``{"id", "content"|"data", "schema"?}``."""
    if isinstance(item, MemoryRecord):
        return item
    schema = "Memory"
    if isinstance(item, Mapping):
        memory_id, value, schema = item["id"], item.get("data", item.get("content")), item.get("schema", schema)
    elif isinstance(item, Sequence) and len(item) == 2 and not isinstance(item, str):
        memory_id, value = item
    else:
        raise TypeError(f"existing: cannot read a {type(item).__name__} (give (id, content) pairs)")
    if isinstance(value, BaseModel):
        schema, value = type(value).__name__, value.model_dump(mode="json")
    data = {"content": value} if isinstance(value, str) else dict(value or {})
    content = data["content"] if set(data) == {"content"} else f"{schema}({data})"
    return MemoryRecord(
        id=str(memory_id),
        user_id="-",
        namespace="-",
        kind=MemoryKind.SEMANTIC,
        schema_name=schema,
        content=str(content),
        data=data,
        created_at=_EPOCH,
        updated_at=_EPOCH,
    )


def to_operations(planned: Iterable[PlannedOp], existing: Sequence[MemoryRecord]) -> list[Operation]:
    """Aliases back to the ids the caller gave (the extractor already refused any other alias)."""
    out: list[Operation] = []
    for op in planned:
        if op.action == "insert":
            out.append(Insert(schema_name=op.schema_name, content=op.content, data=op.data))
            continue
        assert op.alias is not None
        target = existing[op.alias].id
        if op.action == "delete":
            out.append(Delete(id=target))
        else:
            out.append(Update(id=target, schema_name=op.schema_name, content=op.content, data=op.data))
    return out


class MemoryManager:
    """One profile and one extractor; ``invoke`` and ``ainvoke`` share one code path."""

    def __init__(self, profile: Profile, extractor: Extractor) -> None:
        self.profile = profile
        self.extractor = extractor

    def invoke(
        self, payload: Mapping[str, Any] | None = None, /, *, messages: Any = None, existing: Any = None
    ) -> ManagerResult:
        """``invoke({"messages": [...], "existing": [...]})``, or the same as keywords."""
        if payload is not None:
            messages, existing = payload.get("messages", messages), payload.get("existing", existing)
        if not messages:
            raise ValueError("messages: give at least one message")
        turns = [_turn(m) for m in messages]
        records = [_record(e) for e in existing or []]
        out = self.extractor.extract(turns, records)
        return ManagerResult(
            ops=to_operations(out.ops, records),
            extractor=self.extractor.name,
            llm_calls=out.llm_calls,
            prompt_tokens=out.prompt_tokens,
            completion_tokens=out.completion_tokens,
            cost_usd=out.cost_usd,
        )

    async def ainvoke(
        self, payload: Mapping[str, Any] | None = None, /, *, messages: Any = None, existing: Any = None
    ) -> ManagerResult:
        """``invoke`` off the event loop (the same code, in a worker thread)."""
        return await asyncio.to_thread(self.invoke, payload, messages=messages, existing=existing)


def create_memory_manager(
    model: str | None = None,
    *,
    schemas: Sequence[type[BaseModel]] = (Memory,),
    instructions: str = DEFAULT_INSTRUCTIONS,
    enable_inserts: bool = True,
    enable_updates: bool = True,
    enable_deletes: bool = False,
    api_base: str | None = None,
    api_key: str | None = None,
    timeout_s: float = 60.0,
    max_retries: int = 3,
    validation_retries: int = 2,
    protocol: str = "tools",
    embedder: Embedder | str = "use-m3",
    profile: Profile | None = None,
) -> MemoryManager:
    """A manager for any litellm ``model``; ``None`` gives the offline manager (not an LLM), which
    needs the embedder it compares statements with."""
    profile = profile or Profile(
        name="manager",
        schemas=tuple(schemas),
        instructions=instructions,
        enable_inserts=enable_inserts,
        enable_updates=enable_updates,
        enable_deletes=enable_deletes,
    )
    if model is None:
        vectors = embedder_for(embedder) if isinstance(embedder, str) else embedder
        offline = OfflineExtractor(
            vectors,
            episodic=profile.episodic,
            inserts=profile.enable_inserts,
            updates=profile.enable_updates,
            deletes=profile.enable_deletes,
        )
        return MemoryManager(profile, offline)
    client = LLMClient(model, api_base=api_base, api_key=api_key, timeout_s=timeout_s, max_retries=max_retries)
    extractor = LLMExtractor(profile, client, validation_retries=validation_retries, protocol=protocol)
    return MemoryManager(profile, extractor)
