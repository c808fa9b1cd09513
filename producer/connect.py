"""Opening Redis: one server (``redis.Redis``) or Redis Cluster (``redis.cluster.RedisCluster``),
sync or asyncio, chosen by a setting (``cluster``), never guessed from the URL. A cluster URL
names any one node (``redis://host:port``); the client discovers the others.

Also what "Redis is unavailable" means for a caller that degrades instead of failing (the
producer's ``on_unavailable`` policy): connection errors and timeouts, and on a cluster the
moments of a failover (``CLUSTERDOWN``, ``TRYAGAIN``, a slot no live primary serves)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster
from redis.connection import HiredisRespSerializer
from redis.exceptions import (
    ClusterDownError,
    RedisClusterException,
    RedisError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.utils import HIREDIS_AVAILABLE

SyncClient = redis.Redis | RedisCluster
AsyncClient = aioredis.Redis | AsyncRedisCluster

UNAVAILABLE: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    ClusterDownError,
    TryAgainError,
    SlotNotCoveredError,
    RedisClusterException,  # "Redis Cluster cannot be connected": no startup node answered
)
"""Errors that mean "Redis did not answer in time", for the producer's ``on_unavailable`` policy."""
REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisError, RedisClusterException)
"""Every error a Redis or Redis Cluster client raises (``RedisClusterException`` is not a
``RedisError``): what a loop that must survive a failover catches."""


def open_sync(url: str, *, cluster: bool = False, **kwargs: Any) -> SyncClient:
    """A sync client: ``RedisCluster`` (which connects at once to learn the slots) or ``Redis``
    (which connects on first use)."""
    if cluster:
        return RedisCluster.from_url(url, **kwargs)
    return redis.Redis.from_url(url, **kwargs)


def open_async(url: str, *, cluster: bool = False, **kwargs: Any) -> AsyncClient:
    """An asyncio client; both kinds connect on first use. A plain one packs commands in C
    (``hiredis_packing``)."""
    if cluster:
        return AsyncRedisCluster.from_url(url, **kwargs)
    client = aioredis.Redis.from_url(url, **kwargs)
    pool = client.connection_pool
    pool.connection_class = hiredis_packing(pool.connection_class)  # before any connection exists
    return client


_PACKED: dict[type, type] = {}


def hiredis_packing(connection_class: type) -> type:
    """``connection_class`` (TCP, TLS or unix socket) packing commands with hiredis, in C, as
    redis-py's sync client already does; its asyncio client packs in Python: about a quarter of
    the event loop's CPU per batched submit (a SUBMIT call has 19 arguments), measured with
    cProfile on bench figure 2. Without hiredis the class is returned as is."""
    if not HIREDIS_AVAILABLE:
        return connection_class
    if connection_class not in _PACKED:
        packer = HiredisRespSerializer()

        def pack_command(self: Any, *args: Any) -> list[bytes]:
            return packer.pack(*args)  # type: ignore[no-any-return]

        _PACKED[connection_class] = type(connection_class.__name__, (connection_class,), {"pack_command": pack_command})
    return _PACKED[connection_class]


def is_cluster(client: object) -> bool:
    return isinstance(client, RedisCluster | AsyncRedisCluster)


def where(client: Any) -> str:
    """``host:port`` (or the socket path) of the Redis a client talks to; for a cluster, the node
    it was given. Never credentials."""
    if is_cluster(client):
        nodes = getattr(client.nodes_manager, "startup_nodes", {}) or {}
        first = next(iter(nodes), "?")
        return f"cluster via {first}"
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return str(kwargs["path"])
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"


def url_where(url: str) -> str:
    """``host:port`` of a URL, for messages (no credentials)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname or '?'}:{parts.port or 6379}"
