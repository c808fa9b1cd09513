"""How the model is asked for memory operations, and how its answer is read back as tool calls.

- ``tools`` (default): OpenAI tool calling. A model whose server does not map tool calls
  (llama.cpp without ``--jinja``, vLLM without a tool parser, some Ollama models) often writes
  them as JSON text instead; those are read from the text, as if they had been real calls.
- ``json``: no tools; the operations are asked for as one JSON object under ``response_format``
  with a JSON schema (mem0's way; llama.cpp and Ollama constrain their output to it). Each
  operation names a tool and its arguments, and is validated exactly like a tool call.

Either way every call then goes through ``tools.judge`` (aliases, schemas, unknown arguments).
"""

from __future__ import annotations

import json
import re
from typing import Any, Protocol

from worker.memory.extraction.tools import CallVerdict, ToolCall

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)
NUDGE = (
    "You answered in text. Answer only with tool calls: call the tools for every insert, update or "
    "delete the conversation needs, or call none if nothing is worth remembering."
)


def _as_calls(value: Any) -> list[ToolCall] | None:
    """Tool calls from a decoded JSON value, in the shapes models write them; None if it is not that."""
    if isinstance(value, dict) and isinstance(value.get("tool_calls"), list):
        value = value["tool_calls"]
    if isinstance(value, dict) and isinstance(value.get("operations"), list):
        value = value["operations"]
    items = value if isinstance(value, list) else [value]
    calls: list[ToolCall] = []
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            return None
        fn = item.get("function") if isinstance(item.get("function"), dict) else item
        name = fn.get("name") or fn.get("tool")
        args = fn.get("arguments", fn.get("parameters", fn.get("args")))
        if not isinstance(name, str) or args is None:
            return None
        text = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
        calls.append(ToolCall(f"text_{n}", name, text))
    return calls


def calls_in_text(content: str | None) -> list[ToolCall] | None:
    """Tool calls a model wrote as JSON in its text (bare, or in a ``json`` code fence)."""
    if not content or not content.strip():
        return None
    for candidate in [*_FENCE.findall(content), content]:
        try:
            value = json.loads(candidate.strip())
        except ValueError:
            continue
        calls = _as_calls(value)
        if calls is not None:
            return calls
    return None


class AnswerProtocol(Protocol):
    name: str

    def request(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None, dict[str, Any]]: ...

    def calls(self, message: Any) -> tuple[list[ToolCall] | None, bool]:
        """The calls of a reply (None: text only), and whether they were read from text."""
        ...

    def correction(self, message: Any, calls: list[ToolCall], verdicts: list[CallVerdict]) -> list[dict[str, Any]]: ...


class ToolsProtocol:
    name = "tools"

    def request(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None, dict[str, Any]]:
        return messages, tools, {}

    def calls(self, message: Any) -> tuple[list[ToolCall] | None, bool]:
        native = [
            ToolCall(tc.id or f"call_{i}", tc.function.name or "", tc.function.arguments or "")
            for i, tc in enumerate(message.tool_calls or [])
        ]
        if native:
            return native, False
        found = calls_in_text(message.content)
        return found, found is not None

    def correction(self, message: Any, calls: list[ToolCall], verdicts: list[CallVerdict]) -> list[dict[str, Any]]:
        """The reply, a tool result per call (the error, or ok), and the request to redo."""
        return [
            {
                "role": "assistant",
                "content": message.content or None,
                "tool_calls": [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                    for c in calls
                ],
            },
            *[
                {"role": "tool", "tool_call_id": v.call.id, "content": f"ERROR: {v.error}" if v.error else "ok"}
                for v in verdicts
            ],
            {"role": "user", "content": "Some tool calls failed. Repeat only the failed ones, corrected."},
        ]


def operations_schema(tools: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON schema of ``{"operations": [{"tool": name, "arguments": {...}}, ...]}``."""
    variants = [
        {
            "type": "object",
            "properties": {"tool": {"const": t["function"]["name"]}, "arguments": t["function"]["parameters"]},
            "required": ["tool", "arguments"],
        }
        for t in tools
    ]
    return {
        "type": "object",
        "properties": {"operations": {"type": "array", "items": {"anyOf": variants}}},
        "required": ["operations"],
    }


class JsonProtocol:
    name = "json"

    def request(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None, dict[str, Any]]:
        listing = "\n".join(
            f"- {t['function']['name']}: {t['function']['description']} Arguments (JSON schema): "
            f"{json.dumps(t['function']['parameters'], ensure_ascii=False)}"
            for t in tools
        )
        how = (
            'Answer with one JSON object and nothing else: {"operations": [{"tool": "<name>", "arguments": '
            '{...}}, ...]}, one operation per insert, update or delete, or {"operations": []} if nothing is '
            f"worth remembering. The tools:\n{listing}"
        )
        system = {**messages[0], "content": f"{messages[0]['content']}\n\n{how}"}
        schema = {"name": "memory_operations", "schema": operations_schema(tools)}
        return [system, *messages[1:]], None, {"response_format": {"type": "json_schema", "json_schema": schema}}

    def calls(self, message: Any) -> tuple[list[ToolCall] | None, bool]:
        return calls_in_text(message.content), False

    def correction(self, message: Any, calls: list[ToolCall], verdicts: list[CallVerdict]) -> list[dict[str, Any]]:
        errors = "\n".join(f"- operation {n} ({v.call.name}): {v.error}" for n, v in enumerate(verdicts) if v.error)
        return [
            {"role": "assistant", "content": message.content or ""},
            {
                "role": "user",
                "content": f"Some operations failed:\n{errors}\nAnswer again with a JSON object holding only "
                "the failed operations, corrected.",
            },
        ]


PROTOCOLS: dict[str, type[ToolsProtocol] | type[JsonProtocol]] = {"tools": ToolsProtocol, "json": JsonProtocol}
