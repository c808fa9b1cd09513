"""The Celery app: tasks are defined once, so building any number of apps is silent."""

from __future__ import annotations

import warnings

from pydantic import SecretStr

from schemas.settings import Settings
from worker.app import create_app
from worker.tasks import CONSOLIDATE, DELIVER_WEBHOOK, OPTIMIZE_PROMPT, REFLECT, reflect


def test_building_many_apps_registers_each_task_once_and_warns_nothing(redis_url: str) -> None:
    """Tests, the bench and the demo each build apps; none may print DuplicateTaskNameWarning,
    and every app runs the one ``reflect`` function defined in ``worker.tasks``."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning, DuplicateTaskNameWarning included, fails
        apps = [create_app(Settings(redis_url=SecretStr(redis_url), key_prefix=f"apps{i}")) for i in range(4)]
        for app in apps:
            app.finalize()
    for app in apps:
        assert {CONSOLIDATE, OPTIMIZE_PROMPT, REFLECT, DELIVER_WEBHOOK} <= set(app.tasks)
        assert app.tasks[REFLECT]._decorated_fun is reflect
        assert app.tasks[REFLECT].app is app
        app.close()


def test_the_webhook_relay_runs_where_a_dispatcher_does(redis_url: str) -> None:
    """A worker gets the relay bootstep when webhooks are configured and it runs a dispatcher."""
    from worker.app import DispatcherStep, WebhookRelayStep

    hook = {"name": "crm", "url": "https://crm.example.com/h", "secret": "whsec_" + "a2V5" * 11}
    base = {"redis_url": SecretStr(redis_url), "key_prefix": "relaystep"}
    for overrides, steps in (
        ({"webhooks": [hook]}, {DispatcherStep, WebhookRelayStep}),
        ({"webhooks": [hook], "dispatcher_in_worker": False}, set()),
        ({}, {DispatcherStep}),
    ):
        app = create_app(Settings(**base, **overrides))
        assert set(app.steps["worker"]) & {DispatcherStep, WebhookRelayStep} == steps
        app.close()


def test_task_events_are_on_by_default_for_flower_and_follow_the_setting(monkeypatch, redis_url: str) -> None:
    """Flower needs task events, so they are on unless REVERIE_TASK_EVENTS turns them off (both
    the worker's and the dispatcher's task-sent event); a value that is not a boolean is refused
    with the field's name."""
    import pytest
    from pydantic import ValidationError

    on = create_app(Settings(redis_url=SecretStr(redis_url)))
    assert on.conf.worker_send_task_events is True and on.conf.task_send_sent_event is True
    monkeypatch.setenv("REVERIE_TASK_EVENTS", "false")
    off = create_app(Settings(redis_url=SecretStr(redis_url)))
    assert off.conf.worker_send_task_events is False and off.conf.task_send_sent_event is False
    monkeypatch.setenv("REVERIE_TASK_EVENTS", "sometimes")
    with pytest.raises(ValidationError, match="task_events"):
        Settings()
    on.close()
    off.close()
