"""Pure delivery rules: which answers are retried, and how long to wait before the next try."""

from __future__ import annotations

import random
from dataclasses import dataclass

RETRY_STATUSES = frozenset({408, 425, 429})
"""Besides 5xx: the receiver timed out, is not ready, or is overloaded and says so. Any other
answer that is not 2xx (a 4xx, or a 3xx: redirects are not followed) is final: the event is
dead-lettered at once, to be replayed once the receiver is fixed."""


def retryable_status(status: int) -> bool:
    return status >= 500 or status in RETRY_STATUSES


def backoff_s(attempt: int, base_s: float, cap_s: float, *, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**(attempt-1))]."""
    ceiling = min(cap_s, base_s * 2 ** max(attempt - 1, 0))
    return (rng or random).uniform(0, ceiling)


def retry_after_s(header: str | None, cap_s: float) -> float | None:
    """A ``Retry-After`` of seconds, capped (HTTP dates are ignored: backoff applies)."""
    if header is None:
        return None
    try:
        value = float(header.strip())
    except ValueError:
        return None
    return min(max(value, 0.0), cap_s) if value == value else None  # NaN is not a delay


@dataclass(frozen=True)
class Attempt:
    """What one POST came to: ``status`` if the receiver answered, else the error class."""

    status: int | None
    error: str
    retry_after: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        return self.status is None or retryable_status(self.status)


def next_delay_s(attempt: Attempt, number: int, *, base_s: float, cap_s: float, max_attempts: int) -> float | None:
    """Seconds until the next try after attempt ``number`` (1-based), or ``None`` to dead-letter
    (not retryable, or the last allowed attempt). ``Retry-After`` can only lengthen the wait."""
    if attempt.ok or not attempt.retryable or number >= max_attempts:
        return None
    delay = backoff_s(number, base_s, cap_s)
    hinted = retry_after_s(attempt.retry_after, cap_s)
    return max(delay, hinted) if hinted is not None else delay
