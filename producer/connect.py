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
from redis.exceptions import (
    ClusterDownError,
    RedisClusterException,
    RedisError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

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
    """An asyncio client; both kinds connect on first use."""
    if cluster:
        return AsyncRedisCluster.from_url(url, **kwargs)
    return aioredis.Redis.from_url(url, **kwargs)


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
