"""The extraction prompt: one chat reads as it always did; turns merged from several chats of a
joint reflection are each led by their chat, numbered by first appearance, with a note that says
the later turn is the current one, and no thread id reaches the prompt."""

from __future__ import annotations

from schemas.messages import BufferedTurn
from schemas.profiles import DEFAULT
from worker.memory.extraction.prompt import build_messages, render_turns


def _turn(content: str, ts: int, thread: str | None = None, role: str = "user") -> BufferedTurn:
    return BufferedTurn(role=role, content=content, ts_ms=ts, thread=thread)  # type: ignore[arg-type]


def test_one_chat_is_rendered_without_marks() -> None:
    turns = [_turn("I live in Osaka", 1), _turn("Nice!", 2, role="assistant")]
    assert render_turns(turns) == "user: I live in Osaka\nassistant: Nice!"
    prompt = build_messages(DEFAULT, turns, [])[1]["content"]
    assert "several chats" not in prompt and "[chat" not in prompt
    # a joint reflection of one thread only (its siblings had nothing) is marked the same way
    assert render_turns([_turn("I live in Osaka", 1, "t-secret")]) == "user: I live in Osaka"


def test_turns_of_several_chats_are_led_by_their_chat() -> None:
    turns = [
        _turn("My favourite coffee is a flat white", 1, "thread-b"),
        _turn("I live in Osaka", 2, "thread-a"),
        _turn("Changed my mind: oat latte", 3, "thread-b"),
    ]
    assert render_turns(turns).splitlines() == [
        "[chat 1] user: My favourite coffee is a flat white",
        "[chat 2] user: I live in Osaka",
        "[chat 1] user: Changed my mind: oat latte",
    ]
    prompt = build_messages(DEFAULT, turns, [])[1]["content"]
    assert "several chats with the same user" in prompt and "the later turn is the current one" in prompt
    assert "thread-a" not in prompt and "thread-b" not in prompt


def test_a_buffered_turn_read_back_has_no_chat_mark() -> None:
    """The stored turn JSON carries no thread (the producer never writes one): only a joint
    reflection adds the mark, in memory."""
    stored = BufferedTurn.model_validate_json('{"v":1,"role":"user","content":"hi","ts_ms":5}')
    assert stored.thread is None
