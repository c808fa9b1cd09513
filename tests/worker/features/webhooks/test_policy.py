"""The pure delivery rules: which answers are retried, how long to wait, when to give up."""

from __future__ import annotations

import random

import pytest

from worker.features.webhooks.policy import Attempt, backoff_s, next_delay_s, retry_after_s


@pytest.mark.parametrize(
    ("status", "retried"),
    [(None, True), (500, True), (503, True), (408, True), (425, True), (429, True), (400, False), (401, False),
     (404, False), (410, False), (301, False)],
)  # fmt: skip
def test_which_answers_are_retried(status, retried) -> None:
    attempt = Attempt(status, "x")
    assert attempt.retryable is retried and not attempt.ok


def test_2xx_is_delivered() -> None:
    assert Attempt(200, "HTTP 200").ok and Attempt(204, "HTTP 204").ok and not Attempt(300, "HTTP 300").ok


def test_backoff_is_full_jitter_under_a_doubling_ceiling_capped() -> None:
    rng = random.Random(7)
    for attempt, ceiling in ((1, 2.0), (2, 4.0), (3, 8.0), (6, 30.0), (40, 30.0)):
        waits = [backoff_s(attempt, 2.0, 30.0, rng=rng) for _ in range(300)]
        assert all(0 <= w <= ceiling for w in waits)
        assert max(waits) > ceiling * 0.9 and min(waits) < ceiling * 0.1, "spread over the whole range"


def test_retry_after_lengthens_never_shortens_and_is_capped() -> None:
    assert retry_after_s("3", 10) == 3 and retry_after_s("99", 10) == 10 and retry_after_s("-4", 10) == 0
    assert retry_after_s("Wed, 21 Oct 2026 07:28:00 GMT", 10) is None and retry_after_s("nan", 10) is None
    delay = next_delay_s(Attempt(429, "HTTP 429", "5"), 1, base_s=0.01, cap_s=60, max_attempts=3)
    assert delay == 5


def test_the_last_attempt_and_final_answers_dead_letter() -> None:
    rules = {"base_s": 1.0, "cap_s": 10.0, "max_attempts": 3}
    assert next_delay_s(Attempt(500, "HTTP 500"), 2, **rules) is not None
    assert next_delay_s(Attempt(500, "HTTP 500"), 3, **rules) is None
    assert next_delay_s(Attempt(410, "HTTP 410"), 1, **rules) is None
    assert next_delay_s(Attempt(None, "ConnectError"), 1, **rules) is not None
