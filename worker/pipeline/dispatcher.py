"""The dispatcher: moves due threads from Redis to Celery.

Due times live in a Redis sorted set, never in Celery ETAs: ETA tasks sit in worker RAM, are
redelivered after the visibility timeout, and ``revoke()`` is per-worker memory. Each pass
claims due threads atomically (CLAIM script), so any number of dispatchers can run; a claimed
thread sits in the in-flight set until its reflection ends, and is made due again if its
deadline passes (a dispatcher or worker died), so a crash loses nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

from producer.connect import REDIS_ERRORS
from worker.observability.metrics import observe_dispatch_lag
from worker.pipeline.coordinator import Claimed, Coordinator
from worker.pipeline.histograms import DISPATCH_LAG, observations

log = structlog.get_logger("reverie.dispatcher")
SEND_FAILURE_DELAY_MS = 1000
REAP_EVERY_S = 1.0


class Dispatcher:
    def __init__(
        self,
        coordinator: Coordinator,
        send: Callable[[Claimed], None],
        *,
        batch: int = 256,
        interval_s: float = 0.1,
        inflight_timeout_s: float = 600.0,
        max_inflight: int | None = None,
        on_claim: Callable[[Claimed], None] | None = None,
    ) -> None:
        self.coordinator = coordinator
        self.send = send
        self.batch = batch
        self.interval_s = interval_s
        self.inflight_ms = int(inflight_timeout_s * 1000)
        self.max_inflight = max_inflight
        self.on_claim = on_claim
        self._last_reap = 0.0

    def run_once(self, now: float = 0.0) -> tuple[int, int]:
        """One pass: requeue lost claims (at most once a second), claim due threads, send them.
        Returns (dispatched, ms until the next due thread or -1)."""
        if now - self._last_reap >= REAP_EVERY_S:
            self._last_reap = now
            lost = self.coordinator.requeue_expired()
            if lost:
                log.warning("requeued lost reflections", count=lost)
        limit = self.batch
        if self.max_inflight is not None:
            # Backpressure: a claim's in-flight deadline runs while its task waits in the broker,
            # so flooding Celery with a backlog larger than the workers can start before the
            # deadline gets the waiting claims requeued and sent again (seen in the soak: 12k
            # requeues for 4k commits). Due threads wait in Redis instead; the cap is soft
            # (dispatchers race by up to a batch).
            limit = min(limit, self.max_inflight - self.coordinator.inflight_count())
            if limit <= 0:
                return 0, -1
        members, next_ms = self.coordinator.due_candidates(limit)
        sent = 0
        claims = self.coordinator.claim(members, self.inflight_ms)
        if claims:  # the fleet-wide lag histogram (Redis) of `reverie stats` and metrics
            self.coordinator.incr_stats(**observations(DISPATCH_LAG, (c.lag_ms / 1000 for c in claims)))
        for claim in claims:
            observe_dispatch_lag(claim.lag_ms)
            if self.on_claim:
                self.on_claim(claim)
            try:
                self.send(claim)
                sent += 1
            except Exception as e:  # broker down: put it back instead of waiting for the reaper
                log.warning("send failed", user_id=claim.user_id, thread_id=claim.thread_id, error=type(e).__name__)
                self.coordinator.reschedule(
                    claim.user_id,
                    claim.thread_id,
                    token=None,
                    generation=claim.generation,
                    delay_ms=SEND_FAILURE_DELAY_MS,
                )
        return sent, next_ms

    def run(self, stop: threading.Event) -> None:
        """Loop until ``stop`` is set. Sleeps until the next due time, at most ``interval_s``."""

        backoff = self.interval_s
        while not stop.is_set():
            try:
                sent, next_ms = self.run_once(time.monotonic())
                backoff = self.interval_s
            except REDIS_ERRORS as e:
                log.warning("dispatcher cannot reach redis", error=type(e).__name__)
                stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if sent >= self.batch:
                continue
            wait = self.interval_s if next_ms < 0 else min(self.interval_s, max(next_ms, 1) / 1000)
            stop.wait(wait)


class DispatcherThread:
    """A dispatcher running in a daemon thread (inside a worker, the demo, or tests)."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.stop_event = threading.Event()
        self.thread = threading.Thread(
            target=dispatcher.run, args=(self.stop_event,), name="reverie-dispatcher", daemon=True
        )

    def start(self) -> DispatcherThread:
        self.thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        self.thread.join(timeout)

    def __enter__(self) -> DispatcherThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
