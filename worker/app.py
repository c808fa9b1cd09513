"""The Celery app: ``celery -A worker.app worker`` works as-is.

Settings chosen for delayed, I/O-bound LLM work (each explained where set). Configuration is
read once here from ``REVERIE_*`` variables; tests and the demo call ``create_app`` with their
own ``Settings``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from celery import Celery, bootsteps, signals

from schemas.settings import Settings
from worker.broker import Broker, ConfirmedProducer, SendBreaker, broker_for
from worker.observability.logs import configure, is_configured
from worker.pipeline.coordinator import Claimed, Coordinator
from worker.pipeline.dispatcher import Dispatcher, DispatcherThread
from worker.pipeline.keys import WorkerKeys
from worker.runtime import celery_urls, get_runtime, get_runtime_when_up
from worker.tasks import CONSOLIDATE, DELIVER_WEBHOOK, REFLECT, register

if TYPE_CHECKING:
    from schemas.webhooks import DeliverArgs
    from worker.features.webhooks.relay import Relay

_log_level = "INFO"


def create_app(settings: Settings | None = None) -> Celery:
    global _log_level
    settings = settings or Settings()
    _log_level = settings.log_level
    # Celery's side is a plain Redis (or the broker_url's server): Kombu's Redis transport,
    # Celery's Redis backend and RedBeat do not support Redis Cluster (ConfigError if asked to).
    _, url = celery_urls(settings)
    broker = broker_for(settings, url)  # Redis, or RabbitMQ (quorum queues, confirms): worker/broker.py
    prefix = WorkerKeys(settings.key_prefix).celery_prefix()
    app = Celery("reverie", broker=broker.url, backend=url, set_as_current=False)
    app.reverie_settings = settings  # type: ignore[attr-defined]
    app.reverie_broker = broker  # type: ignore[attr-defined]
    app.conf.update(
        # JSON only: task arguments are ids, results are counts; never pickle.
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        # Celery's own keys live under our prefix, so tests and tenants of one Redis stay apart.
        result_backend_transport_options={"global_keyprefix": prefix},
        # Ack after the reflection ends: a worker killed mid-task leaves the message to be
        # redelivered (and the in-flight set requeues the thread anyway). Redelivery is safe:
        # leases, generation checks and the commit journal make the task idempotent.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # One message per free thread: reflections are long (seconds), so prefetching more only
        # strands work on a busy worker while another idles.
        worker_prefetch_multiplier=1,
        # LLM calls are I/O bound: many reflections per process on threads. Use prefork (with
        # a Qdrant server) for CPU isolation; local-mode Qdrant needs one process.
        worker_pool="threads",
        worker_concurrency=settings.worker_concurrency,
        # Flower: task events and STARTED state. Results are small summaries of commits and
        # failures only (no-work outcomes store none), kept REVERIE_RESULT_TTL_S; Redis expires them.
        worker_send_task_events=settings.task_events,
        task_send_sent_event=settings.task_events,
        task_track_started=False,  # STARTED reaches Flower as an event; storing it would leave a key per task
        result_expires=settings.result_ttl_s,
        # Time limits (enforced by prefork/gevent pools; threads rely on the LLM/Qdrant
        # timeouts). Kept under the user lease so a killed task never outlives its fence.
        task_soft_time_limit=max(settings.lease_s - 30, 1),
        task_time_limit=settings.lease_s,
        broker_connection_retry_on_startup=True,
        # Logging is Reverie's (``_logging`` below): one handler, one format. Celery must not
        # add its own, nor turn stdout/stderr into loggers (every JSON line would be logged twice).
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        task_routes={REFLECT: {"queue": broker.queue}},
        # `celery beat` keeps its schedule and lock in Redis (celery-redbeat), not in a local
        # shelve file: any number of beat processes can run, one holds the lock and the rest
        # stand by. Its keys live under ours. Schedule entries are added by their features.
        beat_scheduler="redbeat.RedBeatScheduler",
        redbeat_redis_url=url,
        redbeat_key_prefix=f"{settings.key_prefix}:redbeat:",
        redbeat_lock_timeout=300,
    )
    app.conf.update(broker.conf)  # the broker's own settings, which win (worker/broker.py)
    register(app)
    if settings.consolidate_interval_s > 0:  # run by celery-redbeat: several beat instances are safe
        app.conf.beat_schedule = {
            **(app.conf.beat_schedule or {}),
            "reverie-consolidate": {"task": CONSOLIDATE, "schedule": settings.consolidate_interval_s},
        }
    if settings.dispatcher_in_worker:
        app.steps["worker"].add(DispatcherStep)
        if settings.webhooks:  # the webhook relay runs wherever a dispatcher does
            app.steps["worker"].add(WebhookRelayStep)
    if settings.metrics_port:
        app.steps["worker"].add(MetricsStep)
    if settings.qdrant_url is None and settings.local_reads:
        app.steps["worker"].add(LocalReadsStep)
    return app


class Sender:
    """Sends one claimed thread to Celery: ids only, task id names the generation. On RabbitMQ a
    send returns once the broker confirmed it (``ConfirmedProducer``). Any failure raises, and
    the dispatcher puts the thread back; after one, sends fail fast for a second (``SendBreaker``)."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self.broker: Broker = app.reverie_broker  # type: ignore[attr-defined]
        self.breaker = SendBreaker()
        self.confirmed = ConfirmedProducer(app) if self.broker.kind == "rabbitmq" else None

    def __call__(self, claim: Claimed) -> None:
        self.breaker.check()
        try:
            self.app.send_task(
                REFLECT,
                kwargs={"user_id": claim.user_id, "thread_id": claim.thread_id, "generation": claim.generation},
                # ":" cannot occur in ids, so a task id names its user unambiguously (forget relies on it)
                task_id=f"reflect:{claim.user_id}:{claim.thread_id}:g{claim.generation}:{_suffix()}",
                queue=self.broker.queue,
                producer=self.confirmed.get() if self.confirmed else None,
                **self.broker.publish,
            )
        except Exception:
            self.breaker.trip()
            raise

    def close(self) -> None:
        if self.confirmed is not None:
            self.confirmed.close()


