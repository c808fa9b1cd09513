"""LangMem-grade memory manager, end to end with the scripted LLM: the seed scenario,
profiles, alias safety, dead-lettering, episodic memory and history."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import uid
from tests.support import food
from tests.support.llm_scripts import conversation_lines, food_model
from tests.support.scripted_llm import text_reply, tool_calls_reply

RAMEN_1 = [
    {"role": "user", "content": "ラーメンが大好きです!!", "id": "m1"},
    {"role": "user", "content": "パスタも好きです", "id": "m2"},
]
RAMEN_2 = [
    {"role": "user", "content": "ラーメンは味噌ラーメンが好き", "id": "m3"},
    {"role": "user", "content": "パスタは嫌いになりました", "id": "m4"},
]


def food_system(make_system: Any, scripted: Any, **overrides: Any) -> Any:
    scripted.set_responder(food_model)
    return make_system(
        model=scripted.model, llm_api_base=scripted.base_url, llm_api_key="sk-test", profiles=food.ALL, **overrides
    )


def _run_seed(system: Any, user: str, profile: str) -> tuple[list[Any], list[Any]]:
    system.producer.submit(user, "t1", RAMEN_1, profile=profile)
    system.wait_for(lambda: len(system.committed(user)) == 1, what="first reflection")
    first = system.runtime.store.list(user)
    system.producer.submit(user, "t1", RAMEN_2, profile=profile)
    system.wait_for(lambda: len(system.committed(user)) == 2, what="second reflection")
    system.wait_idle()
    return first, system.runtime.store.list(user)


def _by_food(records: list[Any]) -> dict[str, Any]:
    return {r.data["food_name"]: r for r in records}


@pytest.mark.parametrize("profile", ["food", "food-tombstone"])
def test_seed_scenario_inserts_then_updates_ramen_and_deletes_pasta(make_system, scripted, profile) -> None:
    """Two inserts; then ramen is updated in place (id, created_at kept, version 2) and pasta is
    deleted because deletes are on and the instructions say preference 0 means delete."""
    system = food_system(make_system, scripted)
    user = uid("seed")
    first, after = _run_seed(system, user, profile)
    assert sorted(_by_food(first)) == ["パスタ", "ラーメン"]
    assert all(r.schema_name == "UserFoodPreference" and r.ns == ["chat", user] for r in first)
    ramen_before, pasta_before = _by_food(first)["ラーメン"], _by_food(first)["パスタ"]
    [ramen] = after
    assert (ramen.id, ramen.created_at) == (ramen_before.id, ramen_before.created_at)
    assert ramen.version == 2 and ramen.data["description"] == "ラーメンは味噌ラーメンが好き"

    second_prompt = scripted.chat_requests[-1]["messages"][1]["content"]
    assert ramen_before.id not in second_prompt and pasta_before.id not in second_prompt
    assert '"food_name": "パスタ"' in second_prompt  # shown by alias, with its data

    results = system.committed(user)
    assert [(r.inserted, r.updated, r.deleted) for r in results] == [(2, 0, 0), (0, 1, 1)]
    assert [r.llm_calls for r in results] == [1, 1], "one LLM call per reflection"
    print(  # measured, for the README note (pytest -s shows it)
        f"\nSEED[{profile}] llm_calls={[r.llm_calls for r in results]} "
        f"prompt_tokens={[r.prompt_tokens for r in results]} completion_tokens={[r.completion_tokens for r in results]}"
    )

    assert system.redis.zscore(system.runtime.coordinator.keys.changed_ss, user) is not None  # FINALIZE marked it
    history = system.runtime.history.history(user)
    assert [e.op for e in history] == ["insert", "insert", "update", "tombstone" if profile != "food" else "delete"]
    pasta_history = [e for e in history if e.memory_id == pasta_before.id]
    assert pasta_history[-1].old_content == pasta_before.content
    assert all(e.thread_id == "t1" and e.reflection_id and e.reflection_id.startswith("t1:g") for e in history)
    ramen_history = [e for e in history if e.memory_id == ramen.id]
    assert [e.old_content is None for e in ramen_history] == [True, False]
    assert ramen_history[-1].new_content == ramen.content
    if profile == "food-tombstone":  # the point stays for audit but no read returns it
        raw, _ = system.runtime.store.client.scroll(
            system.runtime.store._existing_collection(user), with_payload=True, limit=10
        )
        marks = {str(p.id): p.payload.get("deleted") for p in raw if p.payload["user_id"] == user}
        assert marks[pasta_before.id] is True and [m.id for m in system.runtime.store.search(user, "パスタ")] == [
            ramen.id
        ]


def test_seed_scenario_without_deletes_keeps_pasta_at_zero(make_system, scripted) -> None:
    """Deletes off (LangMem's default): no delete tool is offered; pasta is updated to 0 instead."""
    system = food_system(make_system, scripted)
    user = uid("seed")
    _, after = _run_seed(system, user, "food-nodelete")
    assert "delete_memory" not in {t["function"]["name"] for t in scripted.chat_requests[-1]["tools"]}
    foods = _by_food(after)
    assert sorted(foods) == ["パスタ", "ラーメン"]
    assert foods["パスタ"].data["preference"] == 0 and foods["パスタ"].version == 2


@pytest.mark.parametrize("bad_id", ["7", "foreign"])
def test_alias_not_given_or_foreign_id_writes_nothing(make_system, scripted, bad_id) -> None:
    """An alias the model was not shown, or another user's real memory id, is rejected every
    round; after the bounded retries the reflection is dead-lettered with nothing written."""
    system = food_system(make_system, scripted, max_attempts=1, validation_retries=1)
    victim, user = uid("victim"), uid("attacker")
    system.producer.submit(victim, "t", RAMEN_1[:1], profile="food")
    system.wait_for(lambda: len(system.committed(victim)) == 1, what="victim's memory")
    [victim_memory] = system.runtime.store.list(victim)
    target = victim_memory.id if bad_id == "foreign" else bad_id
    scripted.reset()
    scripted.set_responder(
        lambda body: tool_calls_reply(
            [("update_user_food_preference", {"memory_id": target, "food_name": "x", "preference": 1})]
        )
    )
    system.producer.submit(user, "t", RAMEN_1, profile="food")
    system.wait_for(lambda: "dead_lettered" in system.outcomes(user), what="dead letter")
    assert scripted.chat_calls == 2  # the first answer and one correction round
    feedback = scripted.chat_requests[-1]["messages"][-2]["content"]
    assert feedback.startswith("ERROR: memory_id") and "is not one of the existing memories" in feedback
    assert system.runtime.store.list(user) == []
    assert system.runtime.store.list(victim) == [victim_memory]
    assert [d.user_id for d in system.runtime.coordinator.dead_letters()] == [user]
    assert system.redis.llen(system.runtime.coordinator.keys.buffer(user, "t")) == 2  # turns kept
    assert system.runtime.history.history(user) == []


def test_malformed_arguments_are_retried_then_dead_lettered(make_system, scripted) -> None:
    """Invalid JSON, then a wrong type, then an out-of-range value: each goes back to the model;
    after validation_retries=2 corrections the reflection dead-letters and writes nothing."""
    system = food_system(make_system, scripted, max_attempts=1, validation_retries=2)
    scripted.enqueue(
        tool_calls_reply([("insert_user_food_preference", '{"food_name": "ラーメン", ')]),
        tool_calls_reply([("insert_user_food_preference", {"food_name": "ラーメン", "preference": "lots"})]),
        tool_calls_reply([("insert_user_food_preference", {"food_name": "ラーメン", "preference": 101})]),
    )
    user = uid("u")
    system.producer.submit(user, "t", RAMEN_1, profile="food")
    system.wait_for(lambda: "dead_lettered" in system.outcomes(user), what="dead letter")
    assert scripted.chat_calls == 3
    errors = [r["messages"][-2]["content"] for r in scripted.chat_requests[1:]]
    assert "not valid JSON" in errors[0] and "preference" in errors[1]
    assert system.runtime.store.list(user) == []
    assert system.runtime.coordinator.dead_letters()[0].reason.startswith("ExtractionFailed")


def test_two_schemas_in_one_profile_and_an_episode(make_system, scripted) -> None:
    """One reply inserts a food preference, a location and the thread's episode (one call)."""
    system = food_system(make_system, scripted)
    scripted.set_responder(
        lambda body: tool_calls_reply(
            [
                ("insert_user_food_preference", {"food_name": "たこ焼き", "preference": 95}),
                ("insert_user_location", {"city": "Osaka"}),
                ("record_episode", {"summary": "User moved to Osaka and loves takoyaki.", "outcome": "resolved"}),
            ]
        )
    )
    user = uid("u")
    system.producer.submit(
        user, "t", [{"role": "user", "content": "大阪に引っ越して、たこ焼きが大好き"}], profile="life"
    )
    system.wait_for(lambda: len(system.committed(user)) == 1, what="commit")
    tools = {t["function"]["name"] for t in scripted.chat_requests[0]["tools"]}
    assert {"insert_user_food_preference", "insert_user_location", "record_episode"} <= tools
    records = system.runtime.store.list(user)
    assert sorted((r.kind, r.schema_name) for r in records) == [
        ("episode", "Episode"),
        ("semantic", "UserFoodPreference"),
        ("semantic", "UserLocation"),
    ]
    assert all(r.ns == ["life", user] for r in records)
    assert scripted.chat_calls == 1


def test_unknown_profile_fails_clearly_into_dead_letters(make_system, scripted) -> None:
    """A thread submitted under an unregistered profile never reaches the LLM."""
    system = food_system(make_system, scripted, max_attempts=1)
    user = uid("u")
    system.producer.submit(user, "t", [{"role": "user", "content": "hello"}], profile="no-such-profile")
    system.wait_for(lambda: "dead_lettered" in system.outcomes(user), what="dead letter")
    [letter] = system.runtime.coordinator.dead_letters()
    assert "unknown profile 'no-such-profile'" in letter.reason and "REVERIE_PROFILES" in letter.reason
    assert scripted.chat_calls == 0


def test_offline_episode_is_labelled_and_one_per_thread(make_system) -> None:
    """Without a model, an episodic profile gets a deterministic summary that says so; the next
    reflection of the same thread updates that episode (same id and created_at, version 2)."""
    system = make_system(profiles=food.ALL)
    user = uid("u")
    system.producer.submit(user, "t", [{"role": "user", "content": "I moved to Osaka"}], profile="life")
    system.wait_for(lambda: len(system.committed(user)) == 1, what="commit")
    [episode] = system.runtime.store.list(user, kind="episode")
    assert episode.content.startswith("[offline summary, not an LLM]")
    assert json.dumps(episode.data, ensure_ascii=False).count("Osaka") == 1
    system.producer.submit(user, "t", [{"role": "user", "content": "Now I work in Kobe"}], profile="life")
    system.wait_for(lambda: len(system.committed(user)) == 2, what="second commit")
    [again] = system.runtime.store.list(user, kind="episode")
    assert (again.id, again.created_at, again.version) == (episode.id, episode.created_at, 2)
    assert "Kobe" in again.content
    assert [e.op for e in system.runtime.history.history(user, episode.id)] == ["insert", "update"]


def test_retrieval_pins_memories_the_conversation_names(make_system, scripted) -> None:
    """With 30 other memories and a limit of 3, the ramen memory is still shown: the
    conversation names it, so it is pinned whatever its vector rank."""
    system = food_system(make_system, scripted, existing_limit=3)
    user = uid("u")
    fillers = [
        {"role": "user", "content": f"{name}も好きです", "id": f"f{i}"}
        for i, name in enumerate(["ラーメン"] + [f"料理{i}" for i in range(30)])
    ]
    scripted.set_responder(
        lambda body: tool_calls_reply(
            [
                (
                    "insert_user_food_preference",
                    {"food_name": line.removeprefix("user: ").removesuffix("も好きです"), "preference": 60},
                )
                for line in conversation_lines(body)
            ]
        )
    )
    system.producer.submit(user, "t", fillers, profile="food")
    system.wait_for(lambda: len(system.committed(user)) == 1, what="fillers")
    scripted.set_responder(lambda body: text_reply("nothing"))
    system.producer.submit(
        user, "t", [{"role": "user", "content": "そういえば、ラーメンは週に三回食べます"}], profile="food"
    )
    system.wait_for(lambda: len(system.committed(user)) == 2, what="second")
    prompt = scripted.chat_requests[-1]["messages"][1]["content"]
    assert prompt.startswith("Existing memories") and '[0] (UserFoodPreference) {"food_name": "ラーメン"' in prompt
    assert "[3]" not in prompt


def test_default_profile_follows_enable_deletes_setting(make_system) -> None:
    """REVERIE_ENABLE_DELETES turns on delete_memory for the built-in profile."""
    from schemas.profiles import get_profile
    from worker.memory.extraction.tools import tool_specs

    make_system(enable_deletes=True)
    assert "delete_memory" in {t["function"]["name"] for t in tool_specs(get_profile("default"))}
