"""Responders for the scripted LLM: small, readable models of what an extraction model does."""

from __future__ import annotations

import re
from typing import Any

from tests.support.scripted_llm import Reply, text_reply, tool_calls_reply

CONVERSATION = re.compile(r"<conversation>\n(.*?)\n</conversation>", re.S)


def conversation_lines(body: dict[str, Any]) -> list[str]:
    """The transcript lines of the first user message of an extraction request."""
    for m in body.get("messages", []):
        if m.get("role") == "user" and "<conversation>" in (m.get("content") or ""):
            match = CONVERSATION.search(m["content"])
            return match.group(1).splitlines() if match else []
    return []


def insert_each_user_turn(body: dict[str, Any]) -> Reply:
    """One ``insert_memory`` per user line, in one reply (parallel tool calls)."""
    calls = [
        ("insert_memory", {"content": line.removeprefix("user: ")})
        for line in conversation_lines(body)
        if line.startswith("user: ")
    ]
    return tool_calls_reply(calls) if calls else text_reply("nothing to remember")
