"""``reverie eval`` end to end on the real pipeline (producer, Celery worker, local Qdrant, Redis)
with the scripted model: a perfect script scores 1.0, a script that never updates scores the
duplicates and the lost updates it causes, and the extraction-only mode agrees."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from schemas.settings import Settings
from tests.support.llm_scripts import conversation_lines
from tests.support.scripted_llm import Reply, text_reply, tool_calls_reply
from worker.ops.cli import cli
from worker.ops.eval.judge import OfflineJudge
from worker.ops.eval.profiles import manager_for
from worker.ops.eval.runner import run_extraction, run_pipeline
from worker.ops.eval.scenario import load_scenarios

SCENARIOS = """
- id: en-e2e-update
  category: update
  language: en
  sessions:
    - turns: ["I love ramen", "My cat is called Mochi"]
      expect:
        - {key: ramen, text: The user loves ramen, mentions: [ramen]}
        - {key: cat, text: The user's cat is Mochi, mentions: [Mochi]}
    - turns: ["Actually, miso ramen is the one I love"]
      expect:
        - {key: ramen, same_as: ramen, text: The user loves miso ramen, mentions: [miso]}
        - {key: cat, same_as: cat, text: The user's cat is Mochi, mentions: [Mochi]}
  questions:
    - {ask: "What does the user like to eat?", answer: ramen}
- id: en-e2e-chitchat
  category: chitchat
  language: en
  sessions:
    - turns: ["hi there!", "thanks, bye"]
- id: en-e2e-dedupe
  category: dedupe
  language: en
  sessions:
    - turns: ["I play the cello"]
      expect: [{key: cello, text: The user plays the cello, mentions: [cello]}]
    - turns: ["The cello is my instrument"]
      expect: [{key: cello, same_as: cello, text: The user plays the cello, mentions: [cello]}]
- id: en-e2e-siblings
  category: siblings
  language: en
  sessions:
    - turns: ["I play the violin"]
      parallel: [["My dog is called Kuro"]]
      expect:
        - {key: violin, text: The user plays the violin, mentions: [violin]}
        - {key: dog, text: The user's dog is Kuro, mentions: [Kuro]}
"""
FACTS = {
    "I love ramen": "The user loves ramen",
    "My cat is called Mochi": "The user's cat is called Mochi",
    "Actually, miso ramen is the one I love": "The user loves miso ramen",
    "I play the cello": "The user plays the cello",
    "The cello is my instrument": "The user plays the cello, their instrument",
    "I play the violin": "The user plays the violin",
    "My dog is called Kuro": "The user's dog is called Kuro",
}
SUBJECT = {"Actually, miso ramen is the one I love": "ramen", "The cello is my instrument": "cello"}
EXISTING = re.compile(r"^\[(\d+)\] \(Memory\) (.*)$", re.M)


def scripted_model(*, updates: bool) -> Any:
    """A model of the ideal extractor for these scenarios (``updates``), or one that always inserts."""

    def respond(body: dict[str, Any]) -> Reply:
        prompt = next(m["content"] for m in body["messages"] if m["role"] == "user")
        existing = {int(a): text for a, text in EXISTING.findall(prompt)}
        calls: list[tuple[str, dict[str, Any]]] = []
        for line in conversation_lines(body):
            said = line.removeprefix("user: ")
            if said not in FACTS:
                continue  # chit-chat
            subject = SUBJECT.get(said)
            alias = next((a for a, text in existing.items() if subject and subject in text), None)
            if updates and alias is not None:
                calls.append(("update_memory", {"memory_id": str(alias), "content": FACTS[said]}))
            else:
                calls.append(("insert_memory", {"content": FACTS[said]}))
        return tool_calls_reply(calls) if calls else text_reply("nothing to remember")

    return respond


@pytest.fixture
def scenario_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "scenarios"
    folder.mkdir()
    (folder / "e2e.yaml").write_text(SCENARIOS, encoding="utf-8")
    return folder


def _settings(redis_url: str, scripted: Any) -> Settings:
    return Settings(
        redis_url=SecretStr(redis_url), model=scripted.model, llm_api_base=scripted.base_url, llm_api_key="sk-test"
    )


@pytest.mark.timeout(180)
def test_a_perfect_script_scores_one(own_process, scenario_dir, scripted, redis_url) -> None:
    if not own_process:
        return  # ran, and passed, in a process of its own (see the own_process fixture)
    scripted.set_responder(scripted_model(updates=True))
    result = run_pipeline(_settings(redis_url, scripted), load_scenarios([scenario_dir]), OfflineJudge())
    assert result.errors == []
    from worker.ops.eval.scoring import aggregate

    _, total = aggregate(result.scores)
    s = total.scores()
    assert (total.expected, total.memories, total.matched) == (8, 8, 8)
    assert (s["precision"], s["recall"], s["update_in_place"], s["duplicate_rate"]) == (1.0, 1.0, 1.0, 0.0)
    assert s["recall_at_5"] == 1.0  # two memories, so the answer is in the top five
    # one call per reflection, and the chit-chat session's text answer sent back once: the two
    # threads of the siblings session share one call when joined (2 if the second fell due late)
    assert s["llm_calls_per_session"] * 6 in (pytest.approx(7), pytest.approx(8))
    assert result.extractor == f"llm:{scripted.model}" and result.embedder == "use-m3"


@pytest.mark.timeout(180)
def test_a_script_that_never_updates_scores_its_duplicates_and_lost_updates(
    own_process, scenario_dir, scripted, redis_url
) -> None:
    """ramen: the miso statement became a second memory (not in place); cello: the paraphrase is
    a duplicate of the cello memory."""
    if not own_process:
        return  # ran, and passed, in a process of its own
    scripted.set_responder(scripted_model(updates=False))
    result = run_pipeline(_settings(redis_url, scripted), load_scenarios([scenario_dir]), OfflineJudge())
    from worker.ops.eval.scoring import aggregate

    by_category, total = aggregate(result.scores)
    assert (total.expected, total.memories, total.matched, total.duplicates) == (8, 10, 8, 1)
    s = total.scores()
    assert s["precision"] == pytest.approx(8 / 10) and s["recall"] == 1.0
    assert s["duplicate_rate"] == pytest.approx(1 / 10)
    assert s["update_in_place"] == pytest.approx(2 / 3)  # cat kept; ramen not; cello's original kept
    assert by_category["chitchat"].memories == 0
    [update] = [x for x in result.scores if x.scenario == "en-e2e-update"]
    assert "session 2: user/ramen not updated in place" in update.failures


def test_extraction_alone_through_the_memory_manager_agrees(scenario_dir, scripted, redis_url) -> None:
    """The same scripts through the public memory manager, no pipeline: the same extraction scores."""
    scenarios = load_scenarios([scenario_dir])
    settings = _settings(redis_url, scripted)
    for updates, precision in ((True, 1.0), (False, 8 / 10)):
        scripted.set_responder(scripted_model(updates=updates))
        result = run_extraction(scenarios, OfflineJudge(), lambda s: manager_for(settings, s), embedder="use-m3")
        from worker.ops.eval.scoring import aggregate

        _, total = aggregate(result.scores)
        assert total.scores()["precision"] == pytest.approx(precision)
        assert total.scores()["recall_at_5"] is None  # no retrieval in this mode


@pytest.mark.timeout(180)
def test_the_command_prints_json_and_compares_with_a_baseline(own_process, scenario_dir, tmp_path, redis_url) -> None:
    """Offline (no model): the JSON names the offline manager and the judge; a baseline file
    that is not an eval report is refused with a clear error."""
    if not own_process:
        return  # ran, and passed, in a process of its own
    runner = CliRunner()
    env = {"REDIS_URL": redis_url, "REVERIE_LOG_LEVEL": "WARNING"}
    out = tmp_path / "report.json"
    done = runner.invoke(cli, ["eval", "--scenarios", str(scenario_dir), "--json", "--out", str(out)], env=env)
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["meta"]["extractor"] == "offline manager (not an LLM)"
    assert report["meta"]["judge"].startswith("offline (use-m3")
    assert set(report["categories"]) == {"update", "chitchat", "dedupe", "siblings"}
    assert json.loads(out.read_text()) == report
    again = runner.invoke(cli, ["eval", "--scenarios", str(scenario_dir), "--baseline", str(out)], env=env)
    assert again.exit_code == 0 and "vs baseline" in again.stdout
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    refused = runner.invoke(cli, ["eval", "--scenarios", str(scenario_dir), "--baseline", str(bad)], env=env)
    assert refused.exit_code == 2 and "not a reverie eval JSON" in refused.stderr
