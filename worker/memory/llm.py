"""The chat-completion client every LLM feature shares (extraction, consolidation's merge, the
prompt optimizer, ``reverie health``): litellm loaded on first use, transport faults (429
honoring Retry-After, 5xx, timeouts) retried with tenacity, and usage counted per call."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from worker.errors import ExtractionFailed, LLMUnavailable
from worker.observability.logs import get_logger

log = get_logger("reverie.llm")


def load_litellm() -> Any:
    """Import litellm (about 6 s of CPU the first time) with the local cost map (no network)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    return litellm


WARM_PROVIDERS = frozenset({"openai", "azure", "anthropic", "hosted_vllm", "ollama_chat", "openrouter", "groq"})
"""Providers whose litellm path honours ``api_base``, so a warm-up call provably stays on loopback;
any other model warms the OpenAI-compatible path, the one most deployments use."""


def warm_call_path(model: str) -> float:
    """Pay the first call's lazy imports (provider SDK, HTTP client: about 0.6 s) at start-up, not
    in the first reflection: one completion through litellm's real path to a loopback port that
    is bound but not listening, so it is refused at once. No network, no tokens, nothing counted.
    Returns the seconds it took."""
    import threading
    import time

    litellm = load_litellm()
    try:
        provider = litellm.get_llm_provider(model)[1]
    except Exception:  # an unknown model fails at its first real call, with its own message
        provider = ""
    target = model if provider in WARM_PROVIDERS else "openai/reverie-warm-up"
    started = time.perf_counter()
    # In a thread of its own: litellm's service logger calls asyncio.get_event_loop(), which in
    # the main thread creates a loop that nothing closes; in another thread it runs and closes
    # its own. Imports and litellm's HTTP client cache are process-wide, so the warmth carries.
    warmer = threading.Thread(target=_refused_call, args=(litellm, target), name="reverie-llm-warm-up")
    warmer.start()
    warmer.join()
    return time.perf_counter() - started


def _refused_call(litellm: Any, model: str) -> None:
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # reserved for us; without listen() a connect is refused
        port = closed.getsockname()[1]
        try:
            litellm.completion(
                model=model,
                messages=[{"role": "user", "content": "warm-up"}],
                api_base=f"http://127.0.0.1:{port}/v1",
                api_key="warm-up",
                max_retries=0,
                num_retries=0,
                timeout=2,
            )
        except Exception as e:  # refused, as intended
            log.debug("llm call path warmed", error=type(e).__name__)


def is_transient(exc: BaseException) -> bool:
    litellm = load_litellm()
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


@dataclass(slots=True)
class Usage:
    """What calls cost, counted into by ``LLMClient.complete``: every attempt, whatever became of
    it (``failed_calls`` are the attempts that got no answer: 429, 5xx, timeouts)."""

    llm_calls: int = 0
    failed_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def add(self, other: Usage) -> None:
        self.llm_calls += other.llm_calls
        self.failed_calls += other.failed_calls
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cost_usd += other.cost_usd

    def stats(self) -> dict[str, int]:
        """The fleet-wide counters this usage adds to (``Coordinator.incr_stats``)."""
        return {
            "llm_calls": self.llm_calls,
            "llm_calls_failed": self.failed_calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_microusd": round(self.cost_usd * 1e6),
        }


class LLMClient:
    """One litellm model with its transport settings."""

    def __init__(
        self,
        model: str,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 3,
        backoff_max_s: float = 20.0,
    ) -> None:
        self.model = model
        self._kwargs: dict[str, Any] = {"timeout": timeout_s, "num_retries": 0}
        if api_base:
            self._kwargs["api_base"] = api_base
        if api_key:
            self._kwargs["api_key"] = api_key
        self.max_retries = max_retries
        self.backoff_max_s = backoff_max_s

    @classmethod
    def from_settings(cls, settings: Any, model: str | None = None) -> LLMClient:
        """The client for ``model`` (default ``REVERIE_MODEL``) with the settings' transport."""
        return cls(
            model or settings.model,
            api_base=settings.llm_api_base,
            api_key=settings.llm_api_key.get_secret_value() if settings.llm_api_key else None,
            timeout_s=settings.llm_timeout_s,
            max_retries=settings.llm_max_retries,
        )

    def complete(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, usage: Usage, **options: Any
    ) -> Any:
        """One chat completion with transport retries, counted into ``usage``. No ``tools``: a
        plain answer; ``options`` go to litellm as they are (``response_format``…)."""
        call = dict(self._kwargs, **options)
        if tools:
            call.update(tools=tools, tool_choice="auto")
        litellm = load_litellm()
        retrying = Retrying(
            retry=retry_if_exception(is_transient),
            stop=stop_after_attempt(self.max_retries + 1),
            wait=_WaitRetryAfter(multiplier=0.5, max=self.backoff_max_s),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    usage.llm_calls += 1
                    try:
                        response = litellm.completion(model=self.model, messages=messages, **call)
                    except Exception:
                        usage.failed_calls += 1
                        raise
        except Exception as e:
            if is_transient(e):
                raise LLMUnavailable(f"LLM failed after {self.max_retries + 1} attempts: {type(e).__name__}") from e
            raise ExtractionFailed(f"LLM call failed: {type(e).__name__}") from e
        tokens = getattr(response, "usage", None)
        if tokens is not None:
            usage.prompt_tokens += int(getattr(tokens, "prompt_tokens", 0) or 0)
            usage.completion_tokens += int(getattr(tokens, "completion_tokens", 0) or 0)
        cost = response_cost(litellm, response)
        if cost is None:  # the cost map has no price for this model (e.g. a local one): cost unknown
            log.debug("llm cost unknown", model=self.model)
        usage.cost_usd += cost or 0.0
        return response


def response_cost(litellm: Any, response: Any) -> float | None:
    """The price of one response in USD, None if litellm's price table has no entry. litellm
    prices every response it returns (``_hidden_params["response_cost"]``, None when unknown);
    pricing it again costs about 5% of a call's CPU, so only responses without it are."""
    hidden = getattr(response, "_hidden_params", None)
    if isinstance(hidden, dict) and "response_cost" in hidden:
        cost = hidden["response_cost"]
        return float(cost) if cost is not None else None
    try:
        return float(litellm.completion_cost(completion_response=response) or 0.0)
    except Exception:
        return None
