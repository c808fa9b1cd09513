"""The offline thresholds are calibrated on the eval scenarios, not guessed: the shipped table is
exactly what the calibration computes, per embedder."""

from __future__ import annotations

from worker.ops.eval.calibrate import THRESHOLDS_PY, fit_all, pairs_of, regenerated
from worker.ops.eval.scenario import Scenario, load_scenarios


def test_the_shipped_thresholds_are_what_calibration_computes() -> None:
    fits = fit_all()
    assert THRESHOLDS_PY.read_text(encoding="utf-8") == regenerated(fits), (
        "thresholds.py is stale: run `python -m worker.ops.eval.calibrate --write`"
    )
    use = fits["use-m3"]
    assert use.subject_accuracy > fits["hash-256"].subject_accuracy  # the semantic model separates better


def test_pairs_come_from_what_the_scenarios_say() -> None:
    """A same_as whose fact changed is a same-subject pair; two facts of one state are distinct;
    a chit-chat statement no expectation comes from is chit-chat."""
    scenario = Scenario.model_validate(
        {
            "id": "en-pairs",
            "category": "chitchat",
            "language": "en",
            "sessions": [
                {
                    "turns": ["I live in Osaka", "My cat is Mochi", "Thanks!"],
                    "expect": [
                        {"key": "city", "text": "lives in Osaka", "mentions": ["Osaka"]},
                        {"key": "cat", "text": "cat is Mochi", "mentions": ["Mochi"]},
                    ],
                },
                {
                    "turns": ["I moved to Tokyo"],
                    "expect": [
                        {"key": "city", "same_as": "city", "text": "lives in Tokyo", "mentions": ["Tokyo"]},
                        {"key": "cat", "same_as": "cat", "text": "cat is Mochi", "mentions": ["Mochi"]},
                    ],
                },
            ],
        }
    )
    pairs = pairs_of([scenario])
    assert pairs.same == [("I live in Osaka", "I moved to Tokyo")]
    assert ("I live in Osaka", "My cat is Mochi") in [tuple(sorted(p)) for p in pairs.distinct]
    assert pairs.chitchat == ["Thanks!"]
    assert set(pairs.facts) == {"I live in Osaka", "My cat is Mochi", "I moved to Tokyo"}
    assert len(load_scenarios()) > 40
