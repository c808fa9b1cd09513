"""Models that do not do tool calling: a text answer is its own outcome (counted, warned about
once, sent back once), tool calls written as text are read, and the JSON protocol asks for the
operations under response_format and validates them exactly like tool calls."""

from __future__ import annotations

import json
from typing import Any

from structlog.testing import capture_logs

from schemas.messages import BufferedTurn
from schemas.profiles import Profile
from tests.conftest import uid
from tests.support.scripted_llm import ScriptedLLM, text_reply, tool_calls_reply
from worker.memory.extraction import LLMExtractor
from worker.memory.extraction import llm as llm_module
from worker.memory.extraction.protocol import NUDGE, calls_in_text
from worker.memory.llm import LLMClient

PROFILE = Profile(name="default")


def extractor(llm: ScriptedLLM, protocol: str = "tools") -> LLMExtractor:
    return LLMExtractor(PROFILE, LLMClient(llm.model, api_base=llm.base_url, api_key="sk-test"), protocol=protocol)


def said(*texts: str) -> list[BufferedTurn]:
    return [BufferedTurn(role="user", content=t, ts_ms=0) for t in texts]


def test_tool_calls_written_as_text_are_read_as_calls(scripted: ScriptedLLM) -> None:
    """What Qwen2.5 behind llama.cpp without --jinja answered: the call as JSON in `content`."""
    scripted.enqueue(text_reply('{"name": "insert_memory", "arguments": {"content": "I love ramen and pasta."}}'))
    out = extractor(scripted).extract(said("I love ramen and pasta."), [])
    assert [op.content for op in out.ops] == ["I love ramen and pasta."]
    assert (out.text_tool_calls, out.text_replies, out.llm_calls) == (1, 0, 1)


def test_calls_in_text_read_the_shapes_models_write() -> None:
    fenced = (
        'Here you go:\n```json\n[{"function": {"name": "insert_memory", "arguments": "{\\"content\\": \\"x\\"}"}}]\n```'
    )
    assert [(c.name, json.loads(c.arguments)) for c in calls_in_text(fenced) or []] == [
        ("insert_memory", {"content": "x"})
    ]
    ops = '{"operations": [{"tool": "delete_memory", "arguments": {"memory_id": "0"}}]}'
    assert [c.name for c in calls_in_text(ops) or []] == ["delete_memory"]
    assert calls_in_text("I'll remember that you like ramen!") is None and calls_in_text('{"a": 1}') is None


def test_a_text_answer_is_sent_back_once_counted_and_warned_about_once(scripted: ScriptedLLM) -> None:
    scripted.enqueue(
        text_reply("Noted, you love ramen!"),
        tool_calls_reply([("insert_memory", {"content": "The user loves ramen"})]),
        text_reply("ok"),
        text_reply("still ok"),
    )
    ex = extractor(scripted)
    llm_module._warned.clear()  # once per model and process: start from a process that has not warned
    with capture_logs() as logs:
        first = ex.extract(said("I love ramen"), [])
        second = ex.extract(said("and I like tea"), [])
    assert [op.content for op in first.ops] == ["The user loves ramen"]
    assert (first.text_replies, first.llm_calls) == (1, 2)
    assert scripted.chat_requests[1]["messages"][-1]["content"] == NUDGE
    assert (second.ops, second.text_replies, second.llm_calls) == ([], 2, 2)  # taken as nothing, after one nudge
    warned = [e for e in logs if e["event"] == "model answered in text, not with memory operations"]
    assert (
        len(warned) == 1 and warned[0]["model"] == scripted.model and "REVERIE_LLM_PROTOCOL=json" in warned[0]["hint"]
    )


def test_a_text_answer_to_assistant_turns_only_is_no_outcome(scripted: ScriptedLLM) -> None:
    scripted.enqueue(text_reply("nothing here"))
    out = extractor(scripted).extract([BufferedTurn(role="assistant", content="Hello!", ts_ms=0)], [])
    assert (out.ops, out.text_replies, out.llm_calls) == ([], 0, 1)


def test_arguments_the_tool_was_not_offered_are_refused_and_sent_back(scripted: ScriptedLLM) -> None:
    """An `id` or `user_id` inside insert_memory is not ignored: the model learns it cannot
    address memories that way."""
    scripted.enqueue(
        tool_calls_reply([("insert_memory", {"content": "x", "id": "42", "user_id": "bob"})]),
        tool_calls_reply([("insert_memory", {"content": "The user plays chess"})]),
    )
    out = extractor(scripted).extract(said("I play chess"), [])
    assert [op.content for op in out.ops] == ["The user plays chess"] and out.validation_errors == 1
    error = next(m["content"] for m in scripted.chat_requests[1]["messages"] if m["role"] == "tool")
    assert "unknown argument(s) 'id', 'user_id'" in error and "insert_memory takes only ['content']" in error


def test_the_json_protocol_asks_under_response_format_and_validates_the_same(scripted: ScriptedLLM) -> None:
    def model(body: dict[str, Any]) -> Any:
        assert "tools" not in body and body["response_format"]["type"] == "json_schema"
        schema = body["response_format"]["json_schema"]["schema"]
        assert schema["properties"]["operations"]["items"]["anyOf"][0]["properties"]["tool"] == {
            "const": "insert_memory"
        }
        if len(scripted.chat_requests) == 1:
            return text_reply('{"operations": [{"tool": "insert_memory", "arguments": {"content": 7}}]}')
        assert "operation 0 (insert_memory)" in body["messages"][-1]["content"]
        return text_reply('{"operations": [{"tool": "insert_memory", "arguments": {"content": "The user plays go"}}]}')

    scripted.set_responder(model)
    out = extractor(scripted, protocol="json").extract(said("I play go"), [])
    assert [op.content for op in out.ops] == ["The user plays go"] and out.validation_errors == 1


def test_the_pipeline_counts_text_answers_and_runs_the_json_protocol(make_system, scripted) -> None:
    """End to end, REVERIE_LLM_PROTOCOL=json: a memory lands through the JSON protocol, and a
    model that only ever chats back is counted (twice: its answer and the one after the nudge)."""

    def model(body: dict[str, Any]) -> Any:
        # the turn itself, not the memory it became: once "t" commits, "chat"'s request shows
        # "The user keeps bees" among the existing memories
        if "I keep bees" in json.dumps(body["messages"], ensure_ascii=False):
            ops = {"operations": [{"tool": "insert_memory", "arguments": {"content": "The user keeps bees"}}]}
            return text_reply(json.dumps(ops))
        return text_reply("Sounds lovely!")

    scripted.set_responder(model)
    system = make_system(  # one by one: each thread's answer is counted on its own
        model=scripted.model,
        llm_api_base=scripted.base_url,
        llm_api_key="sk-test",
        llm_protocol="json",
        join_siblings=0,
    )
    user = uid("u")
    system.producer.submit(user, "t", [{"role": "user", "content": "I keep bees"}])
    system.producer.submit(user, "chat", [{"role": "user", "content": "I went for a walk"}])
    system.wait_for(lambda: len(system.committed(user)) == 2, what="two commits")
    assert [m.content for m in system.runtime.store.list(user)] == ["The user keeps bees"]
    assert int(system.runtime.coordinator.stats().get("llm_text_replies", 0)) == 2
    assert all("response_format" in body for body in scripted.chat_requests)
