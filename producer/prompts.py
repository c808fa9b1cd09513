"""Procedural memory on the chat-server side: fetch the current system prompt of an agent in
one ``HGET``, and record conversations + feedback for the optimizer. Redis + pydantic only.

    prompts = PromptStore(redis.Redis.from_url(url), Keys("reverie"))
    system = prompts.get_prompt("support-bot", default=BASE_PROMPT)
    prompts.record_example("support-bot", messages, score=0.2, comment="too verbose")

The optimizer (``reverie.optimize_prompt`` Celery task) reads the examples and stores a new
version; every previous version is kept (capped) in the key's history.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import ValidationError

from producer.core import describe_errors
from producer.errors import InvalidSubmission
from producer.keys import Keys
from producer.scripts import SubmitScripts
from producer.text import as_text
from schemas.errors import DecodeError
from schemas.ids import check_id
from schemas.procedural import PromptExample, PromptVersion

MAX_EXAMPLES = 200
"""Examples kept per prompt key (newest); the optimizer reads at most this many."""


def decode_version(raw: bytes | str | None) -> PromptVersion | None:
    if raw is None:
        return None
    try:
        return PromptVersion.model_validate_json(raw)
    except ValueError as e:
        raise DecodeError("stored prompt does not match PromptVersion") from e


class PromptStore:
    """Versioned prompts per key (sync client; ``get_prompt`` is one round trip)."""

    def __init__(self, client: Any, keys: Keys, *, history_max: int = 50) -> None:
        self.r = client
        self.keys = keys
        self.history_max = history_max
        self.scripts = SubmitScripts(client)

    def current(self, key: str) -> PromptVersion | None:
        check_id(key)
        return decode_version(self.r.hget(self.keys.prompt(key), "json"))

    def get_prompt(self, key: str, default: str | None = None) -> str | None:
        """The current prompt text of ``key`` (``default`` if none was ever stored)."""
        found = self.current(key)
        return default if found is None else found.prompt

    def set_prompt(
        self,
        key: str,
        prompt: str,
        *,
        rationale: str = "",
        source: str = "manual",
        examples_used: int = 0,
        expected_version: int | None = None,
    ) -> PromptVersion | None:
        """Store a new version (the old one moves to history). With ``expected_version``, a
        concurrent change makes this return ``None`` and write nothing."""
        check_id(key)
        base = self.current(key) if expected_version is None else None
        expected = expected_version if expected_version is not None else (base.version if base else 0)
        try:
            record = PromptVersion(
                key=key,
                version=expected + 1,
                prompt=prompt,
                rationale=rationale,
                source=source,  # type: ignore[arg-type]
                examples_used=examples_used,
                updated_ms=int(time.time() * 1000),
            )
        except ValidationError as e:
            raise InvalidSubmission(describe_errors(e)) from None
        version = int(
            self.scripts.prompt_set(
                keys=[self.keys.prompt(key), self.keys.prompt_history(key)],
                args=[expected, record.model_dump_json(), self.history_max],
            )
        )
        return None if version < 0 else record

    def history(self, key: str) -> list[PromptVersion]:
        """Previous versions, oldest first (the current one is ``current``)."""
        check_id(key)
        raw = self.r.lrange(self.keys.prompt_history(key), 0, -1)
        return [v for v in (decode_version(x) for x in raw) if v is not None]

    def record_example(
        self, key: str, messages: list[Any], *, score: float | None = None, comment: str | None = None
    ) -> None:
        """Keep one conversation (and its feedback) for the next optimizer run of ``key``."""
        check_id(key)
        try:
            example = PromptExample(
                messages=messages, score=score, comment=comment, recorded_ms=int(time.time() * 1000)
            )
        except ValidationError as e:
            raise InvalidSubmission(describe_errors(e)) from None
        pipe = self.r.pipeline(transaction=True)
        pipe.rpush(self.keys.prompt_examples(key), example.model_dump_json())
        pipe.ltrim(self.keys.prompt_examples(key), -MAX_EXAMPLES, -1)
        pipe.execute()

    def examples(self, key: str, limit: int = MAX_EXAMPLES) -> list[PromptExample]:
        check_id(key)
        return [
            PromptExample.model_validate_json(as_text(x))
            for x in self.r.lrange(self.keys.prompt_examples(key), -limit, -1)
        ]

    def forget_examples(self, key: str, count: int) -> None:
        """Drop the ``count`` oldest examples (the ones an optimizer run consumed)."""
        if count > 0:
            self.r.ltrim(self.keys.prompt_examples(key), count, -1)
