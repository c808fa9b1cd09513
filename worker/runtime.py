"""Process-wide dependencies of a worker, built once from ``Settings`` (lazily, so the Celery
app imports fast and each forked process opens its own connections).

Tests and the demo may ``install`` a runtime they built, e.g. to share one local-mode Qdrant
client (local mode allows one process at a time)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache

import redis

from producer.memories.embeddings import Embedder, LiteLLMEmbedder, make_embedder
from producer.memories.live import concrete
from schemas.profiles import DEFAULT as DEFAULT_PROFILE
from schemas.profiles import Profile, load_profiles, register
from schemas.settings import Settings
from worker.memory.extraction import Extractor, LLMExtractor, OfflineExtractor
from worker.memory.history import HistoryLog
from worker.memory.llm import LLMClient, load_litellm, warm_call_path
from worker.memory.store import MemoryStore, open_store
from worker.pipeline.coordinator import Coordinator
from worker.pipeline.keys import WorkerKeys
from worker.pipeline.reflection import Reflector

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


@dataclass
class Runtime:
    settings: Settings
    redis: redis.Redis
    coordinator: Coordinator
    store: MemoryStore
    embedder: Embedder
    reflector: Reflector
    history: HistoryLog

    def close(self) -> None:
        self.store.close()
        self.redis.close()


def redis_url(settings: Settings) -> str:
    return settings.resolved_redis_url() or DEFAULT_REDIS_URL


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


def warm_up(settings: Settings, embedder: Embedder) -> None:
    """Load what the first reflection would otherwise pay for: litellm (about 6 s of CPU) when a
    model or a litellm embedder is configured, the first call's lazy imports (about 0.6 s) when
    a model is, and an in-wheel sentence model (about 1 s)."""
    if settings.model or isinstance(embedder, LiteLLMEmbedder):
        load_litellm()
    if settings.model:
        warm_call_path(settings.model)
    load = getattr(embedder, "load", None)
    if load is not None:
        load()


def build_coordinator(settings: Settings) -> Coordinator:
    """The Redis side alone: what a standalone dispatcher needs, without opening Qdrant (a
    local-mode folder belongs to the one worker that writes it)."""
    client = redis.Redis.from_url(redis_url(settings), socket_timeout=10, socket_connect_timeout=5)
    return Coordinator(
        client,
        WorkerKeys(settings.key_prefix),
        history_ttl_s=settings.history_retention_s,
        history_max=settings.history_max_entries,
        events_max_len=settings.events_max_len,
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
    reflector = Reflector(
        settings=settings,
        coordinator=coordinator,
        store=store,
        embedder=embedder,
        extractor_for=make_extractor_factory(settings, embedder),
    )
    history = HistoryLog(
        client,
        coordinator.keys,
        retention_s=settings.history_retention_s,
        max_entries=settings.history_max_entries,
        events_max_len=settings.events_max_len,
    )
    return Runtime(settings, client, coordinator, store, embedder, reflector, history)


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
