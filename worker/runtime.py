"""Process-wide dependencies of a worker, built once from ``Settings`` (lazily, so the Celery
app imports fast and each forked process opens its own connections).

Tests and the demo may ``install`` a runtime they built, e.g. to share one local-mode Qdrant
client (local mode allows one process at a time)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

import redis

from producer import layout
from producer.connect import open_sync, url_where
from producer.connect import where as connect_where
from producer.memories.embeddings import Embedder, LiteLLMEmbedder, make_embedder
from producer.memories.live import concrete
from schemas.profiles import DEFAULT as DEFAULT_PROFILE
from schemas.profiles import Profile, load_profiles, register
from schemas.settings import Settings
from worker.errors import ConfigError
from worker.memory.changes import ChangeLog
from worker.memory.extraction import Extractor, LLMExtractor, OfflineExtractor
from worker.memory.history import HistoryLog
from worker.memory.llm import LLMClient, load_litellm, warm_call_path
from worker.memory.store import MemoryStore, open_store
from worker.observability.logs import get_logger
from worker.pipeline.coordinator import Coordinator
from worker.pipeline.keys import WorkerKeys
from worker.pipeline.reflection import Reflector

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

log = get_logger("reverie.runtime")


@dataclass
class Runtime:
    settings: Settings
    redis: Any
    """The coordination state's client: ``redis.Redis``, or ``RedisCluster``."""
    coordinator: Coordinator
    store: MemoryStore
    embedder: Embedder
    reflector: Reflector
    history: HistoryLog
    changes: ChangeLog
    """Journaled memory writes of agent tools and consolidation (``worker.memory.changes``)."""
    celery_redis: Any = None
    """Celery's Redis (results, RedBeat) when it is another server than ``redis``; None: the same."""

    def close(self) -> None:
        self.store.close()
        self.redis.close()
        if self.celery_redis is not None:
            self.celery_redis.close()


def redis_url(settings: Settings) -> str:
    return settings.resolved_redis_url() or DEFAULT_REDIS_URL


def celery_redis_url(settings: Settings) -> str:
    """The plain Redis of Celery's result backend and RedBeat: ``celery_redis_url``, else
    ``redis_url`` (on one Redis). Kombu's Redis transport, Celery's Redis backend and RedBeat do
    not support Redis Cluster, so with ``redis_cluster`` it must be set, to another server."""
    coordination = redis_url(settings)
    if settings.celery_redis_url is not None:
        url = settings.celery_redis_url.get_secret_value()
        if settings.redis_cluster and url == coordination:
            raise ConfigError(
                "REVERIE_CELERY_REDIS_URL is the cluster's own URL: Celery needs a plain Redis, not a cluster node"
            )
        return url
    if settings.redis_cluster:
        raise ConfigError(
            "REVERIE_REDIS_CLUSTER is on but REVERIE_CELERY_REDIS_URL is unset: Celery's result backend and "
            "RedBeat (and its broker, unless REVERIE_BROKER_URL) need a plain Redis; set REVERIE_CELERY_REDIS_URL"
        )
    return coordination


def celery_urls(settings: Settings) -> tuple[str, str]:
    """Celery's (broker, result backend): the broker is ``broker_url``, else the Celery Redis."""
    backend = celery_redis_url(settings)
    if settings.broker_url is None:
        return backend, backend
    broker = settings.broker_url.get_secret_value()
    if settings.redis_cluster and broker == redis_url(settings):
        raise ConfigError("REVERIE_BROKER_URL is the cluster's own URL: Kombu's Redis transport needs a plain Redis")
    return broker, backend


def open_redis(settings: Settings, **kwargs: Any) -> Any:
    """A client of the coordination state's Redis (a ``RedisCluster`` with ``redis_cluster``)."""
    return open_sync(redis_url(settings), cluster=settings.redis_cluster, **kwargs)


def worker_keys(settings: Settings) -> WorkerKeys:
    return WorkerKeys(settings.key_prefix, settings.shards, tagged=settings.redis_cluster or None)


def check_layout(client: Any, keys: WorkerKeys, *, write: bool = True) -> None:
    """Refuse to run on state laid out for another shard count (``LayoutMismatch``); record ours
    on a fresh deployment (if ``write``)."""
    where = connect_where(client)
    recorded = layout.resolve(client, keys, where=where, write=write)
    if recorded != keys.layout:
        raise layout.refuse(keys, recorded, where)


def make_extractor_factory(settings: Settings, embedder: Embedder) -> Callable[[Profile], Extractor]:
    """The extractor of a profile. The offline one compares with embeddings and thresholds of one
    model: it is built per model of the current (pinned) view, so it follows a re-embed."""

    def extractor_for(profile: Profile) -> Extractor:
        return _extractor(profile, concrete(embedder))

    @lru_cache(maxsize=64)
    def _extractor(profile: Profile, embedder: Embedder) -> Extractor:
        model = profile.model or settings.model
        if not model:
            return OfflineExtractor(
                embedder,
                episodic=profile.episodic,
                inserts=profile.enable_inserts,
                updates=profile.enable_updates,
                deletes=profile.enable_deletes,
            )
        return LLMExtractor(
            profile,
            LLMClient.from_settings(settings, model),
            validation_retries=settings.validation_retries,
            protocol=settings.llm_protocol,
        )

    return extractor_for


