"""The scenario format: what ships covers every category in both languages, and a bad file is
refused with the file, the scenario and the field named."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from worker.ops.eval.scenario import CATEGORIES, EvalFormatError, load_scenarios


def test_the_shipped_scenarios_cover_every_category_in_japanese_and_english() -> None:
    scenarios = load_scenarios()
    assert len(scenarios) >= 40
    assert set(Counter(s.category for s in scenarios)) == set(CATEGORIES)
    languages = Counter(s.language for s in scenarios)
    assert languages["ja"] >= 15 and languages["en"] >= 15
    assert sum(len(s.questions) for s in scenarios) >= 80
    assert any(len(s.users) == 2 for s in scenarios if s.category == "isolation")


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "x.yaml").write_text(text, encoding="utf-8")
    return tmp_path


BASE = """
- id: en-bad
  category: update
  language: en
  sessions:
    - turns: ["I live in Osaka"]
      expect: [{key: city, text: lives in Osaka, mentions: [Osaka]}]
"""


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("scenarios: 3", "expected a list of scenarios"),
        ("- {id: en-x, category: gossip, language: en, sessions: [{turns: [hi]}]}", "category"),
        (BASE.replace("language: en", "language: fr"), "language"),
        (BASE.replace("mentions: [Osaka]", "mentions: []"), "give mentions or fields"),
        (BASE.replace("text: lives in Osaka, ", ""), "mentions need the fact in words"),
        (BASE + '  questions: [{ask: "where?", answer: town}]', "answer 'town' is not a final expectation"),
        (BASE.replace("key: city,", "key: city, same_as: home,"), "same_as 'home' names no earlier"),
        (BASE.replace("turns: [", "turns: [{role: robot, content: hi}, "), "sessions.0.turns"),
        (BASE.replace('turns: ["I live in Osaka"]', 'turns: ["I live in Osaka"]\n      parallel: [[]]'), "parallel"),
        (BASE.replace('turns: ["I live in Osaka"]', 'turns: ["hi"]\n      parallel: hello'), "sessions.0.parallel"),
        ("- [unclosed", "cannot read YAML"),
    ],
)
def test_a_bad_file_is_refused_naming_the_problem(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(EvalFormatError, match=r"x\.yaml") as caught:
        load_scenarios([_write(tmp_path, text)])
    assert named in str(caught.value)


def test_ids_must_be_unique_and_folders_must_hold_scenarios(tmp_path: Path) -> None:
    folder = _write(tmp_path, BASE)
    (tmp_path / "y.yaml").write_text(BASE, encoding="utf-8")
    with pytest.raises(EvalFormatError, match="ids repeat"):
        load_scenarios([folder])
    empty = tmp_path / "nothing-here"
    empty.mkdir()
    with pytest.raises(EvalFormatError, match=r"no \*\.yaml"):
        load_scenarios([empty])
    with pytest.raises(EvalFormatError, match="unknown categories"):
        load_scenarios(categories=["gossip"])


def test_parallel_threads_parse_like_turns_and_keep_their_order(tmp_path: Path) -> None:
    text = BASE.replace('turns: ["I live in Osaka"]', 'turns: ["I live in Osaka"]\n      parallel: [[b, c], [d]]')
    [scenario] = load_scenarios([_write(tmp_path, text)])
    threads = scenario.sessions[0].threads
    assert [[t.content for t in turns] for turns in threads] == [["I live in Osaka"], ["b", "c"], ["d"]]
    assert all(t.role == "user" for turns in threads for t in turns)