def sender(app: Celery) -> Sender:
    return Sender(app)


def _suffix() -> str:
    return uuid.uuid4().hex[:8]


def make_dispatcher(app: Celery, *, coordinator: Coordinator | None = None, **overrides: Any) -> Dispatcher:
    """A dispatcher on ``app``'s settings; on the process runtime's coordinator unless given one."""
    settings: Settings = app.reverie_settings  # type: ignore[attr-defined]
    kwargs: dict[str, Any] = {
        "batch": settings.dispatch_batch,
        "interval_s": settings.dispatch_interval_s,
        "inflight_timeout_s": settings.inflight_timeout_s,
        "max_inflight": settings.dispatch_max_inflight,
    } | overrides
    return Dispatcher(coordinator or get_runtime(settings).coordinator, sender(app), **kwargs)


class DispatcherStep(bootsteps.StartStopStep):
    """Runs a dispatcher thread inside every worker (safe: claims are atomic)."""

    requires: ClassVar[set[str]] = {"celery.worker.components:Pool"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.thread: DispatcherThread | None = None

    def start(self, parent: Any) -> None:
        runtime = get_runtime_when_up(parent.app.reverie_settings)  # Redis may still be coming up
        self.thread = DispatcherThread(make_dispatcher(parent.app, coordinator=runtime.coordinator)).start()

    def stop(self, parent: Any) -> None:
        if self.thread is not None:
            self.thread.stop()
            send = self.thread.dispatcher.send
            if isinstance(send, Sender):
                send.close()


def webhook_sender(app: Celery) -> Callable[[DeliverArgs], None]:
    """Send one webhook delivery to Celery: ids only (endpoint, stream, entry id)."""

    broker: Broker = app.reverie_broker  # type: ignore[attr-defined]

    def send(args: DeliverArgs) -> None:
        # No publisher confirm here: an entry whose message is lost stays pending in its
        # consumer group and the relay sends it again after webhook_redeliver_s.
        app.send_task(
            DELIVER_WEBHOOK,
            kwargs=args.model_dump(exclude_defaults=True),
            task_id=f"webhook:{args.endpoint}:{args.stream_id}:{_suffix()}",
            queue=broker.queue,
            **broker.publish,
        )

    return send


def make_relay(app: Celery, *, coordinator: Coordinator | None = None, **overrides: Any) -> Relay:
    """The webhook relay on ``app``'s settings; on the process runtime's coordinator unless given one."""
    from worker.features.webhooks.relay import Relay

    settings: Settings = app.reverie_settings  # type: ignore[attr-defined]
    coord = coordinator or get_runtime(settings).coordinator
    kwargs: dict[str, Any] = {"redeliver_s": settings.webhook_redeliver_s} | overrides
    return Relay(coord.r, coord.keys, settings.webhooks, webhook_sender(app), **kwargs)


class WebhookRelayStep(bootsteps.StartStopStep):
    """Runs the webhook relay inside every worker that runs a dispatcher (safe: consumer groups
    hand each event to one relay)."""

    requires: ClassVar[set[str]] = {"celery.worker.components:Pool"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.thread: Any = None

    def start(self, parent: Any) -> None:
        from worker.features.webhooks.relay import RelayThread

        runtime = get_runtime_when_up(parent.app.reverie_settings)
        self.thread = RelayThread(make_relay(parent.app, coordinator=runtime.coordinator)).start()

    def stop(self, parent: Any) -> None:
        if self.thread is not None:
            self.thread.stop()


class MetricsStep(bootsteps.StartStopStep):
    """Serves Prometheus metrics on ``REVERIE_METRICS_PORT``: fleet-wide counters read from
    Redis and this process's histograms (see ``worker.metrics``)."""

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.server: Any = None

    def start(self, parent: Any) -> None:
        from worker.observability.metrics import build_registry, serve
        from worker.pipeline.stats import RedisCollector

        settings: Settings = parent.app.reverie_settings
        coordinator = get_runtime_when_up(settings).coordinator
        self.server = serve(build_registry(RedisCollector(coordinator)), settings.metrics_port)

    def stop(self, parent: Any) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@signals.setup_logging.connect
def _logging(loglevel: Any = None, **_: Any) -> None:
    """A receiver here makes Celery leave logging alone: its own loggers go through Reverie's
    handler (``worker.observability.logs``), once, in one format. An entry point that already
    configured it (the CLI, the demo, ``celery -A worker.app``) keeps its choice."""
    if not is_configured():
        configure(_log_level)


class LocalReadsStep(bootsteps.StartStopStep):
    """In local mode the worker owns the Qdrant folder alone: it serves read-only search, list
    and get on a socket, so ``reverie memories``/``search`` and a dev chat server can read while
    it runs (``producer.memories.local_socket``)."""

    requires: ClassVar[set[str]] = {"celery.worker.components:Pool"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.socket: Any = None

    def start(self, parent: Any) -> None:
        from worker.memory.store.read_socket import ReadSocket

        settings: Settings = parent.app.reverie_settings
        store = get_runtime_when_up(settings).store
        self.socket = ReadSocket(lambda: store, settings.qdrant_path)

    def stop(self, parent: Any) -> None:
        if self.socket is not None:
            self.socket.close()


def __getattr__(name: str) -> Any:
    # ``celery -A worker.app`` looks up ``app``/``celery``; build it on first access so that
    # importing this module (e.g. from tests) does not read the environment.
    if name in ("app", "celery"):
        global app
        settings = Settings()
        configure(settings.log_level)
        app = create_app(settings)
        return app
    raise AttributeError(name)
