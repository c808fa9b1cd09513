"""The retrieval study's figures come from real rankings in Qdrant local mode, scored exactly."""

from __future__ import annotations

import pytest

from producer.memories.embeddings import HashEmbedder, UniversalSentenceEncoder
from worker.ops.eval.retrieval import Tally, lexical_terms, run_study
from worker.ops.eval.scenario import Scenario


def test_lexical_terms_are_words_and_cjk_bigrams() -> None:
    assert lexical_terms("I love Miso ramen, miso!") == {"i": 1, "love": 1, "miso": 2, "ramen": 1}
    assert lexical_terms("味噌ラーメン") == {"味噌": 1, "噌ラ": 1, "ラー": 1, "ーメ": 1, "メン": 1}


def test_recall_and_mrr_are_counted_per_question() -> None:
    t = Tally()
    t.add([7, 3, 9], target=3, k=5)  # rank 2
    t.add([1, 2, 3], target=8, k=5)  # missed
    assert t.scores() == {"n": 2, "recall": 0.5, "mrr": pytest.approx(0.25)}


def _scenario(n: int, fact: str, ask: str) -> Scenario:
    return Scenario.model_validate(
        {
            "id": f"en-study-{n}",
            "category": "new_facts",
            "language": "en",
            "sessions": [{"turns": [fact], "expect": [{"key": "k", "text": fact, "mentions": [fact.split()[-1]]}]}],
            "questions": [{"ask": ask, "answer": "k"}],
        }
    )


def test_the_study_ranks_one_haystack_with_dense_and_hybrid_search() -> None:
    scenarios = [
        _scenario(1, "The user keeps bees", "Does the user keep bees?"),
        _scenario(2, "The user plays the cello", "Which instrument does the user play?"),
        _scenario(3, "The user lives in Sapporo", "ユーザーはどこに住んでいますか?"),
    ]
    study = run_study(UniversalSentenceEncoder(), scenarios)
    assert study["memories"] == 3
    for mode in ("dense", "hybrid"):
        assert study["questions"][mode]["all"]["n"] == 3
        assert study["questions"][mode]["all"]["recall"] == 1.0  # three memories: all in the top 5
        assert study["questions"][mode]["ja"]["n"] == 1
    assert study["questions"]["dense"]["en"]["mrr"] == 1.0
    lexical = run_study(HashEmbedder(64), scenarios[:1])
    assert lexical["questions"]["hybrid"]["all"]["mrr"] == 1.0
