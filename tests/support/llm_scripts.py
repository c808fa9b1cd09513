"""Responders for the scripted LLM: small, readable models of what an extraction model does."""

from __future__ import annotations

import re
from typing import Any

from tests.support.scripted_llm import Reply, text_reply, tool_calls_reply

CONVERSATION = re.compile(r"<conversation>\n(.*?)\n</conversation>", re.S)
CHAT = re.compile(r"^\[chat \d+\] ")


def conversation_lines(body: dict[str, Any], *, chats: bool = False) -> list[str]:
    """The transcript lines of the first user message of an extraction request; the ``[chat N]``
    mark of a joint reflection's lines is dropped unless ``chats``."""
    for m in body.get("messages", []):
        if m.get("role") == "user" and "<conversation>" in (m.get("content") or ""):
            match = CONVERSATION.search(m["content"])
            lines = match.group(1).splitlines() if match else []
            return lines if chats else [CHAT.sub("", line) for line in lines]
    return []


def insert_each_user_turn(body: dict[str, Any]) -> Reply:
    """One ``insert_memory`` per user line, in one reply (parallel tool calls)."""
    calls = [
        ("insert_memory", {"content": line.removeprefix("user: ")})
        for line in conversation_lines(body)
        if line.startswith("user: ")
    ]
    return tool_calls_reply(calls) if calls else text_reply("nothing to remember")


EXISTING = re.compile(r"^\[(\d+)\] \((\w+)\) (\{.*\})$", re.M)
TOOLS_OF = "tools"


def existing_memories(body: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Alias → data of the structured existing memories shown in an extraction request."""
    import json

    for m in body.get("messages", []):
        if m.get("role") == "user" and "Existing memories" in (m.get("content") or ""):
            return {int(a): json.loads(data) for a, _, data in EXISTING.findall(m["content"])}
    return {}


def tool_names(body: dict[str, Any]) -> set[str]:
    return {t["function"]["name"] for t in body.get(TOOLS_OF) or []}


def food_model(body: dict[str, Any]) -> Reply:
    """A model of the seed article's LLM for ``UserFoodPreference``: inserts new foods, updates
    known ones, and for "嫌い" deletes only if the delete tool is offered AND the instructions
    say a preference of 0 means delete; otherwise it sets preference 0."""
    lines = [line.removeprefix("user: ") for line in conversation_lines(body) if line.startswith("user: ")]
    known = {data["food_name"]: alias for alias, data in existing_memories(body).items()}
    system = body["messages"][0]["content"]
    may_delete = "delete_memory" in tool_names(body) and "preference of 0 means" in system
    calls: list[tuple[str, dict[str, Any]]] = []
    for text in lines:
        for food, cuisine in (("ラーメン", "日本料理"), ("パスタ", "イタリア料理")):
            if food not in text:
                continue
            if food not in known:
                calls.append(
                    (
                        "insert_user_food_preference",
                        {"food_name": food, "cuisine": cuisine, "preference": 90, "description": text},
                    )
                )
            elif "嫌い" in text and may_delete:
                calls.append(("delete_memory", {"memory_id": str(known[food])}))
            else:
                pref = 0 if "嫌い" in text else 100
                calls.append(
                    (
                        "update_user_food_preference",
                        {
                            "memory_id": str(known[food]),
                            "food_name": food,
                            "cuisine": cuisine,
                            "preference": pref,
                            "description": text,
                        },
                    )
                )
    return tool_calls_reply(calls) if calls else text_reply("nothing to remember")  # type: ignore[arg-type]
