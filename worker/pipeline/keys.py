"""The worker's Redis keys, on top of the chat server's (``producer.keys``): every key Reverie
uses is named by ``WorkerKeys``. Tests and the CLI import it too.

Worker-side layout (``p`` is the prefix, ``u``/``t`` user and thread ids; with shards, each key
carries its shard's hash tag after the prefix, as in ``producer.keys``):

- ``p:journal:u:t``  string write-ahead commit plan of the reflection in progress
- ``p:changes:u``    hash   change id → write-ahead journal of a tool call or consolidation run (``ChangeJournal``)
- ``p:lease:u``      string per-user lease token (fenced by ``p:fence:u``)
- ``p:fence:u``      int    monotonically increasing lease fencing counter
- ``p:waiters:u``    set    ``u:t`` of the user's threads waiting for the lease (woken on release)
- ``p:history:u``    list   memory history entries (JSON), newest last; capped, expires after retention
- ``p:changed_ss``   zset   ``u`` → ms of the user's last memory change (consolidation picks these); one per shard
- ``p:events``       stream one entry per committed memory change (ids only), capped ``MAXLEN ~``; one per shard
- ``p:celery:…``     Celery's own keys (broker queues, results), under the same prefix (on the
  Celery Redis, which is another server when the coordination state is on Redis Cluster)
"""

from __future__ import annotations

from producer.keys import Keys, ShardKeys


class WorkerShardKeys(ShardKeys):
    """A shard's keys, the worker's included."""

    __slots__ = ()

    @property
    def changed_ss(self) -> str:
        return f"{self.base}:changed_ss"

    @property
    def events(self) -> str:
        return f"{self.base}:events"


class WorkerKeys(Keys):
    """Every key: the chat server's (inherited) and the worker's own."""

    __slots__ = ()
    SHARD_KEYS = WorkerShardKeys

    def shard(self, index: int) -> WorkerShardKeys:
        return super().shard(index)  # type: ignore[return-value]

    def shard_for(self, user_id: str) -> WorkerShardKeys:
        return super().shard_for(user_id)  # type: ignore[return-value]

    def all_shards(self) -> list[WorkerShardKeys]:
        return super().all_shards()  # type: ignore[return-value]

    def journal(self, user_id: str, thread_id: str) -> str:
        return f"{self._user(user_id)}:journal:{user_id}:{thread_id}"

    def changes(self, user_id: str) -> str:
        return f"{self._user(user_id)}:changes:{user_id}"

    def lease(self, user_id: str) -> str:
        return f"{self._user(user_id)}:lease:{user_id}"

    def fence(self, user_id: str) -> str:
        return f"{self._user(user_id)}:fence:{user_id}"

    def waiters(self, user_id: str) -> str:
        return f"{self._user(user_id)}:waiters:{user_id}"

    def history(self, user_id: str) -> str:
        return f"{self._user(user_id)}:history:{user_id}"

    def _only(self) -> WorkerShardKeys:
        return super()._only()  # type: ignore[return-value]

    @property
    def changed_ss(self) -> str:
        return self._only().changed_ss

    @property
    def events(self) -> str:
        return self._only().events

    def event_streams(self) -> list[str]:
        """Every change-events stream a consumer must read: one per shard (a user's events are all
        in the stream of the user's shard, so per-user order holds within one stream)."""
        return [s.events for s in self.all_shards()]

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

    @classmethod
    def of(cls, keys: Keys) -> WorkerKeys:
        """``keys`` as ``WorkerKeys`` (same prefix and layout)."""
        return keys if isinstance(keys, WorkerKeys) else cls(keys.prefix, keys.shards, tagged=keys.tagged)
