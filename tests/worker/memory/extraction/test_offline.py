"""The offline memory manager (not an LLM) with the default embedder, use-m3: paraphrases update
in place, the latest statement on a subject wins, distinct facts stay apart, chit-chat and
questions are not remembered, and a retraction deletes only where the profile allows it."""

from __future__ import annotations

from datetime import UTC, datetime

from producer.memories.embeddings import UniversalSentenceEncoder
from schemas.memory import MemoryRecord
from schemas.messages import BufferedTurn
from worker.memory.extraction.offline import OfflineExtractor
from worker.memory.extraction.thresholds import OFFLINE

EMB = UniversalSentenceEncoder()
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def turns(*texts: str) -> list[BufferedTurn]:
    return [BufferedTurn(role="user", content=t, ts_ms=0) for t in texts]


def memory(content: str, n: int = 0, schema: str = "Memory") -> MemoryRecord:
    return MemoryRecord(
        id=f"00000000-0000-0000-0000-00000000000{n}",
        user_id="u",
        namespace="m",
        schema_name=schema,
        content=content,
        data={"content": content},
        created_at=T0,
        updated_at=T0,
    )


def ops(out: object) -> list[tuple[str, int | None, str]]:
    return [(op.action, op.alias, op.content) for op in out.ops]  # type: ignore[attr-defined]


def test_it_uses_the_thresholds_calibrated_for_its_embedder() -> None:
    assert OfflineExtractor(EMB).thresholds == OFFLINE["use-m3"]
    assert "not an LLM" in OfflineExtractor(EMB).name


def test_the_seed_article_updates_ramen_and_pasta_in_place() -> None:
    """ラーメン → 味噌ラーメン and パスタ好き → 嫌い are updates of the memories shown, not new ones."""
    existing = [memory("ラーメンが大好きです!", 0), memory("パスタも好きです", 1)]
    out = OfflineExtractor(EMB).extract(turns("ラーメンは味噌ラーメンが好き", "パスタは嫌いになりました"), existing)
    assert ops(out) == [("update", 0, "ラーメンは味噌ラーメンが好き"), ("update", 1, "パスタは嫌いになりました")]


def test_with_deletes_on_a_retraction_deletes_the_memory() -> None:
    existing = [memory("ラーメンが大好きです!", 0), memory("パスタも好きです", 1)]
    out = OfflineExtractor(EMB, deletes=True).extract(turns("パスタは嫌いになりました"), existing)
    assert ops(out) == [("delete", 1, "")]


def test_distinct_facts_of_one_batch_stay_apart_and_a_paraphrase_replaces_its_statement() -> None:
    batch = turns("ラーメンが大好きです!", "パスタも好きです", "I'm a backend engineer in Osaka.")
    out = OfflineExtractor(EMB).extract(batch, [])
    assert [a for a, _, _ in ops(out)] == ["insert", "insert", "insert"]
    again = OfflineExtractor(EMB).extract(turns("I love ramen", "Ramen is my favourite food"), [])
    assert ops(again) == [("insert", None, "Ramen is my favourite food")]


def test_chit_chat_questions_and_structured_memories_are_left_alone() -> None:
    existing = [memory("UserFoodPreference(food_name=ラーメン)", 0, schema="UserFoodPreference")]
    out = OfflineExtractor(EMB).extract(
        turns("Thanks!", "こんにちは", "What's the weather like?", "ラーメン大好き"), existing
    )
    assert ops(out) == [("insert", None, "ラーメン大好き")]  # the structured memory is not rewritten


def test_profile_flags_are_honoured() -> None:
    existing = [memory("I live in Tokyo", 0)]
    no_updates = OfflineExtractor(EMB, updates=False).extract(turns("住まいは東京です", "My cat is Mochi"), existing)
    assert ops(no_updates) == [("insert", None, "My cat is Mochi")]
    no_inserts = OfflineExtractor(EMB, inserts=False).extract(turns("My cat is Mochi"), existing)
    assert ops(no_inserts) == []
