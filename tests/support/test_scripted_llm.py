"""The scripted LLM server, exercised through litellm's real OpenAI code path.

These pin down what the worker will actually see (exception classes, usage, tool-call
shapes) so later tests can rely on the stand-in behaving like a real provider.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # must precede the import: no network

import litellm

from tests.support.scripted_llm import Fault, ScriptedLLM, text_reply, tool_calls_reply

litellm.suppress_debug_info = True  # keep litellm's "Give Feedback" banner out of test output

MESSAGES = [{"role": "system", "content": "You save memories."}, {"role": "user", "content": "hello there"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "save_memory",
            "description": "Persist one memory.",
            "parameters": {
                "type": "object",
                "properties": {"content": {"type": "string"}},
                "required": ["content"],
            },
        },
    }
]


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedLLM]:
    with ScriptedLLM(embedding_dims=32) as srv:
        yield srv


@pytest.fixture
def srv(server: ScriptedLLM) -> ScriptedLLM:
    server.reset()
    server.latency_s = 0.0
    return server


def complete(srv: ScriptedLLM, **kw: Any) -> Any:
    args: dict[str, Any] = {
        "model": srv.model,
        "api_base": srv.base_url,
        "api_key": "sk-test",
        "messages": MESSAGES,
        "num_retries": 0,
        "max_retries": 0,
    }
    args.update(kw)
    return litellm.completion(**args)


def test_default_text_reply_and_usage(srv: ScriptedLLM) -> None:
    resp = complete(srv)
    assert resp.choices[0].message.content == "ok"
    assert resp.choices[0].finish_reason == "stop"
    # prompt estimate: (18 + 11 chars) // 4 + 1
    assert resp.usage.prompt_tokens == 8
    assert resp.usage.completion_tokens >= 1
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    assert srv.chat_calls == 1
    assert srv.chat_requests[0]["messages"] == MESSAGES
    assert srv.chat_requests[0]["model"] == "scripted"


def test_tool_calls_come_through_litellm(srv: ScriptedLLM) -> None:
    calls = [("save_memory", {"content": "likes tea"}), ("save_memory", {"content": "in Osaka"})]
    srv.enqueue(tool_calls_reply(calls))
    resp = complete(srv, tools=TOOLS)
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    got = choice.message.tool_calls
    assert [c.id for c in got] == ["call_0", "call_1"]
    assert [(c.function.name, json.loads(c.function.arguments)) for c in got] == calls
    assert srv.chat_requests[0]["tools"][0]["function"]["name"] == "save_memory"


def test_malformed_arguments_are_sent_raw(srv: ScriptedLLM) -> None:
    srv.enqueue(tool_calls_reply([("save_memory", '{"content": "unterminated')]))
    call = complete(srv, tools=TOOLS).choices[0].message.tool_calls[0]
    assert call.function.arguments == '{"content": "unterminated'
    with pytest.raises(json.JSONDecodeError):
        json.loads(call.function.arguments)


def test_queue_is_fifo_then_responder(srv: ScriptedLLM) -> None:
    srv.set_responder(lambda body: text_reply(f"echo:{body['messages'][-1]['content']}"))
    srv.enqueue(text_reply("first"), text_reply("second"))
    got = [complete(srv).choices[0].message.content for _ in range(3)]
    assert got == ["first", "second", "echo:hello there"]
    srv.reset()
    assert srv.chat_calls == 0
    assert complete(srv).choices[0].message.content == "ok"


def test_broken_responder_answers_500_and_is_recorded(srv: ScriptedLLM) -> None:
    def boom(_body: dict[str, Any]) -> Any:
        raise KeyError("missing")

    srv.set_responder(boom)
    with pytest.raises(litellm.InternalServerError):
        complete(srv)
    assert [type(e) for e in srv.responder_errors] == [KeyError]


def test_embeddings_deterministic_and_sized(srv: ScriptedLLM) -> None:
    def embed(inputs: list[str]) -> list[list[float]]:
        resp = litellm.embedding(model=srv.embedding_model, api_base=srv.base_url, api_key="sk-test", input=inputs)
        assert resp.usage.prompt_tokens >= 1
        return [d["embedding"] for d in resp.data]

    first = embed(["a", "b"])
    assert len(first) == 2
    assert all(len(v) == 32 for v in first)
    assert first[0] != first[1]
    assert abs(sum(x * x for x in first[0]) - 1.0) < 1e-6
    assert embed(["a", "b"]) == first
    assert embed(["b"])[0] == first[1]
    assert srv.embedding_calls == 3
    assert srv.embedding_requests[0]["input"] == ["a", "b"]


def test_429_is_rate_limit_error_with_retry_after(srv: ScriptedLLM) -> None:
    srv.enqueue(Fault.status(429, retry_after_s=1.0))
    with pytest.raises(litellm.RateLimitError) as info:
        complete(srv)
    assert info.value.status_code == 429
    # litellm keeps vendor headers off e.headers/e.response; they live on litellm_response_headers
    assert info.value.litellm_response_headers["retry-after"] == "1"
    assert srv.faults_served == 1
    assert srv.chat_calls == 1  # no hidden retries with num_retries=0/max_retries=0


def test_500_is_internal_server_error(srv: ScriptedLLM) -> None:
    srv.enqueue(Fault.status(500))
    with pytest.raises(litellm.InternalServerError) as info:
        complete(srv)
    assert info.value.status_code == 500


def test_timeout_fault_is_litellm_timeout(srv: ScriptedLLM) -> None:
    srv.enqueue(Fault.timeout(2.0))
    start = time.monotonic()
    with pytest.raises(litellm.Timeout):
        complete(srv, timeout=0.5)
    assert time.monotonic() - start < 1.8
    # the stalled handler thread does not block the next request
    assert complete(srv, timeout=5).choices[0].message.content == "ok"


def test_truncated_body_is_internal_server_error(srv: ScriptedLLM) -> None:
    # litellm maps the JSON decode failure of a 200 body to InternalServerError (status 500)
    srv.enqueue(Fault.truncated())
    with pytest.raises(litellm.InternalServerError):
        complete(srv)


def test_bad_args_uses_first_tool_name(srv: ScriptedLLM) -> None:
    srv.enqueue(Fault.bad_args())
    call = complete(srv, tools=TOOLS).choices[0].message.tool_calls[0]
    assert call.function.name == "save_memory"
    assert json.loads(call.function.arguments) == {"content": 123}
    assert srv.faults_served == 1


def test_latency_does_not_serialise_concurrent_calls(srv: ScriptedLLM) -> None:
    srv.latency_s = 0.5
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: complete(srv).choices[0].message.content, range(8)))
    elapsed = time.monotonic() - start
    assert results == ["ok"] * 8
    assert 0.5 <= elapsed < 2.5
    assert srv.chat_calls == 8


async def test_async_completion_path(srv: ScriptedLLM) -> None:
    srv.enqueue(text_reply("async ok"))
    resp = await litellm.acompletion(
        model=srv.model, api_base=srv.base_url, api_key="sk-test", messages=MESSAGES, max_retries=0
    )
    assert resp.choices[0].message.content == "async ok"


def test_fault_rate_one_yields_only_faults(srv: ScriptedLLM) -> None:
    srv.fault_timeout_s = 1.0
    srv.set_fault_rate(1.0)
    srv.enqueue(text_reply("never served while fault rate is 1.0"))
    outcomes: list[str] = []
    for _ in range(12):
        try:
            resp = complete(srv, tools=TOOLS, timeout=0.5)
        except (litellm.RateLimitError, litellm.InternalServerError, litellm.Timeout) as exc:
            outcomes.append(type(exc).__name__)
        else:  # only bad_args faults answer 200
            call = resp.choices[0].message.tool_calls[0]
            assert json.loads(call.function.arguments) == {"content": 123}
            outcomes.append("bad_args")
    assert srv.faults_served == srv.chat_calls == 12
    assert len(set(outcomes)) >= 2
    with pytest.raises(ValueError):
        srv.set_fault_rate(0.5, kinds=("418",))


def test_models_and_unknown_paths(srv: ScriptedLLM) -> None:
    with urllib.request.urlopen(f"{srv.base_url}/models", timeout=5) as resp:
        ids = {m["id"] for m in json.load(resp)["data"]}
    assert ids == {"scripted", "scripted-embed"}
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{srv.base_url}/nope", timeout=5)
    assert info.value.code == 404
    assert "error" in json.load(info.value)
    info.value.close()
