"""LLM extraction through litellm, with bounded validation feedback.

One call normally does everything (parallel tool calls, or one JSON object: ``protocol``). If
some operations are invalid (bad JSON, wrong types, an alias that was never shown, an argument
the tool does not take), the errors go back to the model and it may fix just those, at most
``validation_retries`` times. After that the whole extraction fails and nothing is written. A
reply in text with no operation at all, to turns from the user, is counted and sent back once
with the instruction to answer with operations. Transport faults are retried by ``LLMClient``.
"""

from __future__ import annotations

import json
import threading

from schemas.memory import MemoryRecord
from schemas.messages import BufferedTurn
from schemas.profiles import Profile
from worker.errors import ExtractionFailed
from worker.memory.extraction.base import ExtractionOutput, PlannedOp
from worker.memory.extraction.prompt import build_messages
from worker.memory.extraction.protocol import NUDGE, PROTOCOLS, AnswerProtocol
from worker.memory.extraction.tools import judge, tool_specs
from worker.memory.llm import LLMClient
from worker.observability.logs import get_logger

log = get_logger("reverie.extraction")


class LLMExtractor:
    """Memory manager backed by any litellm chat model: tool calling, or JSON (``protocol``)."""

    def __init__(
        self, profile: Profile, client: LLMClient, *, validation_retries: int = 2, protocol: str = "tools"
    ) -> None:
        self.profile = profile
        self.client = client
        self.model = client.model
        self.name = f"llm:{client.model}"
        self.validation_retries = validation_retries
        self.protocol: AnswerProtocol = PROTOCOLS[protocol]()
        # Building the specs runs pydantic's JSON-schema generation (~1.5 ms); do it once per
        # extractor (one per profile) and hand each call a fresh copy, in case a provider
        # adapter mutates the list.
        self._tools_json = json.dumps(tool_specs(profile))

    def extract(self, turns: list[BufferedTurn], existing: list[MemoryRecord]) -> ExtractionOutput:
        out = ExtractionOutput(ops=[])
        try:
            return self._extract(turns, existing, out)
        except Exception as e:  # the calls were made (and paid for) all the same: say so
            e.usage = out  # type: ignore[attr-defined]
            raise

    def _extract(
        self, turns: list[BufferedTurn], existing: list[MemoryRecord], out: ExtractionOutput
    ) -> ExtractionOutput:
        messages, tools, options = self.protocol.request(
            build_messages(self.profile, turns, existing), json.loads(self._tools_json)
        )
        accepted: list[PlannedOp] = []
        nudged = False
        round_no = 0
        while round_no <= self.validation_retries:
            message = self.client.complete(messages, tools, out, **options).choices[0].message
            calls, from_text = self.protocol.calls(message)
            out.text_tool_calls += len(calls) if from_text and calls else 0
            if calls is None:  # text, no operation at all
                if any(t.role == "user" for t in turns):
                    out.text_replies += 1
                    _warn_text_reply_once(self.model, self.protocol.name)
                    if not nudged:  # once: the model may just need telling
                        nudged = True
                        messages = [*messages, {"role": "assistant", "content": message.content or ""}]
                        messages.append({"role": "user", "content": NUDGE})
                        continue
                calls = []
            verdicts = [judge(c, self.profile, len(existing)) for c in calls]
            accepted.extend(v.op for v in verdicts if v.op is not None)
            failed = [v for v in verdicts if v.error is not None]
            if not failed:
                out.ops = _last_per_alias(accepted)
                return out
            out.validation_errors += len(failed)
            log.info("tool call validation failed", round=round_no, errors=len(failed))
            messages = [*messages, *self.protocol.correction(message, calls, verdicts)]
            round_no += 1
        raise ExtractionFailed(f"tool arguments still invalid after {self.validation_retries} correction round(s)")


_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def _warn_text_reply_once(model: str, protocol: str) -> None:
    """Once per model and process: a model that answers in text looks like "nothing to remember"."""
    with _warned_lock:
        if (model, protocol) in _warned:
            return
        _warned.add((model, protocol))
    hint = (
        "its server may not map tool calls (llama.cpp: run with --jinja; vLLM: --enable-auto-tool-choice and "
        "a --tool-call-parser; Ollama: a model with tool support), or set REVERIE_LLM_PROTOCOL=json"
        if protocol == "tools"
        else "it did not return the JSON object asked for; check that the server honours response_format"
    )
    log.warning("model answered in text, not with memory operations", model=model, protocol=protocol, hint=hint)


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