def one_blas_thread() -> None:
    """Keep numpy's BLAS (OpenBLAS) to one thread in this process. A worker runs many
    reflections on threads of its own and each embeds a few short texts: BLAS threads cannot
    speed those up, and on a busy box they spin and contend (measured here: 2 texts cost 3.3 ms
    of CPU with one BLAS thread, 11–56 ms with OpenBLAS's default of one per core)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def warm_up(settings: Settings, embedder: Embedder) -> None:
    """Load what the first reflection would otherwise pay for: litellm (about 6 s of CPU) when a
    model or a litellm embedder is configured, the first call's lazy imports (about 0.6 s) when
    a model is, and an in-wheel sentence model (about 1 s)."""
    one_blas_thread()
    if settings.model or isinstance(embedder, LiteLLMEmbedder):
        load_litellm()
    if settings.model:
        warm_call_path(settings.model)
    load = getattr(embedder, "load", None)
    if load is not None:
        load()


def build_coordinator(settings: Settings) -> Coordinator:
    """The Redis side alone: what a standalone dispatcher needs, without opening Qdrant (a
    local-mode folder belongs to the one worker that writes it). Checks the shard layout."""
    client = open_redis(settings, socket_timeout=10, socket_connect_timeout=5)
    keys = worker_keys(settings)
    try:
        check_layout(client, keys)
    except BaseException:
        client.close()
        raise
    return Coordinator(
        client,
        keys,
        history_ttl_s=settings.history_retention_s,
        history_max=settings.history_max_entries,
        events_max_len=settings.events_max_len,
        replica_wait_ms=settings.replica_wait_ms,
    )


def build_runtime(settings: Settings, *, store: MemoryStore | None = None) -> Runtime:
    # The built-in profile follows REVERIE_ENABLE_DELETES; a "default" in REVERIE_PROFILES wins.
    register(replace(DEFAULT_PROFILE, enable_deletes=settings.enable_deletes))
    load_profiles(settings.profiles)  # fail fast on a bad REVERIE_PROFILES, before any work
    coordinator = build_coordinator(settings)
    client = coordinator.r
    # Warm the configured model (the live one unless a re-embed switched it): no Qdrant call
    # here, processes may start before Qdrant does.
    configured = make_embedder(settings) if store is None else store.configured_embedder
    warm_up(settings, configured)
    store = store or open_store(settings, embedder=configured)
    embedder = store.embedder  # follows the live collection (``producer.memories.live``)
    history = HistoryLog(
        client,
        coordinator.keys,
        retention_s=settings.history_retention_s,
        max_entries=settings.history_max_entries,
        events_max_len=settings.events_max_len,
    )
    changes = ChangeLog(client, coordinator.keys, store, history, abandoned_after_ms=int(settings.lease_s * 1000))
    reflector = Reflector(
        settings=settings,
        coordinator=coordinator,
        store=store,
        embedder=embedder,
        extractor_for=make_extractor_factory(settings, embedder),
        changes=changes,
    )
    celery = None
    if settings.celery_redis_url is not None and celery_redis_url(settings) != redis_url(settings):
        celery = redis.Redis.from_url(celery_redis_url(settings), socket_timeout=10, socket_connect_timeout=5)
    return Runtime(settings, client, coordinator, store, embedder, reflector, history, changes, celery)


_lock = threading.Lock()
_runtime: Runtime | None = None


def install(runtime: Runtime | None) -> None:
    global _runtime
    with _lock:
        _runtime = runtime


def get_runtime(settings: Settings | None = None) -> Runtime:
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = build_runtime(settings or Settings())
        return _runtime


def get_runtime_when_up(settings: Settings, *, max_wait_s: float | None = None) -> Runtime:
    """``get_runtime``, waiting while Redis cannot be reached: a worker started during a Redis
    outage (its runtime checks the shard layout at start) waits for Redis, as Celery waits for
    its broker, instead of exiting. One warning per failed try, with the host:port only."""
    from tenacity import Retrying, retry_if_exception_type, stop_after_delay, stop_never, wait_exponential

    def warn(state: Any) -> None:
        err = state.outcome.exception() if state.outcome else None
        where = url_where(redis_url(settings))
        log.warning("redis unreachable at start, waiting", error=type(err).__name__, where=where)

    for attempt in Retrying(
        retry=retry_if_exception_type((redis.ConnectionError, redis.TimeoutError)),
        wait=wait_exponential(multiplier=0.2, max=5.0),
        stop=stop_never if max_wait_s is None else stop_after_delay(max_wait_s),
        before_sleep=warn,
        reraise=True,
    ):
        with attempt:
            return get_runtime(settings)
    raise AssertionError("unreachable")  # pragma: no cover  (Retrying returns or raises)
