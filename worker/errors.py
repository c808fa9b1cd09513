"""Errors raised by the Reverie worker.

``EXPECTED`` are the failures of normal operation (a model that keeps failing, an answer that
never validates, Qdrant down, a foreign id refused): they are logged as one WARNING line with
ids. Anything else is unexpected and is logged once at ERROR with its traceback.
"""

from __future__ import annotations

from producer.errors import StoreUnavailable
from schemas.errors import SchemaError
from schemas.profiles import ProfileError


class ReverieError(Exception):
    """Base class of the worker's own errors."""


class ForeignMemoryError(ReverieError):
    """A write targeted a memory id that is not one of this user's memories."""


class ExtractionFailed(ReverieError):
    """The extractor could not produce valid operations (bounded retries used up). Nothing is written."""


class LLMUnavailable(ReverieError):
    """The LLM kept failing (429/5xx/timeouts) after retries."""


class BrokerUnavailable(ReverieError):
    """A send to the Celery broker failed moments ago: the dispatcher puts the thread back in the
    due set without trying the broker again yet."""


class ConfigError(ReverieError, ValueError):
    """Settings that cannot run together (named in the message), found before anything starts."""


class InvalidTaskArguments(ReverieError):
    """A reflect task arrived with arguments that are not (user_id, thread_id, generation)."""


EXPECTED: tuple[type[Exception], ...] = (ReverieError, StoreUnavailable, ProfileError, SchemaError)
"""Failures that are part of normal operation: logged without a traceback."""

__all__ = [
    "EXPECTED",
    "BrokerUnavailable",
    "ConfigError",
    "ExtractionFailed",
    "ForeignMemoryError",
    "InvalidTaskArguments",
    "LLMUnavailable",
    "ReverieError",
    "StoreUnavailable",
]
