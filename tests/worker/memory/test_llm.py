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


def test_warm_up_leaves_no_event_loop_behind() -> None:
    """litellm's service logger makes the calling thread an event loop it never closes; the
    warm-up runs in a thread of its own so that a worker's (or a test's) main thread keeps none."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT_DIR

    code = (
        "import gc\n"
        "from worker.memory.llm import warm_call_path\n"
        "warm_call_path('openai/gpt-4o-mini')\n"
        "gc.collect()\n"
        "print('warmed')\n"
    )
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "always::ResourceWarning", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
        cwd=ROOT_DIR,
    )
    assert done.returncode == 0 and "warmed" in done.stdout, done.stderr[-2000:]
    assert "unclosed event loop" not in done.stderr


@pytest.mark.parametrize(("model", "priced"), [("openai/gpt-4o-mini", True), ("openai/scripted-local", False)])
def test_usage_counts_litellms_price_of_each_call(model: str, priced: bool, scripted) -> None:
    """The cost counted is litellm's price table's (the same figure completion_cost gives), and 0
    for a model the table does not know."""
    import litellm

    from worker.memory.llm import LLMClient, Usage

    usage = Usage()
    response = LLMClient(model, api_base=scripted.base_url, api_key="sk-test").complete(
        [{"role": "user", "content": "hi"}], None, usage
    )
    assert usage.llm_calls == 1 and usage.prompt_tokens > 0
    if priced:
        assert usage.cost_usd > 0
        assert usage.cost_usd == pytest.approx(litellm.completion_cost(completion_response=response))
    else:
        assert usage.cost_usd == 0.0
