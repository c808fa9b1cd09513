"""LLM extraction through litellm tool calling, with bounded validation feedback.

One call normally does everything (parallel tool calls). If some calls are invalid (bad JSON,
wrong types, an alias that was never shown), the errors go back to the model as tool results
and it may fix just those, at most ``validation_retries`` times. After that the whole
extraction fails and nothing is written. Transport faults are retried by ``LLMClient``.
"""

from __future__ import annotations

import json
from typing import Any

from schemas.memory import MemoryRecord
from schemas.messages import BufferedTurn
from schemas.profiles import Profile
from worker.errors import ExtractionFailed
from worker.memory.extraction.base import ExtractionOutput, PlannedOp
from worker.memory.extraction.prompt import build_messages
from worker.memory.extraction.tools import ToolCall, judge, tool_specs
from worker.memory.llm import LLMClient
from worker.observability.logs import get_logger

log = get_logger("reverie.extraction")


class LLMExtractor:
    """Memory manager backed by any litellm chat model that supports tool calling."""

    def __init__(self, profile: Profile, client: LLMClient, *, validation_retries: int = 2) -> None:
        self.profile = profile
        self.client = client
        self.model = client.model
        self.name = f"llm:{client.model}"
        self.validation_retries = validation_retries
        # Building the specs runs pydantic's JSON-schema generation (~1.5 ms); do it once per
        # extractor (one per profile) and hand each call a fresh copy, in case a provider
        # adapter mutates the list.
        self._tools_json = json.dumps(tool_specs(profile))

    def extract(self, turns: list[BufferedTurn], existing: list[MemoryRecord]) -> ExtractionOutput:
        tools = json.loads(self._tools_json)
        messages = build_messages(self.profile, turns, existing)
        out = ExtractionOutput(ops=[])
        accepted: list[PlannedOp] = []
        for round_no in range(self.validation_retries + 1):
            response = self.client.complete(messages, tools, out)
            message = response.choices[0].message
            calls = [
                ToolCall(tc.id or f"call_{i}", tc.function.name or "", tc.function.arguments or "")
                for i, tc in enumerate(message.tool_calls or [])
            ]
            verdicts = [judge(c, self.profile, len(existing)) for c in calls]
            accepted.extend(v.op for v in verdicts if v.op is not None)
            failed = [v for v in verdicts if v.error is not None]
            if not failed:
                out.ops = _last_per_alias(accepted)
                return out
            out.validation_errors += len(failed)
            log.info("tool call validation failed", round=round_no, errors=len(failed))
            messages = [*messages, *_correction(message, calls, verdicts)]
        raise ExtractionFailed(f"tool arguments still invalid after {self.validation_retries} correction round(s)")


def _correction(message: Any, calls: list[ToolCall], verdicts: list[Any]) -> list[dict[str, Any]]:
    """The model's reply, a tool result per call (the error, or ok), and the request to redo."""
    return [
        {
            "role": "assistant",
            "content": message.content or None,
            "tool_calls": [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in calls
            ],
        },
        *[
            {"role": "tool", "tool_call_id": v.call.id, "content": f"ERROR: {v.error}" if v.error else "ok"}
            for v in verdicts
        ],
        {"role": "user", "content": "Some tool calls failed. Repeat only the failed ones, corrected."},
    ]


def _last_per_alias(ops: list[PlannedOp]) -> list[PlannedOp]:
    """If the model touched one memory twice, its last word counts."""
    seen: dict[int, int] = {}
    out: list[PlannedOp] = []
    for op in ops:
        if op.alias is not None and op.alias in seen:
            out[seen[op.alias]] = op
            continue
        if op.alias is not None:
            seen[op.alias] = len(out)
        out.append(op)
    return out
