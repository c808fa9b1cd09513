"""Fixtures and helpers for webhook tests (imported by the tests that use them). Webhooks on
real parts: the scripted LLM makes reflections commit (and so write change
events), the session's in-process Celery worker runs ``reverie.deliver_webhook``, a relay thread
of the test's own sends the tasks, and a receiver on 127.0.0.1 verifies every signature.

Backoff, timeouts and redelivery are small, so failures, retries and redeliveries take seconds."""

from __future__ import annotations

import base64
import contextlib
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.llm_scripts import insert_each_user_turn
from tests.support.webhook_receiver import WebhookReceiver

FAST = {
    "webhook_backoff_s": 0.05,
    "webhook_backoff_max_s": 0.2,
    "webhook_timeout_s": 1.0,
    "webhook_redeliver_s": 2.5,
    "webhook_max_attempts": 4,
}


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def endpoint(name: str, url: str, secret: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "url": url, "secret": secret, **extra}


@pytest.fixture
def secret() -> str:
    return new_secret()


@pytest.fixture
def receiver(secret: str) -> Iterator[WebhookReceiver]:
    with WebhookReceiver(secret) as r:
        yield r
    assert r.bad_signatures == [], "every request must verify"


def pending_total(system: Any) -> int:
    from worker.features.webhooks.keys import group

    r, keys = system.redis, system.runtime.coordinator.keys
    total = 0
    for stream in keys.event_streams():
        if not r.exists(stream):
            continue
        for info in r.xinfo_groups(stream):
            if info["name"].decode().startswith(group("")):
                total += int(info["pending"])
    return total


@contextlib.contextmanager
def webhooks_factory(make_system: Any, scripted: Any, celery_app: Any) -> Iterator[Callable[..., Any]]:
    """``make(endpoints, **settings)``: a system of ``make_system`` (a plain Redis or the test
    cluster) whose reflections insert each user turn, with ``endpoints`` configured and a relay
    running on the session worker's app. Teardown waits until nothing is pending, so no delivery
    of this test runs in the next one."""
    from worker.app import webhook_sender
    from worker.features.webhooks.relay import Relay, RelayThread

    started: list[tuple[Any, RelayThread]] = []

    def make(endpoints: list[dict[str, Any]], *, relay: bool = True, **overrides: Any) -> Any:
        scripted.set_responder(insert_each_user_turn)
        llm = {"model": scripted.model, "llm_api_base": scripted.base_url, "llm_api_key": "sk-test"}
        system = make_system(webhooks=endpoints, **(llm | FAST | overrides))
        coord, s = system.runtime.coordinator, system.settings
        system.relay = Relay(
            coord.r, coord.keys, s.webhooks, webhook_sender(celery_app), redeliver_s=s.webhook_redeliver_s, block_ms=200
        )
        thread = RelayThread(system.relay)
        if relay:
            thread.start()
        started.append((system, thread))
        return system

    yield make
    for system, thread in started:
        deadline = time.monotonic() + 15
        while pending_total(system) and time.monotonic() < deadline:
            time.sleep(0.05)
        if thread.threads[0].ident is not None:
            thread.stop()


@pytest.fixture
def make_webhooks(make_system: Any, scripted: Any, celery_app: Any) -> Iterator[Callable[..., Any]]:
    """``webhooks_factory`` on the suite's plain Redis."""
    with webhooks_factory(make_system, scripted, celery_app) as make:
        yield make
