"""Recall of what the user said moments ago, before any reflection: the turns still buffered in
Redis (submitted, not yet reflected), matched against a query like memories are.

A match is a user-role turn (assistant, system and tool turns are never returned), among the
``limit`` newest still buffered across the user's threads, embedded with the reader's embedder and
scored by cosine against the query, as memories are. One Redis round trip (the PENDING_TURNS
script) per search that asks for them. The script reads buffer keys it names from the user's
thread index: all in the user's shard (one slot on Redis Cluster), so it runs there too.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from producer import layout
from producer.connect import is_cluster, where
from producer.keys import Keys
from producer.scripts import ReadScripts
from schemas.ids import check_id
from schemas.memory import MemoryRecord, MemorySource
from schemas.messages import BufferedTurn

PENDING_LIMIT = 20
"""Newest user turns considered per search (embedding 20 short turns costs a few ms locally)."""
SCAN_PER_THREAD = 100
"""Newest buffered turns looked at per thread (a buffer holds at most a burst between reflections)."""
MAX_THREADS = 50
PENDING_KIND = "turn"


class PendingTurns:
    """Reads one user's buffered user turns from Redis (the keys ``producer.keys`` names), in the
    shard layout recorded in Redis (read once, on first use). ``client`` is a ``redis.Redis`` or a
    ``RedisCluster``, or ``connect``, a function that opens one on first use."""

    def __init__(
        self,
        client: Any,
        keys: Keys,
        *,
        limit: int = PENDING_LIMIT,
        owns_client: bool = False,
        connect: Callable[[], Any] | None = None,
    ):
        self._client = client
        self._connect = connect
        self.keys = keys
        self.limit = limit
        self._owns_client = owns_client
        self._scripts: ReadScripts | None = None
        self._layout_checked = False

    @property
    def client(self) -> Any:
        if self._client is None and self._connect is not None:
            self._client = self._connect()
        return self._client

    def _ready(self) -> ReadScripts:
        if self._scripts is None:
            self._scripts = ReadScripts(self.client)
        if not self._layout_checked:
            recorded = layout.resolve(self.client, self.keys, where=where(self.client), write=False)
            if recorded != self.keys.layout:
                self.keys = layout.followable(self.keys, recorded, is_cluster(self.client))
            self._layout_checked = True
        return self._scripts

    def fetch(self, user_id: str) -> list[tuple[str, BufferedTurn]]:
        """``(thread_id, turn)`` of the user's newest buffered user turns, newest first (one round
        trip; two the first time, which reads the layout record)."""
        check_id(user_id)
        scripts = self._ready()
        prefix = self.keys.buffer(user_id, "")
        reply = scripts.pending_turns(
            keys=[self.keys.user_threads(user_id)], args=[prefix, self.limit, SCAN_PER_THREAD, MAX_THREADS]
        )
        found = []
        for thread, raw in zip(reply[::2], reply[1::2], strict=True):
            try:
                turn = BufferedTurn.model_validate_json(raw)
            except ValueError:
                continue  # not ours to repair here: the worker dead-letters an undecodable buffer
            found.append((_s(thread), turn))
        found.sort(key=lambda item: -item[1].ts_ms)
        return found[: self.limit]

    def close(self) -> None:
        if self._owns_client and self._client is not None:
            self._client.close()


def as_record(user_id: str, namespace: str, thread_id: str, turn: BufferedTurn, score: float) -> MemoryRecord:
    """A buffered turn as a search hit, marked ``pending``. Its id is ``pending:<thread>:<message id
    or ts>``, never a memory id, so it cannot be passed to ``get`` or updated by mistake."""
    at = datetime.fromtimestamp(turn.ts_ms / 1000, UTC)
    return MemoryRecord(
        id=f"pending:{thread_id}:{turn.id or turn.ts_ms}",
        user_id=user_id,
        namespace=namespace,
        kind=PENDING_KIND,
        schema_name="BufferedTurn",
        content=turn.content,
        created_at=at,
        updated_at=at,
        source=MemorySource(thread_id=thread_id, turn_ids=[turn.id] if turn.id else [], turn_count=1),
        score=score,
        pending=True,
    )


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
