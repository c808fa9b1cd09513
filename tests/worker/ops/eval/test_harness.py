"""The eval harness's record of finished reflections: a joint reflection (one run that committed a
user's sibling threads too) counts as the commit of every thread it took in, and its model calls
are counted once, on the thread that ran it."""

from __future__ import annotations

from schemas.reflection import ReflectionResult
from worker.ops.eval.harness import Results


def test_a_joint_commit_finishes_every_sibling_and_costs_once() -> None:
    results = Results()
    results(
        ReflectionResult(
            outcome="committed",
            user_id="u",
            thread_id="s1",
            generation=1,
            llm_calls=1,
            prompt_tokens=300,
            completion_tokens=20,
            siblings=["s2", "s3"],
        )
    )
    for thread in ("s1", "s2", "s3"):
        hit = results.terminal(("u", thread))
        assert hit is not None and hit[0].outcome == "committed" and hit[0].thread_id == thread
    assert results.cost(("u", "s1")) == (1, 320)
    assert results.cost(("u", "s2")) == results.cost(("u", "s3")) == (0, 0)
    assert results.terminal(("u", "s4")) is None
