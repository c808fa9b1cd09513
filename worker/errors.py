"""Errors raised by the Reverie worker."""

from __future__ import annotations


class ReverieError(Exception):
    """Base class of the worker's own errors."""


class ForeignMemoryError(ReverieError):
    """A write targeted a memory id that is not one of this user's memories."""


class StoreUnavailable(ReverieError):
    """Qdrant could not be reached or failed server-side; safe to retry later. Never carries secrets."""


class ExtractionFailed(ReverieError):
    """The extractor could not produce valid operations (bounded retries used up). Nothing is written."""


class LLMUnavailable(ReverieError):
    """The LLM kept failing (429/5xx/timeouts) after retries."""


class InvalidTaskArguments(ReverieError):
    """A reflect task arrived with arguments that are not (user_id, thread_id, generation)."""


class ConfigError(ReverieError):
    """Settings are missing or out of range; raised at startup with the field named."""
