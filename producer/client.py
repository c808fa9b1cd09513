"""``Producer`` and ``AsyncProducer``: what a chat server calls on every turn.

Each ``submit`` is one ``EVALSHA`` of the SUBMIT script: append the turns, skip message ids
already seen, bump the thread's generation and move its due time. Validation, encoding and
decoding live in ``producer.core`` and are shared, so the two classes differ only in the I/O.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, overload

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from producer import core
from producer import status as status_core
from producer.config import ProducerConfig
from producer.errors import ProducerUnavailable
from producer.keys import Keys
from producer.scripts import SubmitScripts
from schemas.messages import Message, SubmitReceipt, SubmitRequest
from schemas.status import ThreadStatus, UserStatus

WARM_CONNECTIONS = 10
"""Default connections ``warm`` opens: what a chat server's concurrent requests need at once."""
log = logging.getLogger("reverie.producer")
_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OSError)

MessagesIn = Sequence[Message | dict[str, Any]] | Message | dict[str, Any]
ScriptCall = tuple[list[str], list[str | int]]


def _client_kwargs(cfg: ProducerConfig) -> dict[str, Any]:
    # No retries: a chat request must not wait for reconnect loops; the policy decides.
    return {
        "socket_timeout": cfg.timeout_s,
        "socket_connect_timeout": cfg.timeout_s,
        "health_check_interval": 0,
    }


class _Base:
    def __init__(self, config: ProducerConfig | None) -> None:
        self.config = config or ProducerConfig()
        self.keys = Keys(self.config.key_prefix)
        self._spool: deque[ScriptCall] = deque()
        self._dropped_log = _Throttled(self.config.log_interval_s)
        self._spooled_log = _Throttled(self.config.log_interval_s)

    def _prepare(
        self,
        user_id: object,
        thread_id: object,
        messages: object,
        after_seconds: object,
        max_wait: object,
        profile: object,
    ) -> tuple[SubmitRequest, list[str], list[str | int]]:
        request = core.build_request(
            user_id,
            thread_id,
            messages,
            after_seconds=after_seconds,
            max_wait=max_wait,
            profile=profile,
            profiles=self.config.profiles,
        )
        keys, argv = core.submit_call(
            self.keys,
            request,
            default_after_s=self.config.after_seconds,
            default_max_wait_s=self.config.max_wait_s,
        )
        return request, keys, argv

    def _where(self) -> str:
        """``host:port`` (or the socket path) of the Redis this producer talks to; no credentials."""
        kwargs = self.client.connection_pool.connection_kwargs  # type: ignore[attr-defined]
        if "path" in kwargs:
            return str(kwargs["path"])
        return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"

    def _status_unavailable(self, err: Exception) -> ProducerUnavailable:
        # A read has no "dropped" answer: whatever the submit policy, status raises.
        return ProducerUnavailable(f"Redis unreachable at {self._where()}: {type(err).__name__}")

    def _statuses(
        self, user_id: str, thread_ids: list[str], total: int, replies: list[Any], whole_user: bool
    ) -> ThreadStatus | UserStatus:
        threads, now_ms = status_core.decode_replies(user_id, thread_ids, replies)
        if not whole_user:
            return threads[0]
        return UserStatus(user_id=user_id, threads=threads, total_threads=total, now_ms=now_ms)

    @property
    def spooled(self) -> int:
        """Submits waiting in the spool (policy ``spool``)."""
        return len(self._spool)

    def _unavailable(self, request: SubmitRequest, err: Exception, call: ScriptCall) -> SubmitReceipt:
        if self.config.on_unavailable == "raise":
            raise ProducerUnavailable(f"Redis unreachable at {self._where()}: {type(err).__name__}") from err
        ids = {"user_id": request.user_id, "thread_id": request.thread_id, "error": type(err).__name__}
        if self.config.on_unavailable == "spool" and len(self._spool) < self.config.spool_max:
            self._spool.append(call)
            self._spooled_log.warn("reverie submits spooled: redis unreachable", spooled=len(self._spool), **ids)
            return core.spooled_receipt()
        self._dropped_log.warn("reverie submits dropped: redis unreachable", **ids)
        return core.dropped_receipt()


