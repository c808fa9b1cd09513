"""The Redis keys a chat server touches, in one place (the worker adds its own in
``worker.pipeline.keys``, on top of these). Tests and the CLI import them too.

Layout (``p`` is the key prefix, ``u``/``t`` user and thread ids, which cannot contain ``:``):

- ``p:thread:u:t``   hash   gen, first_ms, last_ms, profile, dispatched_gen, attempts, and the
  last reflection's ``last_*`` fields (written by the worker when a reflection ends)
- ``p:buf:u:t``      list   buffered turns (JSON), oldest first; trimmed only after commit
- ``p:msgids:u:t``   set    message ids already accepted (idempotent append), with a TTL
- ``p:threads:u``    set    thread ids of user ``u`` (``status(u)`` lists them); 8-day TTL from the last submit
- ``p:due_ss``       zset   ``u:t`` → due time (ms); trailing-edge debounce
- ``p:inflight_ss``  zset   ``u:t`` → deadline (ms) of a claimed reflection (written by the worker,
  read by ``status``)
- ``p:dlq``          hash   ``u:t`` → dead letter JSON (a dead-lettered thread buffers, not schedules)
- ``p:stats``        hash   counters
- ``p:prompt:k``     hash   current procedural prompt of key ``k`` (``version``, ``json``)
- ``p:prompthist:k`` list   previous prompt versions of ``k`` (JSON), newest last; capped
- ``p:promptex:k``   list   conversations + feedback recorded for the optimizer of ``k``; capped
"""

from __future__ import annotations

SEP = ":"


def member(user_id: str, thread_id: str) -> str:
    """Sorted-set member naming a thread."""
    return f"{user_id}{SEP}{thread_id}"


def split_member(value: str | bytes) -> tuple[str, str]:
    """Inverse of ``member``."""
    text = value.decode() if isinstance(value, bytes) else value
    user_id, _, thread_id = text.partition(SEP)
    return user_id, thread_id


class Keys:
    """Key builder bound to one prefix, so tests can isolate themselves with their own."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str = "reverie") -> None:
        self.prefix = prefix

    def thread(self, user_id: str, thread_id: str) -> str:
        return f"{self.prefix}:thread:{user_id}:{thread_id}"

    def buffer(self, user_id: str, thread_id: str) -> str:
        return f"{self.prefix}:buf:{user_id}:{thread_id}"

    def msgids(self, user_id: str, thread_id: str) -> str:
        return f"{self.prefix}:msgids:{user_id}:{thread_id}"

    def user_threads(self, user_id: str) -> str:
        return f"{self.prefix}:threads:{user_id}"

    @property
    def due_ss(self) -> str:
        return f"{self.prefix}:due_ss"

    @property
    def inflight_ss(self) -> str:
        return f"{self.prefix}:inflight_ss"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}:dlq"

    @property
    def stats(self) -> str:
        return f"{self.prefix}:stats"

    def prompt(self, key: str) -> str:
        return f"{self.prefix}:prompt:{key}"

    def prompt_history(self, key: str) -> str:
        return f"{self.prefix}:prompthist:{key}"

    def prompt_examples(self, key: str) -> str:
        return f"{self.prefix}:promptex:{key}"
