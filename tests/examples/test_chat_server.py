"""The example chat server, with the scripted model standing in for the LLM: memories go into
the system prompt, turns reach Reverie without delaying the answer, and a Redis outage costs
only the memory of that exchange."""

from __future__ import annotations

import threading
from typing import Any

from fastapi.testclient import TestClient
from pydantic import SecretStr

from examples.chat_server.app import create_app, system_prompt
from schemas.settings import Settings
from tests.conftest import uid
from tests.support.llm_scripts import insert_each_user_turn
from tests.support.scripted_llm import Reply, text_reply


def chat_and_extract(prompts: list[str], lock: threading.Lock) -> Any:
    """Extraction requests (with tools) insert each user turn; chat requests record their
    system prompt and answer."""

    def responder(body: dict[str, Any]) -> Reply:
        if body.get("tools"):
            return insert_each_user_turn(body)
        with lock:
            prompts.append(body["messages"][0]["content"])
        return text_reply("Noted! Enjoy your noodles.")

    return responder


def test_system_prompt_lists_memories() -> None:
    assert system_prompt([]).startswith("You are")
    assert system_prompt(["Likes ramen"]).endswith("What you know about the user:\n- Likes ramen")


def test_chat_uses_memories_and_feeds_the_pipeline(make_system, scripted) -> None:
    """First chat: no memories; its turns are reflected into a memory by the real worker;
    the next chat finds that memory in its system prompt."""
    prompts: list[str] = []
    scripted.set_responder(chat_and_extract(prompts, threading.Lock()))
    system = make_system(model=scripted.model, llm_api_base=scripted.base_url, llm_api_key="sk-test")
    user = uid("diner")
    app = create_app(system.settings, reader=system.runtime.store)
    with TestClient(app) as client:
        first = client.post("/chat", json={"user_id": user, "thread_id": "t", "message": "I love tonkotsu ramen"})
        assert first.status_code == 200, first.text
        assert first.json() == {"reply": "Noted! Enjoy your noodles.", "memories_used": 0}
        system.wait_for(lambda: len(system.committed(user)) == 1, what="reflection of the chat")
        assert [m.content for m in system.runtime.store.list(user)] == ["I love tonkotsu ramen"]

        second = client.post("/chat", json={"user_id": user, "thread_id": "t", "message": "what ramen should I eat?"})
        assert second.status_code == 200 and second.json()["memories_used"] == 1
        assert "- I love tonkotsu ramen" in prompts[-1]
        assert client.get("/healthz").json() == {"ok": True}
    system.wait_for(lambda: len(system.committed(user)) == 2, what="second reflection")


def test_chat_keeps_answering_when_redis_is_down(scripted, tmp_path) -> None:
    """Redis unreachable: the answer still comes (the submit is dropped, softly)."""
    scripted.set_responder(lambda body: text_reply("still here"))
    settings = Settings(
        redis_url=SecretStr("redis://127.0.0.1:1/0"),
        qdrant_path=tmp_path / "q",
        model=scripted.model,
        llm_api_base=scripted.base_url,
        llm_api_key=SecretStr("sk-test"),
    )
    with TestClient(create_app(settings)) as client:
        for i in range(3):
            response = client.post("/chat", json={"user_id": "u1", "thread_id": "t", "message": f"hello {i}"})
            assert response.status_code == 200 and response.json()["reply"] == "still here"
    assert scripted.chat_calls == 3


def test_chat_validates_input(scripted, tmp_path) -> None:
    """Bad ids and empty messages get a 422 naming the field; no model call is made."""
    settings = Settings(redis_url=SecretStr("redis://127.0.0.1:1/0"), qdrant_path=tmp_path / "q", model=scripted.model)
    with TestClient(create_app(settings)) as client:
        bad = client.post("/chat", json={"user_id": "a:b", "thread_id": "t", "message": "x"})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "user_id"]
        empty = client.post("/chat", json={"user_id": "a", "thread_id": "t", "message": ""})
        assert empty.status_code == 422
    assert scripted.chat_calls == 0


def test_chat_without_a_model_says_so(tmp_path) -> None:
    settings = Settings(redis_url=SecretStr("redis://127.0.0.1:1/0"), qdrant_path=tmp_path / "q")
    with TestClient(create_app(settings)) as client:
        response = client.post("/chat", json={"user_id": "a", "thread_id": "t", "message": "hi"})
        assert response.status_code == 503 and "REVERIE_MODEL" in response.json()["detail"]
