"""``Producer`` and ``AsyncProducer``: what a chat server calls on every turn.

Each ``submit`` is one ``EVALSHA`` of the SUBMIT script: append the turns, skip message ids
already seen, bump the thread's generation and move its due time (with ``replica_wait_ms``, a
``WAIT`` rides in the same round trip). Validation, encoding and decoding live in
``producer.core`` and are shared, so the two classes differ only in the I/O. Either talks to one
Redis or to Redis Cluster (``ProducerConfig.cluster``); the key layout (shards) is checked once
per process against the one recorded in Redis (``producer.layout``), at ``warm()`` or the first
submit.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any, overload

from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from producer import core, layout
from producer import status as status_core
from producer.base import UNAVAILABLE_OR_CLOSED, WARM_CONNECTIONS, Call, ProducerBase, client_kwargs
from producer.config import ProducerConfig
from producer.connect import UNAVAILABLE, AsyncClient, SyncClient, is_cluster, open_async, open_sync, where
from producer.errors import ProducerUnavailable
from producer.pipelined import SubmitPipeline
from producer.replicas import call_and_wait, call_and_wait_async
from producer.scripts import SubmitScripts
from schemas.messages import Message, SubmitReceipt
from schemas.status import ThreadStatus, UserStatus

MessagesIn = Sequence[Message | dict[str, Any]] | Message | dict[str, Any]


class Producer(ProducerBase):
    """Synchronous producer. Thread-safe (redis-py's pool)."""

    def __init__(self, config: ProducerConfig | None = None, *, client: SyncClient | None = None) -> None:
        super().__init__(config, client)
        self._client = client
        self._scripts: SubmitScripts | None = None
        self._spool_lock = threading.Lock()
        self._open_lock = threading.Lock()

    @property
    def client(self) -> SyncClient:
        """The Redis client, opened on first use (``RedisCluster`` connects when built, so a
        cluster that is down counts as unavailable at the first submit, not at construction)."""
        if self._client is None:
            with self._open_lock:
                if self._client is None:
                    retry = Retry(NoBackoff(), 0)
                    kwargs = client_kwargs(self.config)
                    self._client = open_sync(self.config.redis_url, cluster=self.cluster, retry=retry, **kwargs)
        return self._client

    @property
    def scripts(self) -> SubmitScripts:
        if self._scripts is None:
            self._scripts = SubmitScripts(self.client)
        return self._scripts

    def _where(self) -> str:
        if self._client is None:
            from producer.connect import url_where

            return url_where(self.config.redis_url)
        return where(self._client)

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
        request, call = self._prepare(user_id, thread_id, messages, after_seconds, max_wait, profile)
        try:
            if self._spool:  # spooled turns go first, so a thread's turns keep their order
                with self._spool_lock:
                    self._flush_locked()
                    reply, replicas = self._send(call)
            else:
                reply, replicas = self._send(call)
        except UNAVAILABLE_OR_CLOSED as e:
            return self._unavailable(request, e, call)
        return self._receipt(reply, replicas)

    def _send(self, call: Call) -> tuple[Any, int | None]:
        if not self._layout_checked:
            self._check_layout()
        reply, replicas = self._run(call)
        if core.is_closed(reply):  # a reshard moved the shard: read the record again, resend once
            self._check_layout()
            reply, replicas = self._run(call)
            if core.is_closed(reply):
                raise self._closed()
        return reply, replicas

    def _run(self, call: Call) -> tuple[Any, int | None]:
        user_id, thread_id, argv = call
        keys = core.submit_keys(self.keys, user_id, thread_id)
        if not self.config.replica_wait_ms:
            return self.scripts.submit(keys=keys, args=argv), None
        return call_and_wait(self.client, self.scripts.submit, keys, argv, self.config.replica_wait_ms)

    def _check_layout(self) -> None:
        self._adopt(layout.resolve(self.client, self.keys, where=self._where()))

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
            if not self._layout_checked:
                self._check_layout()
            if t is None:
                ids, total = status_core.thread_ids(self.client.smembers(self.keys.user_threads(u)), limit)
            else:
                ids, total = [t], 1
            keys, argv = status_core.status_call(self.keys, u, ids)
            reply = self.scripts.status(keys=keys, args=argv)
        except UNAVAILABLE as e:
            raise self._status_unavailable(e) from e
        return self._statuses(u, ids, total, reply, whole_user=t is None)

    def flush(self) -> int:
        """Send spooled submits, oldest first; returns how many were sent. Raises the Redis
        error if it is still unreachable (what was not sent stays spooled)."""
        with self._spool_lock:
            return self._flush_locked()

    def _flush_locked(self) -> int:
        sent = 0
        while self._spool:
            self._send(self._spool[0])
            self._spool.popleft()
            sent += 1
        return sent

    def warm(self, connections: int = WARM_CONNECTIONS) -> int:
        """Open ``connections`` pooled connections (to each primary, on a cluster), load the
        submit script and check the shard layout now, at start-up: otherwise concurrent first
        submits each pay a connect (and one a script load) at the same moment. Returns the
        connections opened (per primary). Redis down raises ``ProducerUnavailable``."""
        n = core.check_warm(connections)
        try:
            client = self.client
            pools = (
                [client.get_redis_connection(node).connection_pool for node in client.get_primaries()]  # type: ignore[union-attr]
                if is_cluster(client)
                else [client.connection_pool]  # type: ignore[union-attr]
            )
            for pool in pools:
                opened: list[Any] = []
                try:
                    for _ in range(n):
                        opened.append(pool.get_connection())
                finally:
                    for conn in opened:
                        pool.release(conn)
            client.script_load(self.scripts.submit.script)  # on one of those connections (every primary)
            self._check_layout()
        except UNAVAILABLE as e:
            raise ProducerUnavailable(f"Redis unreachable at {self._where()}: {type(e).__name__}") from e
        return n

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncProducer(ProducerBase):
    """asyncio producer for async chat servers (FastAPI, aiohttp)."""

    def __init__(self, config: ProducerConfig | None = None, *, client: AsyncClient | None = None) -> None:
        super().__init__(config, client)
        self.client: Any = client or open_async(
            self.config.redis_url, cluster=self.cluster, retry=AsyncRetry(NoBackoff(), 0), **client_kwargs(self.config)
        )
        self.scripts = SubmitScripts(self.client)
        self._spool_lock = asyncio.Lock()
        self._pipeline = (
            SubmitPipeline(self.client, self.scripts.submit, wait_ms=self.config.replica_wait_ms)
            if self.config.pipeline
            else None
        )

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
        request, call = self._prepare(user_id, thread_id, messages, after_seconds, max_wait, profile)
        try:
            if self._spool:  # spooled turns go first, so a thread's turns keep their order
                async with self._spool_lock:
                    await self._flush_locked()
                    reply, replicas = await self._send(call)
            else:
                reply, replicas = await self._send(call)
        except UNAVAILABLE_OR_CLOSED as e:
            return self._unavailable(request, e, call)
        return self._receipt(reply, replicas)

    async def _send(self, call: Call) -> tuple[Any, int | None]:
        if not self._layout_checked:
            await self._check_layout()
        reply, replicas = await self._run(call)
        if core.is_closed(reply):
            await self._check_layout()
            reply, replicas = await self._run(call)
            if core.is_closed(reply):
                raise self._closed()
        return reply, replicas

    async def _run(self, call: Call) -> tuple[Any, int | None]:
        user_id, thread_id, argv = call
        keys = core.submit_keys(self.keys, user_id, thread_id)
        if self._pipeline is not None:  # batched with the submits made while one is in flight
            return await self._pipeline.run(keys, argv, self.config.timeout_s, lambda: self._alone(keys, argv))
        return await self._alone(keys, argv)

    async def _alone(self, keys: list[str], argv: list[str | int]) -> tuple[Any, int | None]:
        if not self.config.replica_wait_ms:
            return await self.scripts.submit(keys=keys, args=argv), None
        return await call_and_wait_async(self.client, self.scripts.submit, keys, argv, self.config.replica_wait_ms)

    async def _check_layout(self) -> None:
        self._adopt(await layout.resolve_async(self.client, self.keys, where=self._where()))

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
            if not self._layout_checked:
                await self._check_layout()
            if t is None:
                ids, total = status_core.thread_ids(await self.client.smembers(self.keys.user_threads(u)), limit)
            else:
                ids, total = [t], 1
            keys, argv = status_core.status_call(self.keys, u, ids)
            reply = await self.scripts.status(keys=keys, args=argv)
        except UNAVAILABLE as e:
            raise self._status_unavailable(e) from e
        return self._statuses(u, ids, total, reply, whole_user=t is None)

    async def flush(self) -> int:
        """Async form of ``Producer.flush``."""
        async with self._spool_lock:
            return await self._flush_locked()

    async def _flush_locked(self) -> int:
        sent = 0
        while self._spool:
            await self._send(self._spool[0])
            self._spool.popleft()
            sent += 1
        return sent

    async def warm(self, connections: int = WARM_CONNECTIONS) -> int:
        """Async form of ``Producer.warm``: call it once in the app's start-up (lifespan) hook."""
        n = core.check_warm(connections)
        try:
            if is_cluster(self.client):
                await self.client.initialize()
                opened = await _open_cluster(self.client, n)
            else:
                opened = await _open_pool(self.client.connection_pool, n)
            await self.client.script_load(self.scripts.submit.script)  # on one of those connections
            await self._check_layout()
        except UNAVAILABLE as e:
            raise ProducerUnavailable(f"Redis unreachable at {self._where()}: {type(e).__name__}") from e
        return opened

    async def aclose(self) -> None:
        await self.client.aclose()

    async def __aenter__(self) -> AsyncProducer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def _open_pool(pool: Any, n: int) -> int:
    results = await asyncio.gather(*(pool.get_connection() for _ in range(n)), return_exceptions=True)
    opened = [c for c in results if not isinstance(c, BaseException)]
    for conn in opened:
        await pool.release(conn)
    failed = next((e for e in results if isinstance(e, BaseException)), None)
    if failed is not None:
        raise failed
    return len(opened)


async def _open_cluster(client: Any, n: int) -> int:
    """``n`` connections to every primary (the async cluster keeps a free list per node)."""
    for node in client.get_primaries():
        conns = [node.acquire_connection() for _ in range(n)]
        try:
            await asyncio.gather(*(c.connect() for c in conns))
        finally:
            for conn in conns:
                node.release(conn)
    return n
