"""A LangMem ``ReflectionExecutor``-shaped entry point, for code written against LangMem.

``ReflectionExecutor(producer).submit({"messages": [...]}, after_seconds=5, thread_id="t1",
config={"configurable": {"user_id": "u1"}})`` buffers the turns and lets Reverie's workers
reflect once the thread is quiet. Unlike LangMem's local executor nothing runs in-process,
and ``shutdown()`` never waits on pending work (it lives in Redis).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from producer.client import Producer
from producer.errors import InvalidSubmission
from schemas.messages import SubmitReceipt


class ReflectionExecutor:
    """Drop-in for LangMem's ``submit(payload, after_seconds=…, thread_id=…)``."""

    def __init__(self, producer: Producer, *, profile: str = "default", user_id: str | None = None) -> None:
        self.producer = producer
        self.profile = profile
        self.user_id = user_id

    def submit(
        self,
        payload: Mapping[str, Any],
        /,
        after_seconds: float = 0,
        thread_id: str | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> SubmitReceipt:
        """Buffer ``payload["messages"]`` for (user, thread). The user comes from
        ``config["configurable"]["user_id"]``, ``payload["user_id"]`` or the constructor."""
        if not isinstance(payload, Mapping):
            raise InvalidSubmission(["payload: must be a mapping with 'messages'"])
        configurable = (config or {}).get("configurable", {}) if isinstance(config, Mapping) else {}
        user_id = configurable.get("user_id") or payload.get("user_id") or self.user_id
        thread = thread_id or configurable.get("thread_id") or payload.get("thread_id")
        if user_id is None:
            raise InvalidSubmission(["user_id: missing (config['configurable']['user_id'])"])
        if thread is None:
            raise InvalidSubmission(["thread_id: missing"])
        if "messages" not in payload:
            raise InvalidSubmission(["payload.messages: missing"])
        return self.producer.submit(
            user_id, thread, payload["messages"], after_seconds=after_seconds, profile=self.profile
        )

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Nothing to wait for: pending reflections live in Redis, not in this process."""
        self.producer.close()
