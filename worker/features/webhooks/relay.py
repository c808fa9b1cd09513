"""The relay: change events in, one ``reverie.deliver_webhook`` task (ids only) per endpoint and
matching event out.

Each endpoint has a consumer group ``webhook:<endpoint>`` on every events stream
(``WorkerKeys.event_streams()``: one today, one per shard once the state is sharded), created at
the stream's end when a relay first sees the endpoint. Any number of relays run (one beside each
dispatcher): a group hands each entry to one of them. A relay reads new entries (``XREADGROUP``),
sends a task for those the endpoint subscribes to and acknowledges the rest at once. A sent entry
stays pending until its delivery acknowledges or dead-letters it; the delivery claims it afresh
while it works and waits, so an entry idle for longer than ``webhook_redeliver_s`` was lost with
a worker (or a broker message): a relay claims it (``XAUTOCLAIM``) and sends it again. An entry
trimmed from the stream while still pending is dead-lettered (``trimmed``), never dropped.

One thread per stream; an idle relay waits in ``XREAD BLOCK`` for the next entry, so delivery
starts within a round trip of the commit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from redis.exceptions import RedisError, ResponseError

from producer.text import as_text
from schemas.errors import DecodeError
from schemas.events import ChangeEvent
from schemas.webhooks import DeliverArgs, WebhookEndpoint
from worker.features.webhooks.dlq import dead_letter, make_letter
from worker.features.webhooks.keys import consumer_name, group
from worker.memory.events import last_id
from worker.observability.logs import get_logger
from worker.pipeline.keys import WorkerKeys

log = get_logger("reverie.webhooks")
Send = Callable[[DeliverArgs], None]
"""Sends one ``reverie.deliver_webhook`` task (``worker.app.webhook_sender``)."""
TIDY_EVERY_S = 60.0
"""How often a relay removes consumers of dead relays (nothing pending, idle a minute)."""


class Relay:
    def __init__(
        self,
        client: Any,
        keys: WorkerKeys,
        endpoints: Iterable[WebhookEndpoint],
        send: Send,
        *,
        redeliver_s: float,
        batch: int = 100,
        block_ms: int = 1000,
        consumer: str | None = None,
    ) -> None:
        self.r = client
        self.keys = keys
        self.endpoints = tuple(endpoints)
        self.send = send
        self.redeliver_ms = max(int(redeliver_s * 1000), 1)
        self.reclaim_every_s = min(1.0, redeliver_s / 2)
        self.batch = batch
        self.block_ms = block_ms
        self.consumer = consumer or consumer_name()
        self.streams = keys.event_streams()

    def ensure_groups(self, start: str = "$") -> None:
        """A group per endpoint on every stream (idempotent). A new endpoint starts at the
        stream's end; a group found missing later (the stream was deleted) at its start."""
        for stream in self.streams:
            for endpoint in self.endpoints:
                try:
                    self.r.xgroup_create(stream, group(endpoint.name), id=start, mkstream=True)
                except ResponseError as e:
                    if "BUSYGROUP" not in str(e):
                        raise

    # -- new entries ------------------------------------------------------------------------

    def read(self, stream: str) -> int:
        """One pass over the endpoints' groups: route what is new. Returns entries read."""
        total = 0
        for endpoint in self.endpoints:
            reply = self.r.xreadgroup(group(endpoint.name), self.consumer, {stream: ">"}, count=self.batch)
            entries = reply[0][1] if reply else []
            total += len(entries)
            self._route(stream, endpoint, entries)
        return total

    def _route(self, stream: str, endpoint: WebhookEndpoint, entries: list[Any]) -> None:
        skipped = []
        for raw_id, fields in entries:
            args = DeliverArgs(endpoint=endpoint.name, stream=stream, stream_id=as_text(raw_id))
            try:
                event = ChangeEvent.from_stream(args.stream_id, {as_text(k): as_text(v) for k, v in fields.items()})
            except DecodeError:
                dead_letter(self.r, self.keys, make_letter(args, 0, status=None, error="undecodable"))
                log.warning(
                    "webhook event undecodable, dead-lettered", endpoint=endpoint.name, stream_id=args.stream_id
                )
                continue
            if endpoint.wants(event.op):
                self._send(args)
            else:
                skipped.append(args.stream_id)
        if skipped:
            self.r.xack(stream, group(endpoint.name), *skipped)

    def _send(self, args: DeliverArgs) -> bool:
        try:
            self.send(args)
            return True
        except Exception as e:  # broker down: the entry stays pending and is sent again later
            log.warning(
                "webhook task not sent", endpoint=args.endpoint, stream_id=args.stream_id, error=type(e).__name__
            )
            return False

    # -- lost deliveries ------------------------------------------------------------------------

    def reclaim(self, stream: str, max_pages: int = 10) -> int:
        """Send again what has been pending longer than ``webhook_redeliver_s``; dead-letter what
        was trimmed meanwhile. Returns how many were sent again."""
        sent = 0
        for endpoint in self.endpoints:
            cursor = "0-0"
            for _ in range(max_pages):
                # not JUSTID: redis-py would then drop the cursor and the deleted ids from the reply
                reply = self.r.xautoclaim(
                    stream, group(endpoint.name), self.consumer, self.redeliver_ms, start_id=cursor, count=self.batch
                )
                cursor, claimed = as_text(reply[0]), [as_text(entry[0]) for entry in reply[1] if entry[0] is not None]
                for stream_id in claimed:
                    sent += self._send(DeliverArgs(endpoint=endpoint.name, stream=stream, stream_id=stream_id))
                for stream_id in (as_text(i) for i in (reply[2] if len(reply) > 2 else [])):
                    args = DeliverArgs(endpoint=endpoint.name, stream=stream, stream_id=stream_id)
                    dead_letter(self.r, self.keys, make_letter(args, 0, status=None, error="trimmed"))
                    log.warning(
                        "pending webhook event trimmed, dead-lettered", endpoint=endpoint.name, stream_id=stream_id
                    )
                if cursor == "0-0":
                    break
        if sent:
            log.warning("webhook deliveries sent again (a worker died, or the queue is slow)", count=sent)
        return sent

    def tidy(self, stream: str) -> int:
        """Remove consumers of relays that are gone: nothing pending, idle over a minute (a live
        relay reads every second; a removed one that comes back is recreated by its next read)."""
        removed = 0
        for endpoint in self.endpoints:
            for info in self.r.xinfo_consumers(stream, group(endpoint.name)):
                name = as_text(info["name"])
                if name != self.consumer and int(info["pending"]) == 0 and int(info["idle"]) > TIDY_EVERY_S * 1000:
                    self.r.xgroup_delconsumer(stream, group(endpoint.name), name)  # replies its pending: 0
                    removed += 1
        return removed

    # -- the loop -------------------------------------------------------------------------------

    def run(self, stream: str, stop: threading.Event) -> None:
        """Relay ``stream`` until ``stop`` is set."""
        ready, start, backoff = False, "$", 0.1
        last_reclaim = last_tidy = 0.0
        while not stop.is_set():
            try:
                if not ready:
                    self.ensure_groups(start)
                    ready, start = True, "0"
                tip = last_id(self.r, stream)
                read = self.read(stream)
                now = time.monotonic()
                if now - last_reclaim >= self.reclaim_every_s:
                    last_reclaim = now
                    self.reclaim(stream)
                if now - last_tidy >= TIDY_EVERY_S:
                    last_tidy = now
                    self.tidy(stream)
                if not read:  # wakes at once for anything added after ``tip``
                    self.r.xread({stream: tip}, count=1, block=self.block_ms)
                backoff = 0.1
            except ResponseError as e:
                if "NOGROUP" in str(e):  # the stream was deleted (and its groups): make them again
                    log.warning("webhook consumer group missing, created again from the stream's start")
                else:
                    log.warning("webhook relay error", error=type(e).__name__)
                    stop.wait(backoff)
                ready = False
            except RedisError as e:
                log.warning("webhook relay cannot reach redis", error=type(e).__name__)
                stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception:  # a bug must not end the thread silently: say so, keep relaying
                log.exception("webhook relay failed unexpectedly")
                stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)


class RelayThread:
    """A relay running in daemon threads, one per events stream (inside a worker, the standalone
    dispatcher, or tests). ``start`` creates the consumer groups before it returns."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.stop_event = threading.Event()
        self.threads = [
            threading.Thread(target=relay.run, args=(s, self.stop_event), name=f"reverie-webhooks-{i}", daemon=True)
            for i, s in enumerate(relay.streams)
        ]

    def start(self) -> RelayThread:
        try:
            self.relay.ensure_groups()
        except RedisError as e:  # the threads keep trying
            log.warning("webhook relay cannot reach redis", error=type(e).__name__)
        for thread in self.threads:
            thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout)

    def __enter__(self) -> RelayThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
