"""The memory manager as a library call (LangMem's ``create_memory_manager(...).invoke``): the
worker's extractor through the real litellm path to the scripted model, aliases mapped back to
the caller's ids, foreign ids refused, and nothing read or written but the model call."""

from __future__ import annotations

import pytest

from tests.support.food import UserFoodPreference
from tests.support.scripted_llm import ScriptedLLM, text_reply, tool_calls_reply
from worker.memory.manager import Delete, Insert, Update, create_memory_manager


def manager(llm: ScriptedLLM, **kwargs: object):  # type: ignore[no-untyped-def]
    return create_memory_manager(llm.model, api_base=llm.base_url, api_key="sk-test", **kwargs)  # type: ignore[arg-type]


def test_inserts_updates_and_deletes_come_back_with_the_callers_ids(scripted: ScriptedLLM) -> None:
    """The seed article's call: the model sees aliases [0], [1]; the result names mem-ramen and
    mem-pasta, the ids the caller gave, in LangMem's (id, content) form."""
    scripted.enqueue(
        tool_calls_reply(
            [
                ("update_user_food_preference", {"memory_id": "0", "food_name": "味噌ラーメン", "preference": 100}),
                ("delete_memory", {"memory_id": "1"}),
                ("insert_user_food_preference", {"food_name": "寿司", "preference": 80}),
            ]
        )
    )
    m = manager(scripted, schemas=[UserFoodPreference], enable_deletes=True)
    existing = [
        ("mem-ramen", UserFoodPreference(food_name="ラーメン", preference=90)),
        ("mem-pasta", {"food_name": "パスタ", "preference": 90}),
    ]
    result = m.invoke(
        {"messages": [{"role": "user", "content": "味噌ラーメン最高、パスタは嫌い、寿司も好き"}], "existing": existing}
    )
    assert [type(op) for op in result.ops] == [Update, Delete, Insert]
    assert result.ops[0].id == "mem-ramen" and result.ops[0].data["food_name"] == "味噌ラーメン"  # type: ignore[union-attr]
    assert result.ops[1] == Delete(id="mem-pasta")
    assert result.llm_calls == 1 and result.extractor == f"llm:{scripted.model}"
    prompt = scripted.chat_requests[0]["messages"][1]["content"]
    assert "[0] (UserFoodPreference)" in prompt and "mem-ramen" not in prompt  # ids never shown


def test_an_id_it_was_not_given_is_refused_and_sent_back(scripted: ScriptedLLM) -> None:
    scripted.enqueue(
        tool_calls_reply([("update_memory", {"memory_id": "7", "content": "x"})]),
        tool_calls_reply([("update_memory", {"memory_id": "0", "content": "The user lives in Tokyo"})]),
    )
    result = manager(scripted).invoke(
        messages=[{"role": "user", "content": "I moved to Tokyo"}], existing=[("m1", "Lives in Osaka")]
    )
    assert result.ops == [
        Update(id="m1", content="The user lives in Tokyo", data={"content": "The user lives in Tokyo"})
    ]
    correction = scripted.chat_requests[1]["messages"]
    assert any("is not one of the existing memories" in (m.get("content") or "") for m in correction)


async def test_ainvoke_is_the_same_call(scripted: ScriptedLLM) -> None:
    """A text answer to a user turn is sent back once (answer with tool calls); a second one is
    taken as "nothing to remember"."""
    scripted.enqueue(text_reply("nothing to remember"), text_reply("still nothing"))
    result = await manager(scripted).ainvoke({"messages": [{"role": "user", "content": "hi"}], "existing": []})
    assert result.ops == [] and result.llm_calls == 2


def test_without_a_model_the_offline_manager_answers_and_says_it_is_not_an_llm() -> None:
    m = create_memory_manager(None)
    result = m.invoke(messages=[{"role": "user", "content": "住まいは東京です"}], existing=[("m1", "I live in Tokyo")])
    assert result.extractor.endswith("(not an LLM)") and result.llm_calls == 0
    assert result.ops == [Update(id="m1", content="住まいは東京です", data={"content": "住まいは東京です"})]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "role"),
        ({"messages": [{"role": "user", "content": "x"}], "existing": [42]}, "existing"),
        ({"messages": [object()]}, "messages"),
    ],
)
def test_bad_input_is_refused_naming_it(payload: dict, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        create_memory_manager(None).invoke(payload)
