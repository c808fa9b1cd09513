"""Memory tools for agents on the hot path: LangMem's ``manage_memory`` and ``search_memory``.

``memory_tool_specs()`` gives OpenAI-format definitions; ``MemoryTools(runtime, user_id)``
executes calls for ONE user, bound at construction and never taken from tool arguments. Every
read goes through the user-filtered store and the profile's namespace; an id that is not one
of this user's memories answers exactly like an id that does not exist, so a tool call can
neither reach nor probe another user's data. Writes follow the reflection's rules: update
keeps id and ``created_at`` and bumps ``version``; delete honours the profile's
``delete_mode``; every change is recorded in the memory history and as a change event, exactly
once: the write is journaled before Qdrant and recorded by one script that deletes the journal
(``worker.memory.changes``); a call killed in between is finished by the user's next writer, and
each call first finishes what a dead one left (one ``HGETALL`` when there is nothing).

Tool calls do not take the user's lease (a reflection holds it through its model calls): against a
running reflection or another tool call the last write wins, as before; two calls at once each
journal and record their own change only.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.ids import check_id
from schemas.memory import MemoryRecord, MemorySource
from schemas.profiles import Profile, get_profile, namespace_key
from schemas.reflection import ChangeJournal, JournaledWrite, MemoryOp
from worker.memory.changes import Fault
from worker.memory.events import event_for_op
from worker.memory.history import entry_for_op
from worker.pipeline.faults import crash_point

if TYPE_CHECKING:
    from worker.runtime import Runtime

MANAGE = "manage_memory"
SEARCH = "search_memory"


class ManageArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["create", "update", "delete"] = Field(description="What to do.")
    content: str | None = Field(default=None, max_length=2000, description="Memory text (create, update).")
    id: str | None = Field(default=None, max_length=64, description="Memory id (update, delete).")


class SearchArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=2000, description="What to look for.")
    limit: int = Field(default=5, ge=1, le=50, description="How many memories to return.")


def _spec(name: str, description: str, model: type[BaseModel]) -> dict[str, Any]:
    params = model.model_json_schema()
    params.pop("title", None)
    return {"type": "function", "function": {"name": name, "description": description, "parameters": params}}


def memory_tool_specs() -> list[dict[str, Any]]:
    """OpenAI-format tool definitions for an agent's tool list."""
    return [
        _spec(MANAGE, "Create, update or delete a long-term memory about the user.", ManageArgs),
        _spec(SEARCH, "Search the user's long-term memories.", SearchArgs),
    ]


class MemoryTools:
    """Executors bound to one user (and one profile namespace)."""

    def __init__(
        self,
        runtime: Runtime,
        user_id: str,
        *,
        profile: str | Profile = "default",
        thread_id: str = "",
        fault: Fault = crash_point,
    ) -> None:
        """``fault``: the crash tests' seam between the journal, Qdrant and record steps."""
        self.runtime = runtime
        self.fault = fault
        self.user_id = check_id(user_id)
        self.profile = profile if isinstance(profile, Profile) else get_profile(profile)
        self.thread_id = thread_id
        self.ns = self.profile.format_namespace(user_id, thread_id)

    def execute(self, name: str, arguments: str | dict[str, Any]) -> dict[str, Any]:
        """Run one tool call; errors come back as ``{"error": ...}`` for the agent to read."""
        try:
            args = json.loads(arguments) if isinstance(arguments, str) else dict(arguments)
            if name == MANAGE:
                return self.manage_memory(ManageArgs.model_validate(args))
            if name == SEARCH:
                return self.search_memory(SearchArgs.model_validate(args))
            return {"error": f"unknown tool {name!r}"}
        except (json.JSONDecodeError, ValidationError, ValueError) as e:
            return {"error": f"invalid arguments: {str(e)[:300]}"}

    def search_memory(self, args: SearchArgs) -> dict[str, Any]:
        found = self.runtime.store.search(self.user_id, args.query, limit=args.limit, ns=namespace_key(self.ns))
        return {"memories": [{"id": m.id, "content": m.content, "kind": m.kind} for m in found]}

    def _mine(self, memory_id: str | None) -> MemoryRecord | None:
        if not memory_id:
            return None
        try:
            found = self.runtime.store.get(self.user_id, [memory_id])
        except ValueError:  # not a UUID: cannot be anyone's memory
            return None
        return next((m for m in found if m.ns == list(self.ns)), None)

    def manage_memory(self, args: ManageArgs) -> dict[str, Any]:
        self.runtime.changes.replay(self.user_id, fault=self.fault)  # what a dead call left, first
        now_ms = int(time.time() * 1000)
        if args.action == "create":
            if not args.content:
                return {"error": "create needs content"}
            op = MemoryOp(
                op="insert",
                id=str(uuid.uuid4()),
                kind=self.profile.kind,
                content=args.content,
                data={"content": args.content},
                created_at_ms=now_ms,
                ns=list(self.ns),
            )
        else:
            target = self._mine(args.id)
            if target is None:
                return {"error": f"no memory with id {args.id!r}"}
            if args.action == "delete":
                op = MemoryOp(
                    op="delete",
                    id=target.id,
                    kind=target.kind,
                    tombstone=self.profile.delete_mode == "tombstone",
                    previous_content=target.content,
                )
            else:
                if not args.content:
                    return {"error": "update needs content"}
                op = MemoryOp(
                    op="update",
                    id=target.id,
                    kind=target.kind,
                    content=args.content,
                    data={"content": args.content},
                    created_at_ms=int(target.created_at.timestamp() * 1000),
                    version=target.version + 1,
                    ns=list(self.ns),
                    previous_content=target.content,
                )
        self.runtime.changes.commit(self._journal(op, now_ms), fault=self.fault)
        return {"id": op.id, "action": args.action, "version": None if op.op == "delete" else op.version}

    def _journal(self, op: MemoryOp, now_ms: int) -> ChangeJournal:
        thread = self.thread_id or None
        entry = entry_for_op(op, at_ms=now_ms, reflection=f"tool:{MANAGE}", thread_id=thread)
        # the memory id in the source keeps event ids unique when two calls share a millisecond
        source = f"tool:{op.id}"
        event = event_for_op(self.user_id, op, source=source, at_ms=now_ms, index=0, thread_id=thread)
        return ChangeJournal(
            change_id=f"{source}:{now_ms}",
            user_id=self.user_id,
            at_ms=now_ms,
            writes=[JournaledWrite(ops=[op], source=MemorySource(thread_id=thread))],
            entries=[entry],
            events=[event],
        )