class _Throttled:
    """One warning per interval in an outage, not one per submit: the line carries how many
    submits it stands for (``count``, since the previous line) and the ids of the latest."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._last = -float("inf")
        self._count = 0

    def warn(self, message: str, **extra: object) -> None:
        with self._lock:
            self._count += 1
            now = time.monotonic()
            if now - self._last < self.interval_s:
                return
            count, self._count, self._last = self._count, 0, now
        log.warning(message, extra={**extra, "count": count})


class Producer(_Base):
    """Synchronous producer. Thread-safe (redis-py's pool)."""

    def __init__(self, config: ProducerConfig | None = None, *, client: redis.Redis | None = None) -> None:
        super().__init__(config)
        self.client = client or redis.Redis.from_url(
            self.config.redis_url, retry=Retry(NoBackoff(), 0), **_client_kwargs(self.config)
        )
        self._scripts = SubmitScripts(self.client)
        self._spool_lock = threading.Lock()

    def submit(
        self,
        user_id: str,
        thread_id: str,
        messages: MessagesIn,
        *,
        after_seconds: float | None = None,
        max_wait: float | None = None,
        profile: str = "default",
    ) -> SubmitReceipt:
        """Buffer new turns and (re)schedule the thread's reflection. Raises
        ``InvalidSubmission`` on bad input (nothing written)."""
        request, keys, argv = self._prepare(user_id, thread_id, messages, after_seconds, max_wait, profile)
        try:
            if self._spool:  # spooled turns go first, so a thread's turns keep their order
                with self._spool_lock:
                    self._flush_locked()
                    reply = self._scripts.submit(keys=keys, args=argv)
            else:
                reply = self._scripts.submit(keys=keys, args=argv)
        except _UNAVAILABLE as e:
            return self._unavailable(request, e, (keys, argv))
        return core.decode_reply(reply)

    @overload
    def status(self, user_id: str, thread_id: str, *, limit: int = ...) -> ThreadStatus: ...
    @overload
    def status(self, user_id: str, thread_id: None = ..., *, limit: int = ...) -> UserStatus: ...
    def status(self, user_id: str, thread_id: str | None = None, *, limit: int = 100) -> ThreadStatus | UserStatus:
        """Where a submission stands: buffered turns, due time, in flight, dead-lettered, and the
        last reflection (ids, counts, times; never text). With no ``thread_id``, every thread in
        the user's index (sorted, at most ``limit``). One round trip for a thread, two for a
        user. Raises ``InvalidRequest`` on a bad id and ``ProducerUnavailable`` if Redis is down."""
        u, t = status_core.check_ids(user_id, thread_id)
        limit = status_core.check_limit(limit)
        try:
            if t is None:
                ids, total = status_core.thread_ids(self.client.smembers(self.keys.user_threads(u)), limit)
            else:
                ids, total = [t], 1
            pipe = self.client.pipeline(transaction=True)
            status_core.queue_reads(pipe, self.keys, u, ids)
            replies = pipe.execute()
        except _UNAVAILABLE as e:
            raise self._status_unavailable(e) from e
        return self._statuses(u, ids, total, replies, whole_user=t is None)

    def flush(self) -> int:
        """Send spooled submits, oldest first; returns how many were sent. Raises the Redis
        error if it is still unreachable (what was not sent stays spooled)."""
        with self._spool_lock:
            return self._flush_locked()

    def _flush_locked(self) -> int:
        sent = 0
        while self._spool:
            keys, argv = self._spool[0]
            self._scripts.submit(keys=keys, args=argv)
            self._spool.popleft()
            sent += 1
        return sent

    def warm(self, connections: int = WARM_CONNECTIONS) -> int:
        """Open ``connections`` pooled connections and load the submit script now, at start-up:
        otherwise concurrent first submits each pay a connect (and one a script load) at the same
        moment. Returns the connections opened. Redis down raises ``ProducerUnavailable``."""
        pool = self.client.connection_pool
        n, opened = core.check_warm(connections), []
        try:
            try:
                for _ in range(n):
                    opened.append(pool.get_connection())
            finally:
                for conn in opened:
                    pool.release(conn)
            self.client.script_load(self._scripts.submit.script)  # on one of those connections
        except _UNAVAILABLE as e:
            raise ProducerUnavailable(f"Redis unreachable at {self._where()}: {type(e).__name__}") from e
        return len(opened)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncProducer(_Base):
    """asyncio producer for async chat servers (FastAPI, aiohttp)."""

    def __init__(self, config: ProducerConfig | None = None, *, client: aioredis.Redis | None = None) -> None:
        super().__init__(config)
        self.client = client or aioredis.Redis.from_url(
            self.config.redis_url, retry=AsyncRetry(NoBackoff(), 0), **_client_kwargs(self.config)
        )
        self._scripts = SubmitScripts(self.client)
        self._spool_lock = asyncio.Lock()

    async def submit(
        self,
        user_id: str,
        thread_id: str,
        messages: MessagesIn,
        *,
        after_seconds: float | None = None,
        max_wait: float | None = None,
        profile: str = "default",
    ) -> SubmitReceipt:
        """Async form of ``Producer.submit``."""
        request, keys, argv = self._prepare(user_id, thread_id, messages, after_seconds, max_wait, profile)
        try:
            if self._spool:  # spooled turns go first, so a thread's turns keep their order
                async with self._spool_lock:
                    await self._flush_locked()
                    reply = await self._scripts.submit(keys=keys, args=argv)
            else:
                reply = await self._scripts.submit(keys=keys, args=argv)
        except _UNAVAILABLE as e:
            return self._unavailable(request, e, (keys, argv))
        return core.decode_reply(reply)

    @overload
    async def status(self, user_id: str, thread_id: str, *, limit: int = ...) -> ThreadStatus: ...
    @overload
    async def status(self, user_id: str, thread_id: None = ..., *, limit: int = ...) -> UserStatus: ...
    async def status(
        self, user_id: str, thread_id: str | None = None, *, limit: int = 100
    ) -> ThreadStatus | UserStatus:
        """Async form of ``Producer.status``."""
        u, t = status_core.check_ids(user_id, thread_id)
        limit = status_core.check_limit(limit)
        try:
            if t is None:
                ids, total = status_core.thread_ids(await self.client.smembers(self.keys.user_threads(u)), limit)
            else:
                ids, total = [t], 1
            pipe = self.client.pipeline(transaction=True)
            status_core.queue_reads(pipe, self.keys, u, ids)
            replies = await pipe.execute()
        except _UNAVAILABLE as e:
            raise self._status_unavailable(e) from e
        return self._statuses(u, ids, total, replies, whole_user=t is None)

    async def flush(self) -> int:
        """Async form of ``Producer.flush``."""
        async with self._spool_lock:
            return await self._flush_locked()

    async def _flush_locked(self) -> int:
        sent = 0
        while self._spool:
            keys, argv = self._spool[0]
            await self._scripts.submit(keys=keys, args=argv)
            self._spool.popleft()
            sent += 1
        return sent

    async def warm(self, connections: int = WARM_CONNECTIONS) -> int:
        """Async form of ``Producer.warm``: call it once in the app's start-up (lifespan) hook."""
        pool = self.client.connection_pool
        n = core.check_warm(connections)
        results = await asyncio.gather(*(pool.get_connection() for _ in range(n)), return_exceptions=True)
        opened = [c for c in results if not isinstance(c, BaseException)]
        for conn in opened:
            await pool.release(conn)
        try:
            failed = next((e for e in results if isinstance(e, BaseException)), None)
            if failed is not None:
                raise failed
            await self.client.script_load(self._scripts.submit.script)  # on one of those connections
        except _UNAVAILABLE as e:
            raise ProducerUnavailable(f"Redis unreachable at {self._where()}: {type(e).__name__}") from e
        return len(opened)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def __aenter__(self) -> AsyncProducer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
