"""RabbitMQ for the broker tests: ``RABBITMQ_URL``, else guest/guest on 127.0.0.1:5672.

Unreachable RabbitMQ: the tests **fail** when the run asked for it (``RABBITMQ_URL`` set, as
``.ci/run`` does, or ``CI`` set), because a skipped broker suite in CI would let the RabbitMQ
path rot unseen; on a developer machine without RabbitMQ they skip, saying why.

Every test runs on its own key prefix, so its queue and exchanges (``<prefix>.tasks``,
``<prefix>.celeryev``, ``<prefix>.control.pidbox``…) are its own; they are deleted at teardown
and their absence is checked. A worker on quorum queues also declares Celery's native delayed
delivery objects (``celery_delayed_*``): one set per vhost, shared by every Celery app on it and
re-declared identically by each worker start. They are left in place on purpose: deleting them
under a concurrent run would break its workers."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import amqp
import pytest
from pydantic import SecretStr

from schemas.settings import Settings
from worker.broker import declared_names

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672//"


def _required() -> bool:
    return bool(os.environ.get("RABBITMQ_URL") or os.environ.get("CI"))


def _connect(url: str) -> amqp.Connection:
    from kombu import Connection

    info = Connection(url)  # parses host, port, user, password and vhost as Celery will
    conn = amqp.Connection(
        f"{info.hostname or '127.0.0.1'}:{info.port or 5672}",
        userid=info.userid or "guest",
        password=info.password or "guest",
        virtual_host=info.virtual_host or "/",
        connect_timeout=3,
    )
    conn.connect()
    return conn


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    url = os.environ.get("RABBITMQ_URL") or DEFAULT_URL
    error = None
    try:
        _connect(url).close()
    except Exception as e:
        error = type(e).__name__
    if error is None:
        return url
    where = "RABBITMQ_URL" if os.environ.get("RABBITMQ_URL") else "127.0.0.1:5672 (guest/guest)"
    message = f"RabbitMQ is not reachable at {where}: {error}"
    if _required():
        pytest.fail(f"{message}; this run requires it (RABBITMQ_URL or CI is set)", pytrace=False)
    pytest.skip(f"{message}; set RABBITMQ_URL to require the broker tests")


class Admin:
    """Declare, inspect and delete on the broker directly (py-amqp), as an operator would."""

    def __init__(self, url: str) -> None:
        self.conn = _connect(url)

    def _channel(self) -> Any:
        return self.conn.channel()

    def queue_depth(self, name: str) -> int:
        """Ready messages (not the unacked ones a worker holds)."""
        ch = self._channel()
        try:
            return int(ch.queue_declare(name, passive=True).message_count)
        finally:
            ch.close()

    def consumers(self, name: str) -> int:
        ch = self._channel()
        try:
            return int(ch.queue_declare(name, passive=True).consumer_count)
        except amqp.NotFound:
            return 0
        finally:
            if ch.is_open:
                ch.close()

    def queue_exists(self, name: str) -> bool:
        return self._exists(lambda ch: ch.queue_declare(name, passive=True))

    def exchange_exists(self, name: str) -> bool:
        return self._exists(lambda ch: ch.exchange_declare(name, "topic", passive=True))

    def _exists(self, probe: Any) -> bool:
        ch = self._channel()
        try:
            probe(ch)
        except amqp.NotFound:
            return False  # the broker closed the channel
        ch.close()
        return True

    def get(self, name: str) -> Any:
        """Take one message off the queue (acknowledged), or None."""
        ch = self._channel()
        try:
            return ch.basic_get(name, no_ack=True)
        finally:
            ch.close()

    def declare_classic(self, name: str) -> None:
        ch = self._channel()
        ch.queue_declare(name, durable=True, auto_delete=False)
        ch.close()

    def redeclare_refused(self, name: str, arguments: dict[str, Any]) -> str | None:
        """The broker's refusal text when ``name`` is declared with other arguments, else None."""
        ch = self._channel()
        try:
            ch.queue_declare(name, durable=True, auto_delete=False, arguments=arguments)
        except amqp.PreconditionFailed as e:
            return str(e)
        ch.close()
        return None

    def delete(self, names: dict[str, list[str]]) -> None:
        for queue in names["queues"]:
            self._delete(lambda ch, q=queue: ch.queue_delete(q))
        for exchange in names["exchanges"]:
            self._delete(lambda ch, x=exchange: ch.exchange_delete(x))

    def _delete(self, op: Any) -> None:
        ch = self._channel()
        with contextlib.suppress(amqp.NotFound):
            op(ch)
            ch.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()


@pytest.fixture
def rabbit(rabbitmq_url: str, prefix: str) -> Iterator[Admin]:
    """A broker admin for this test; at teardown everything declared under the test's prefix is
    deleted, and checked gone."""
    admin = Admin(rabbitmq_url)
    names = declared_names(Settings(key_prefix=prefix))
    yield admin
    admin.delete(names)
    left = [q for q in names["queues"] if admin.queue_exists(q)]
    left += [x for x in names["exchanges"] if admin.exchange_exists(x)]
    admin.close()
    assert left == [], f"left on the broker: {left}"


@pytest.fixture
def rabbit_env(worker_env: dict[str, str], rabbitmq_url: str) -> dict[str, str]:
    """``worker_env`` (tests/conftest.py) with RabbitMQ as the broker."""
    return worker_env | {"REVERIE_BROKER_URL": rabbitmq_url}


@pytest.fixture
def rabbit_settings(redis_url: str, prefix: str, rabbitmq_url: str) -> Settings:
    return Settings(redis_url=SecretStr(redis_url), broker_url=SecretStr(rabbitmq_url), key_prefix=prefix)


class StallingProxy:
    """A loopback TCP proxy to RabbitMQ that can stop passing the broker's bytes back: what a
    broker that takes a publish and never confirms it (stalled, partitioned, memory alarm) looks
    like to the client. Client bytes still reach the broker."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.stalled = threading.Event()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, name="stalling-proxy", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_broker: bool) -> None:
        with contextlib.suppress(OSError):
            while not self._closed.is_set():
                data = src.recv(65536)
                if not data:
                    return
                while from_broker and self.stalled.is_set() and not self._closed.is_set():
                    time.sleep(0.01)  # hold the broker's bytes (acks included) back
                dst.sendall(data)

    def close(self) -> None:
        self._closed.set()
        self._server.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()


@pytest.fixture
def stalling_proxy(rabbitmq_url: str) -> Iterator[StallingProxy]:
    from kombu import Connection

    proxy = StallingProxy(Connection(rabbitmq_url).port or 5672)
    yield proxy
    proxy.close()
