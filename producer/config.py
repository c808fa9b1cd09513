"""Producer configuration: a plain pydantic model, so ``import producer`` needs no settings
library. ``ProducerConfig.from_env()`` reads the same ``REVERIE_*`` variables as the worker."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from producer.keys import MAX_SHARDS

if TYPE_CHECKING:
    from schemas.settings import Settings


class ProducerConfig(BaseModel):
    """What a chat server needs to hand turns to Reverie."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "reverie"
    timeout_s: float = Field(default=0.25, gt=0, le=30)
    after_seconds: float = Field(default=30.0, ge=0, le=86400)
    max_wait_s: float = Field(default=600.0, gt=0, le=7 * 86400)
    on_unavailable: Literal["drop", "raise", "spool"] = "drop"
    """Redis unreachable: ``drop`` (log, status "dropped"), ``raise`` (``ProducerUnavailable``) or
    ``spool`` (keep the submit in a bounded in-memory spool, status "spooled", and send it before
    the next submit or on ``flush()`` once Redis answers; lost if this process exits first)."""
    spool_max: int = Field(default=10_000, ge=1, le=1_000_000)
    """Submits the spool holds; when full, further submits are dropped (status "dropped")."""
    log_interval_s: float = Field(default=10.0, ge=0, le=3600)
    """In an outage, at most one warning per this many seconds (with a count), not one per submit."""
    profiles: frozenset[str] | None = None
    """Allowed profile names; ``None`` accepts any well-formed name (the worker checks)."""
    cluster: bool = False
    """``redis_url`` names a node of a Redis Cluster (``RedisCluster`` clients, hash-tagged keys)."""
    shards: int = Field(default=1, ge=1, le=MAX_SHARDS)
    """Shards of the coordination state on a fresh deployment; one already recorded in Redis wins."""
    replica_wait_ms: int = Field(default=0, ge=0, le=10_000)
    """After each submit, ``WAIT 1 <ms>`` for one replica (pipelined: still one round trip);
    0 does not wait. ``SubmitReceipt.replicas`` says how many acknowledged."""

    pipeline: bool = True
    """``AsyncProducer`` only: submits made while the event loop runs one step go to Redis in one
    pipeline (one round trip), each with its own receipt, error and policy (``producer.pipelined``).
    ``False`` sends each submit alone."""

    @model_validator(mode="after")
    def _debounce(self) -> ProducerConfig:
        if self.after_seconds > self.max_wait_s:  # as Settings: the cap would always win
            raise ValueError("max_wait_s must be at least after_seconds")
        if self.replica_wait_ms and self.replica_wait_ms >= self.timeout_s * 1000:
            raise ValueError(
                f"replica_wait_ms ({self.replica_wait_ms}) must be below the socket timeout "
                f"({self.timeout_s * 1000:g} ms), else the socket times out before WAIT answers"
            )
        return self

    @classmethod
    def from_env(cls) -> ProducerConfig:
        """Build from ``REVERIE_*``/``REDIS_URL`` (imports pydantic-settings lazily)."""
        from schemas.settings import Settings

        s = Settings()
        profiles = None
        if s.profiles:  # the same REVERIE_PROFILES as the workers: unknown names fail at submit
            from schemas.profiles import load_profiles, profile_names

            load_profiles(s.profiles)
            profiles = profile_names()
        return cls.from_settings(s, profiles=profiles)

    @classmethod
    def from_settings(cls, s: Settings, **overrides: Any) -> ProducerConfig:
        """The producer that the workers' ``Settings`` describe (one mapping of the shared
        fields, for every builder); ``overrides`` replace any field."""
        url = overrides.pop("redis_url", None) or s.resolved_redis_url()
        if url is None:
            raise ValueError("REVERIE_REDIS_URL (or REDIS_URL) must be set for a producer")
        fields: dict[str, Any] = {
            "redis_url": url,
            "key_prefix": s.key_prefix,
            "timeout_s": s.redis_timeout_s,
            "after_seconds": s.after_seconds,
            "max_wait_s": s.max_wait_s,
            "on_unavailable": s.on_unavailable,
            "cluster": s.redis_cluster,
            "shards": s.shards,
            "replica_wait_ms": s.replica_wait_ms,
        }
        return cls(**(fields | overrides))
