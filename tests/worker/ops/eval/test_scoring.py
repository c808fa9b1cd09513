"""The eval's scores, from the real scoring code and the real offline judge on known states."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from schemas.memory import MemoryRecord
from worker.ops.eval.judge import OfflineJudge, field_ok, parse_matches
from worker.ops.eval.scenario import FieldCheck, Scenario
from worker.ops.eval.scoring import SessionState, aggregate, max_matching, score_scenario

T0 = datetime(2026, 1, 1, tzinfo=UTC)
JUDGE = OfflineJudge(floor=0.0)  # mentions and exact checks decide: the numbers below are exact


def mem(content: str, id: str | None = None, **data: object) -> MemoryRecord:
    return MemoryRecord(
        id=id or str(uuid.uuid4()),
        user_id="u",
        namespace="eval",
        schema_name="UserFoodPreference" if data else "Memory",
        content=content,
        data=data or {"content": content},
        created_at=T0,
        updated_at=T0,
    )


SCENARIO = Scenario.model_validate(
    {
        "id": "en-test",
        "category": "update",
        "language": "en",
        "sessions": [
            {
                "turns": ["I love ramen", "I live in Osaka"],
                "expect": [
                    {"key": "ramen", "text": "loves ramen", "mentions": ["ramen"]},
                    {"key": "city", "text": "lives in Osaka", "mentions": [["Osaka", "大阪"]]},
                ],
            },
            {
                "turns": ["I moved to Tokyo"],
                "expect": [
                    {"key": "ramen", "same_as": "ramen", "text": "loves ramen", "mentions": ["ramen"]},
                    {"key": "city", "same_as": "city", "text": "lives in Tokyo", "mentions": ["Tokyo"]},
                ],
                "absent": [{"text": "lives in Osaka", "mentions": ["Osaka"]}],
            },
        ],
        "questions": [
            {"ask": "Where does the user live?", "answer": "city"},
            {"ask": "Favourite food?", "answer": "ramen"},
        ],
    }
)


def test_a_perfect_run_scores_one_everywhere() -> None:
    ramen, osaka = mem("Loves ramen", "r"), mem("Lives in Osaka", "c")
    tokyo = mem("Lives in Tokyo now", "c")
    states = [SessionState({"user": [ramen, osaka]}), SessionState({"user": [ramen, tokyo]})]
    ranked = {"Where does the user live?": [tokyo, ramen], "Favourite food?": [ramen, tokyo]}
    result = score_scenario(SCENARIO, states, JUDGE, lambda _u, q, _k: ranked[q], {"user": "u"})
    s = result.counts.scores()
    assert (s["precision"], s["recall"], s["update_in_place"]) == (1.0, 1.0, 1.0)
    assert (s["stale_rate"], s["duplicate_rate"], s["recall_at_5"], s["mrr"]) == (0.0, 0.0, 1.0, 1.0)
    assert result.failures == []


def test_an_insert_instead_of_an_update_is_stale_not_in_place_and_imprecise() -> None:
    """Session 2 adds Tokyo as a new memory and keeps Osaka: 2 of 3 memories match, Osaka is
    stale, the city was not updated in place; the answer ranks second (MRR 0.5)."""
    ramen, osaka, tokyo = mem("Loves ramen", "r"), mem("Lives in Osaka", "c"), mem("Moved to Tokyo", "t")
    states = [SessionState({"user": [ramen, osaka]}), SessionState({"user": [ramen, osaka, tokyo]})]
    ranked = {"Where does the user live?": [osaka, tokyo], "Favourite food?": [ramen]}
    result = score_scenario(SCENARIO, states, JUDGE, lambda _u, q, _k: ranked[q], {"user": "u"})
    c = result.counts
    assert (c.expected, c.memories, c.matched) == (4, 5, 4)
    s = c.scores()
    assert s["precision"] == pytest.approx(4 / 5) and s["recall"] == 1.0
    assert s["update_in_place"] == 0.5 and s["stale_rate"] == 1.0 and s["duplicate_rate"] == 0.0
    assert s["recall_at_5"] == 1.0 and s["mrr"] == pytest.approx((0.5 + 1.0) / 2)
    assert "session 2: user/city not updated in place" in result.failures


def test_duplicates_are_counted_once_each_and_a_missing_answer_is_not_answerable() -> None:
    """Ramen stored twice: one duplicate over 3 memories; the city is missing, so its question
    is not answerable and retrieval is scored on the other one only."""
    r1, r2 = mem("Loves ramen", "r"), mem("Really loves ramen", "r2")
    states = [
        SessionState({"user": [r1, r2, mem("Lives in Osaka", "c")]}),
        SessionState({"user": [r1, r2, mem("Moved to Tokyo", "c")]}),
    ]
    states[1].memories["user"] = [r1, r2]
    result = score_scenario(SCENARIO, states, JUDGE, lambda _u, _q, _k: [r2, r1], {"user": "u"})
    c = result.counts
    assert c.duplicates == 2  # one per session
    assert c.scores()["duplicate_rate"] == pytest.approx(2 / 5)
    assert (c.questions, c.answerable, c.hits_at_k) == (2, 1, 1)
    assert c.scores()["mrr"] == pytest.approx(0.5)  # the matched ramen is r1, ranked second


def test_matching_is_maximal_not_greedy() -> None:
    # row 0 fits columns 0 and 1, row 1 only column 0: a greedy pick of (0,0) would leave row 1 out
    assert max_matching([[True, True], [True, False]]) == {0: 1, 1: 0}


def test_field_checks_are_exact() -> None:
    assert field_ok(FieldCheck(contains="ラーメン"), "味噌ラーメン")
    assert field_ok(FieldCheck(gte=50), 90) and not field_ok(FieldCheck(gte=50), 10)
    assert not field_ok(FieldCheck(gte=50), "90") and not field_ok(FieldCheck(eq=1), None)
    assert field_ok(FieldCheck(one_of=["Tokyo", "東京"]), "東京")


def test_aggregate_sums_counts_by_category() -> None:
    ramen, osaka, tokyo = mem("Loves ramen", "r"), mem("Lives in Osaka", "c"), mem("Lives in Tokyo", "c")
    good = score_scenario(
        SCENARIO, [SessionState({"user": [ramen, osaka]}), SessionState({"user": [ramen, tokyo]})], JUDGE, None, {}
    )
    bad = score_scenario(SCENARIO, [SessionState({"user": []}), SessionState({"user": []})], JUDGE, None, {})
    by_category, total = aggregate([good, bad])
    assert total.scores()["recall"] == 0.5 and by_category["update"].expected == 8
    assert total.scores()["recall_at_5"] is None  # no search given: retrieval not scored


def test_the_llm_judges_answer_is_parsed_strictly() -> None:
    assert parse_matches('{"matches": [0, 2]}') == {0, 2}
    assert parse_matches('Sure! {"matches": ["1"]} hope that helps') == {1}
    assert parse_matches("no json here") == set() and parse_matches('{"matches": "all"}') == set()
