"""Profiles registered by import path; pure retrieval selection and history derivation."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schemas.memory import MemoryRecord
from schemas.messages import BufferedTurn
from schemas.profiles import Profile, ProfileError, get_profile, load_profiles
from schemas.reflection import CommitPlan, MemoryOp
from tests.support import food
from worker.memory.history import entries_from_plan
from worker.memory.retrieval import cap, pinned


def test_profiles_load_by_import_path_and_unknown_names_fail_clearly() -> None:
    loaded = load_profiles(food.ALL)
    assert [p.name for p in loaded] == ["food", "food-nodelete", "food-tombstone", "life"]
    assert get_profile("food") is food.food_profile
    assert food.food_profile.format_namespace("alice") == ("chat", "alice")
    with pytest.raises(ProfileError, match=r"unknown profile 'nope'.*REVERIE_PROFILES"):
        get_profile("nope")
    with pytest.raises(ProfileError, match="cannot import"):
        load_profiles("no_such_module.x:profile")
    with pytest.raises(ProfileError, match="is not a Profile"):
        load_profiles("tests.support.food:FOOD_INSTRUCTIONS")
    with pytest.raises(ProfileError, match="must look like"):
        load_profiles("tests.support.food")
    with pytest.raises(ProfileError, match="placeholders"):
        Profile(name="x", namespace=("chat", "{org_id}"))


def test_producer_from_env_rejects_profiles_the_workers_do_not_know(monkeypatch) -> None:
    from producer import InvalidSubmission, ProducerConfig
    from producer.core import build_request

    monkeypatch.setenv("REVERIE_REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("REVERIE_PROFILES", "tests.support.food:food_profile")
    config = ProducerConfig.from_env()
    assert config.profiles is not None and "food" in config.profiles
    msg = [{"role": "user", "content": "hi"}]
    build_request("u", "t", msg, profile="food", profiles=config.profiles)
    with pytest.raises(InvalidSubmission, match="unknown profile 'fod'"):
        build_request("u", "t", msg, profile="fod", profiles=config.profiles)


def _record(i: int, data: dict, content: str = "") -> MemoryRecord:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return MemoryRecord(
        id=f"m{i}", user_id="u", namespace="n", content=content or str(data), data=data, created_at=now, updated_at=now
    )


def test_retrieval_pins_named_entities_and_respects_the_token_budget() -> None:
    turns = [BufferedTurn(role="user", content="ラーメンは味噌ラーメンが好き", ts_ms=0)]
    ramen = _record(1, {"food_name": "ラーメン", "preference": 100})
    pasta = _record(2, {"food_name": "パスタ", "preference": 80})
    osaka = _record(3, {"content": "Lives in Osaka"}, "Lives in Osaka")
    assert pinned(turns, [pasta, ramen, osaka]) == [ramen]
    assert pinned([BufferedTurn(role="user", content="back in osaka!", ts_ms=0)], [osaka]) == [osaka]
    free_text = _record(4, {"content": "ラーメンが大好きです"}, "ラーメンが大好きです")
    assert pinned(turns, [free_text, osaka]) == [free_text]
    assert [r.id for r in cap([ramen], [pasta, ramen, osaka], limit=2, token_budget=10_000)] == ["m1", "m2"]
    assert [r.id for r in cap([ramen], [pasta, osaka], limit=10, token_budget=1)] == ["m1"]


def test_history_is_derived_from_the_journal_alone() -> None:
    plan = CommitPlan(
        user_id="u",
        thread_id="t",
        generation=3,
        turn_count=1,
        namespace="n",
        created_ms=5,
        ops=[
            MemoryOp(op="update", id="1", content="new", previous_content="old", version=2, created_at_ms=1),
            MemoryOp(op="delete", id="2", tombstone=True, previous_content="gone"),
        ],
    )
    entries = entries_from_plan(plan)
    assert [(e.op, e.old_content, e.new_content, e.reflection_id) for e in entries] == [
        ("update", "old", "new", "t:g3"),
        ("tombstone", "gone", None, "t:g3"),
    ]
