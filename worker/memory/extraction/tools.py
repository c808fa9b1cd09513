"""Tool definitions generated from pydantic schemas, and validation of the model's tool calls.

Pure functions: no litellm here. For a schema ``UserFoodPreference`` the model gets
``insert_user_food_preference(**fields)``, ``update_user_food_preference(memory_id, **fields)``
and, if deletes are on, ``delete_memory(memory_id)``. ``memory_id`` is a short alias ("0", "1")
into the list of existing memories shown in the prompt; any other value is rejected.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from schemas.memory import Episode, MemoryKind
from schemas.profiles import Profile
from worker.memory.extraction.base import PlannedOp, render_content

DELETE_TOOL = "delete_memory"
EPISODE_TOOL = "record_episode"


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class CallVerdict:
    call: ToolCall
    op: PlannedOp | None
    error: str | None


def _params(schema: type[BaseModel], with_id: bool) -> dict[str, Any]:
    params = schema.model_json_schema()
    params.pop("title", None)
    if with_id:
        props = {"memory_id": {"type": "string", "description": "Alias of the existing memory, e.g. '0'."}}
        props.update(params.get("properties", {}))
        params["properties"] = props
        params["required"] = ["memory_id", *params.get("required", [])]
    return params


def tool_specs(profile: Profile) -> list[dict[str, Any]]:
    """OpenAI-format tool definitions for the profile's schemas and enabled actions."""
    specs = []
    for schema in profile.schemas:
        name = snake(schema.__name__)
        doc = (schema.__doc__ or schema.__name__).strip().splitlines()[0]
        if profile.enable_inserts:
            specs.append(_spec(f"insert_{name}", f"Insert a new memory. {doc}", _params(schema, False)))
        if profile.enable_updates:
            specs.append(_spec(f"update_{name}", f"Replace existing memory `memory_id`. {doc}", _params(schema, True)))
    if profile.enable_deletes:
        params = {
            "type": "object",
            "properties": {"memory_id": {"type": "string", "description": "Alias of the memory to delete."}},
            "required": ["memory_id"],
        }
        specs.append(_spec(DELETE_TOOL, "Delete an existing memory that is no longer true.", params))
    if profile.episodic:
        doc = "Record this conversation as an episode: what happened and its outcome. Call it once."
        specs.append(_spec(EPISODE_TOOL, doc, _params(Episode, False)))
    return specs


def _spec(name: str, description: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": params}}


def _schemas_by_tool(profile: Profile) -> dict[str, tuple[str, type[BaseModel]]]:
    out: dict[str, tuple[str, type[BaseModel]]] = {}
    for schema in profile.schemas:
        name = snake(schema.__name__)
        if profile.enable_inserts:
            out[f"insert_{name}"] = ("insert", schema)
        if profile.enable_updates:
            out[f"update_{name}"] = ("update", schema)
    return out


def _alias(args: dict[str, Any], n_existing: int) -> int:
    raw = args.pop("memory_id", None)
    text = str(raw).strip() if raw is not None else ""
    if not text.isdigit() or int(text) >= n_existing:
        valid = f"'0'..'{n_existing - 1}'" if n_existing else "none (there are no existing memories)"
        raise ValueError(f"memory_id {text[:40]!r} is not one of the existing memories; valid: {valid}")
    return int(text)


def _accepted(call_name: str, profile: Profile) -> set[str] | None:
    """The argument names a tool takes (None: not one of the profile's tools)."""
    if call_name == DELETE_TOOL and profile.enable_deletes:
        return {"memory_id"}
    if call_name == EPISODE_TOOL and profile.episodic:
        return set(Episode.model_fields)
    found = _schemas_by_tool(profile).get(call_name)
    if found is None:
        return None
    action, schema = found
    fields = {f.alias or name for name, f in schema.model_fields.items()} | set(schema.model_fields)
    return fields | ({"memory_id"} if action == "update" else set())


def _unknown_arguments(call_name: str, args: dict[str, Any], profile: Profile) -> str | None:
    """Refuse arguments the tool was not offered with (an ``id``, a ``user_id``…): the model must
    learn that memories are addressed by ``memory_id`` among those shown, and by nothing else."""
    accepted = _accepted(call_name, profile)
    extra = sorted(set(args) - accepted) if accepted is not None else []
    if not extra:
        return None
    names = ", ".join(repr(x[:40]) for x in extra[:5])
    return f"unknown argument(s) {names}: {call_name} takes only {sorted(accepted or ())}"


def judge(call: ToolCall, profile: Profile, n_existing: int) -> CallVerdict:
    """Validate one tool call into a ``PlannedOp``, or explain what is wrong with it."""
    try:
        args = json.loads(call.arguments or "{}")
    except json.JSONDecodeError as e:
        return CallVerdict(call, None, f"arguments are not valid JSON ({e.msg} at position {e.pos})")
    if not isinstance(args, dict):
        return CallVerdict(call, None, "arguments must be a JSON object")
    unknown = _unknown_arguments(call.name, args, profile)
    if unknown:
        return CallVerdict(call, None, unknown)
    try:
        if call.name == DELETE_TOOL and profile.enable_deletes:
            return CallVerdict(call, PlannedOp("delete", alias=_alias(args, n_existing)), None)
        if call.name == EPISODE_TOOL and profile.episodic:
            data = Episode.model_validate(args).model_dump(mode="json")
            content = f"{data['summary']} (outcome: {data['outcome']})" if data["outcome"] else data["summary"]
            return CallVerdict(call, PlannedOp("insert", "Episode", data, content, kind=MemoryKind.EPISODE), None)
        kind = _schemas_by_tool(profile).get(call.name)
        if kind is None:
            return CallVerdict(call, None, f"unknown or disabled tool {call.name!r}")
        action, schema = kind
        alias = _alias(args, n_existing) if action == "update" else None
        data = schema.model_validate(args).model_dump(mode="json")
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}"
            for err in e.errors(include_url=False, include_input=False)
        )
        return CallVerdict(call, None, f"invalid arguments: {problems}")
    except ValueError as e:
        return CallVerdict(call, None, str(e))
    name = schema.__name__
    return CallVerdict(call, PlannedOp(action, name, data, render_content(name, data), alias), None)  # type: ignore[arg-type]
