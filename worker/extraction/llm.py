"""LLM extraction through litellm tool calling, with bounded validation feedback.

One call normally does everything (parallel tool calls). If some calls are invalid (bad JSON,
wrong types, an alias that was never shown), the errors go back to the model as tool results
and it may fix just those, at most ``validation_retries`` times. After that the whole
extraction fails and nothing is written. Transport faults (429 honoring Retry-After, 5xx,
timeouts) are retried with tenacity, with exponential backoff and jitter.
"""

from __future__ import annotations

import json
import os
from typing import Any

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from schemas.memory import MemoryRecord
from schemas.messages import BufferedTurn
from worker.errors import ExtractionFailed, LLMUnavailable
from worker.extraction.base import ExtractionOutput, PlannedOp
from worker.extraction.prompt import build_messages
from worker.extraction.tools import ToolCall, judge, tool_specs
from worker.logs import get_logger
from worker.profiles import Profile

log = get_logger("reverie.extraction")


def _litellm() -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    return litellm


def _transient(exc: BaseException) -> bool:
    litellm = _litellm()
    return isinstance(
        exc,
        litellm.RateLimitError
        | litellm.InternalServerError
        | litellm.ServiceUnavailableError
        | litellm.Timeout
        | litellm.APIConnectionError
        | litellm.BadGatewayError,
    ) or (isinstance(exc, litellm.APIError) and getattr(exc, "status_code", 500) >= 500)


def retry_after_s(exc: BaseException | None) -> float | None:
    """Seconds from a Retry-After header on a litellm error, if the provider sent one."""
    # litellm strips vendor headers from ``e.response``; they survive on litellm_response_headers.
    headers = getattr(exc, "litellm_response_headers", None) or getattr(getattr(exc, "response", None), "headers", None)
    value = headers.get("retry-after") if headers is not None and hasattr(headers, "get") else None
    try:
        return min(float(value), 60.0) if value is not None else None
    except ValueError:
        return None


class _WaitRetryAfter(wait_random_exponential):
    def __call__(self, retry_state: RetryCallState) -> float:
        hinted = retry_after_s(retry_state.outcome.exception() if retry_state.outcome else None)
        return hinted if hinted is not None else super().__call__(retry_state)


class LLMExtractor:
    """Memory manager backed by any litellm chat model that supports tool calling."""

    def __init__(
        self,
        profile: Profile,
        *,
        model: str,
        api_base: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 3,
        validation_retries: int = 2,
        backoff_max_s: float = 20.0,
    ) -> None:
        self.profile = profile
        self.model = model
        self.name = f"llm:{model}"
        self._kwargs: dict[str, Any] = {"timeout": timeout_s, "num_retries": 0}
        if api_base:
            self._kwargs["api_base"] = api_base
        if api_key:
            self._kwargs["api_key"] = api_key
        self.max_retries = max_retries
        self.validation_retries = validation_retries
        self.backoff_max_s = backoff_max_s
        # Building the specs runs pydantic's JSON-schema generation (~1.5 ms); do it once per
        # extractor (one per profile) and hand each call a fresh copy, in case a provider
        # adapter mutates the list.
        self._tools_json = json.dumps(tool_specs(profile))

    def _complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], out: ExtractionOutput) -> Any:
        litellm = _litellm()
        retrying = Retrying(
            retry=retry_if_exception(_transient),
            stop=stop_after_attempt(self.max_retries + 1),
            wait=_WaitRetryAfter(multiplier=0.5, max=self.backoff_max_s),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    out.llm_calls += 1
                    response = litellm.completion(
                        model=self.model, messages=messages, tools=tools, tool_choice="auto", **self._kwargs
                    )
        except Exception as e:
            if _transient(e):
                raise LLMUnavailable(f"LLM failed after {self.max_retries + 1} attempts: {type(e).__name__}") from e
            raise ExtractionFailed(f"LLM call failed: {type(e).__name__}") from e
        usage = getattr(response, "usage", None)
        if usage is not None:
            out.prompt_tokens += int(getattr(usage, "prompt_tokens", 0) or 0)
            out.completion_tokens += int(getattr(usage, "completion_tokens", 0) or 0)
        try:
            out.cost_usd += float(litellm.completion_cost(completion_response=response) or 0.0)
        except Exception:  # cost map has no price for this model (e.g. a local one): cost unknown
            log.debug("llm cost unknown", model=self.model)
        return response

    def complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], out: ExtractionOutput) -> Any:
        """One chat completion with transport retries, counted into ``out`` (also used by the
        consolidation merge and the prompt optimizer)."""
        return self._complete(messages, tools, out)

    def extract(self, turns: list[BufferedTurn], existing: list[MemoryRecord]) -> ExtractionOutput:
        tools = json.loads(self._tools_json)
        messages = build_messages(self.profile, turns, existing)
        out = ExtractionOutput(ops=[])
        accepted: list[PlannedOp] = []
        for round_no in range(self.validation_retries + 1):
            response = self._complete(messages, tools, out)
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
            messages = [
                *messages,
                {
                    "role": "assistant",
                    "content": message.content or None,
                    "tool_calls": [
                        {
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments},
                        }
                        for c in calls
                    ],
                },
                *[
                    {
                        "role": "tool",
                        "tool_call_id": v.call.id,
                        "content": f"ERROR: {v.error}" if v.error else "ok",
                    }
                    for v in verdicts
                ],
                {
                    "role": "user",
                    "content": "Some tool calls failed. Repeat only the failed ones, corrected.",
                },
            ]
        raise ExtractionFailed(f"tool arguments still invalid after {self.validation_retries} correction round(s)")


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
