"""The worker's Redis keys, on top of the chat server's (``producer.keys``): every key Reverie
uses is named by ``WorkerKeys``. Tests and the CLI import it too.

Worker-side layout (``p`` is the prefix, ``u``/``t`` user and thread ids):

- ``p:journal:u:t``  string write-ahead commit plan of the reflection in progress
- ``p:lease:u``      string per-user lease token (fenced by ``p:fence:u``)
- ``p:fence:u``      int    monotonically increasing lease fencing counter
- ``p:waiters:u``    set    ``u:t`` of the user's threads waiting for the lease (woken on release)
- ``p:history:u``    list   memory history entries (JSON), newest last; capped, expires after retention
- ``p:changed_ss``   zset   ``u`` → ms of the user's last memory change (consolidation picks these)
- ``p:events``       stream one entry per committed memory change (ids only), capped ``MAXLEN ~``
- ``p:celery:…``     Celery's own keys (broker queues, results), under the same prefix
"""

from __future__ import annotations

from producer.keys import Keys


class WorkerKeys(Keys):
    """Every key: the chat server's (inherited) and the worker's own."""

    __slots__ = ()

    def journal(self, user_id: str, thread_id: str) -> str:
        return f"{self.prefix}:journal:{user_id}:{thread_id}"

    def lease(self, user_id: str) -> str:
        return f"{self.prefix}:lease:{user_id}"

    def fence(self, user_id: str) -> str:
        return f"{self.prefix}:fence:{user_id}"

    def waiters(self, user_id: str) -> str:
        return f"{self.prefix}:waiters:{user_id}"

    def history(self, user_id: str) -> str:
        return f"{self.prefix}:history:{user_id}"

    @property
    def changed_ss(self) -> str:
        return f"{self.prefix}:changed_ss"

    @property
    def events(self) -> str:
        return f"{self.prefix}:events"

    def event_streams(self) -> list[str]:
        """Every change-events stream a consumer must read (one today; one per shard once the
        coordination state is sharded)."""
        return [self.events]

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
