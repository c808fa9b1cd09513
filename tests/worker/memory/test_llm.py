"""The LLM client's start-up warm-up: the real litellm call path, and nothing leaves loopback."""

from __future__ import annotations

import pytest

from worker.memory.llm import warm_call_path


@pytest.mark.parametrize("model", ["openai/gpt-4o-mini", "bedrock/anthropic.claude-v2", "not-a-known-model"])
def test_warm_up_runs_the_call_path_without_reaching_any_server(model: str, scripted, monkeypatch) -> None:
    """Whatever the model, the warm-up is refused by a loopback port of its own: no request
    reaches a model server (not even the configured one), and it never raises."""
    monkeypatch.setenv("OPENAI_API_BASE", scripted.base_url)  # would catch a call that ignored api_base
    before = scripted.chat_calls
    assert warm_call_path(model) >= 0
    assert scripted.chat_calls == before
