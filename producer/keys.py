"""Every Redis key Reverie uses, in one place. Tests and the CLI import these too.

Layout (``p`` is the key prefix, ``u``/``t`` user and thread ids, which cannot contain ``:``):

- ``p:thread:u:t``   hash   gen, first_ms, last_ms, profile, dispatched_gen, attempts
- ``p:buf:u:t``      list   buffered turns (JSON), oldest first; trimmed only after commit
- ``p:msgids:u:t``   set    message ids already accepted (idempotent append), with a TTL
- ``p:journal:u:t``  string write-ahead commit plan of the reflection in progress
- ``p:lease:u``      string per-user lease token (fenced by ``p:fence:u``)
- ``p:fence:u``      int    monotonically increasing lease fencing counter
- ``p:due_ss``       zset   ``u:t`` → due time (ms); trailing-edge debounce
- ``p:inflight_ss``  zset   ``u:t`` → deadline (ms) of a claimed, not yet finished reflection
- ``p:dlq``          hash   ``u:t`` → dead letter JSON
- ``p:stats``        hash   counters
- ``p:history:u``    list   memory history entries (JSON), newest last; capped, expires after retention
- ``p:changed_ss``   zset   ``u`` → ms of the user's last memory change (consolidation picks these)
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

    def journal(self, user_id: str, thread_id: str) -> str:
        return f"{self.prefix}:journal:{user_id}:{thread_id}"

    def lease(self, user_id: str) -> str:
        return f"{self.prefix}:lease:{user_id}"

    def fence(self, user_id: str) -> str:
        return f"{self.prefix}:fence:{user_id}"

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

    def history(self, user_id: str) -> str:
        return f"{self.prefix}:history:{user_id}"

    @property
    def changed_ss(self) -> str:
        return f"{self.prefix}:changed_ss"

    def prompt(self, key: str) -> str:
        return f"{self.prefix}:prompt:{key}"

    def prompt_history(self, key: str) -> str:
        return f"{self.prefix}:prompthist:{key}"

    def prompt_examples(self, key: str) -> str:
        return f"{self.prefix}:promptex:{key}"

    def thread_keys(self, user_id: str, thread_id: str) -> list[str]:
        """All per-thread keys (for ``forget``)."""
        return [
            self.thread(user_id, thread_id),
            self.buffer(user_id, thread_id),
            self.msgids(user_id, thread_id),
            self.journal(user_id, thread_id),
        ]

    def celery_prefix(self) -> str:
        """Kombu ``global_keyprefix`` so Celery's own keys share our prefix."""
        return f"{self.prefix}:celery:"
