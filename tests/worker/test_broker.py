"""The broker configuration (no broker needed): Redis stays exactly as it was; an ``amqp://`` URL
gives durable quorum queues, publisher confirms, persistent messages and names under the key
prefix; a bad ``broker_url`` is refused naming the field, never echoing its password."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError
from typer.testing import CliRunner

from schemas.settings import Settings
from worker.app import create_app
from worker.broker import declared_names
from worker.ops.cli import cli
from worker.tasks import REFLECT

PASSWORD = "hunter2-Secret"
RABBIT = f"amqp://reverie:{PASSWORD}@rabbit.internal:5672/reverie"


def _app(redis_url: str, **values: object):  # type: ignore[no-untyped-def]
    return create_app(Settings(redis_url=SecretStr(redis_url), key_prefix="acme", **values))  # type: ignore[arg-type]


def test_without_broker_url_celery_runs_on_redis_as_before(redis_url: str) -> None:
    """The single-box default: Redis broker, queue ``reverie`` with its keys under the prefix."""
    app = _app(redis_url)
    try:
        assert app.conf.broker_url == redis_url
        assert app.conf.broker_transport_options == {"global_keyprefix": "acme:celery:", "visibility_timeout": 3600}
        assert app.conf.task_default_queue == "reverie" and app.reverie_broker.queue == "reverie"
        assert app.conf.task_routes == {REFLECT: {"queue": "reverie"}}
        assert app.conf.event_exchange == "celeryev" and app.conf.control_exchange == "celery"
        assert not app.conf.task_queues
    finally:
        app.close()


def test_an_amqp_broker_url_gives_quorum_queues_confirms_and_prefixed_names(redis_url: str) -> None:
    app = _app(redis_url, broker_url=SecretStr(RABBIT))
    try:
        conf = app.conf
        assert conf.broker_url == RABBIT and conf.result_backend == redis_url, "results stay on Redis"
        assert not conf.broker_transport_options.get("confirm_publish"), "confirms are the dispatcher's only"
        assert conf.task_send_sent_event is False, "no unbounded confirm wait for a task-sent event"
        [queue] = conf.task_queues
        assert queue.name == "acme.tasks" == conf.task_default_queue == app.reverie_broker.queue
        assert conf.task_routes == {REFLECT: {"queue": "acme.tasks"}}
        assert queue.queue_arguments == {"x-queue-type": "quorum"}
        assert queue.durable and not queue.auto_delete and not queue.exclusive
        assert queue.exchange.name == "acme.tasks" and queue.exchange.durable and queue.routing_key == "acme.tasks"
        assert queue.exchange.type == "topic", "native delayed delivery works on topic exchanges only"
        assert conf.task_default_delivery_mode == "persistent"
        assert conf.task_acks_late and conf.task_reject_on_worker_lost and conf.worker_prefetch_multiplier == 1
        assert conf.worker_detect_quorum_queues, "per-consumer prefetch: quorum queues have no global QoS"
        assert (conf.event_exchange, conf.control_exchange) == ("acme.celeryev", "acme.control")
        assert app.reverie_broker.publish == {"confirm_timeout": 5.0}
        from celery.utils.quorum_queues import detect_quorum_queues

        assert detect_quorum_queues(app, "amqp") == (True, "acme.tasks")
    finally:
        app.close()


def test_two_prefixes_on_one_vhost_share_no_name() -> None:
    a, b = (declared_names(Settings(key_prefix=p)) for p in ("alpha", "beta"))
    assert not set(a["queues"]) & set(b["queues"]) and not set(a["exchanges"]) & set(b["exchanges"])
    assert all(n.startswith("alpha.") or n.startswith("reply.alpha.") for n in a["queues"] + a["exchanges"])


@pytest.mark.parametrize("scheme", ["amqp", "amqps", "pyamqp", "AMQP"])
def test_each_rabbitmq_scheme_selects_rabbitmq(redis_url: str, scheme: str) -> None:
    app = _app(redis_url, broker_url=SecretStr(f"{scheme}://guest:guest@127.0.0.1:5672//"))
    try:
        assert app.reverie_broker.kind == "rabbitmq" and app.reverie_broker.queue == "acme.tasks"
    finally:
        app.close()


def test_a_redis_broker_url_apart_from_redis_url_keeps_the_redis_layout(redis_url: str) -> None:
    app = _app(redis_url, broker_url=SecretStr("redis://127.0.0.1:6379/5"))
    try:
        assert app.reverie_broker.kind == "redis" and app.conf.task_default_queue == "reverie"
        assert app.conf.broker_transport_options["global_keyprefix"] == "acme:celery:"
    finally:
        app.close()


BAD_BROKER_URLS = [
    ("unknown scheme", f"kafka://reverie:{PASSWORD}@broker:9092", "unknown scheme 'kafka'"),
    ("typo in the scheme", f"aqmp://reverie:{PASSWORD}@rabbit:5672//", "unknown scheme 'aqmp'"),
    ("no scheme", f"reverie:{PASSWORD}@rabbit:5672", "not a URL"),
    ("password before a scheme-like part", f"user:{PASSWORD}@host://x", "not a URL"),
    ("non-numeric port", f"amqp://reverie:{PASSWORD}@rabbit:56x2//", "invalid port"),
    ("port out of range", f"amqp://reverie:{PASSWORD}@rabbit:99999//", "invalid port"),
    ("unencoded / in the password", "amqp://reverie:hunter2/Secret@rabbit:5672//", "percent-encode"),
    ("whitespace", f"amqp://reverie:{PASSWORD}@rab bit:5672//", "whitespace"),
    ("mixed failover list", f"amqp://reverie:{PASSWORD}@a//;redis://b:6379/0", "mixes RabbitMQ and Redis"),
    ("empty", "", "not a URL"),
]


@pytest.mark.parametrize(("url", "reason"), [r[1:] for r in BAD_BROKER_URLS], ids=[r[0] for r in BAD_BROKER_URLS])
def test_a_bad_broker_url_is_refused_naming_the_field_not_the_password(
    monkeypatch: pytest.MonkeyPatch, url: str, reason: str
) -> None:
    monkeypatch.setenv("REVERIE_BROKER_URL", url)
    with pytest.raises(ValidationError) as info:
        Settings()
    text = str(info.value)
    assert "broker_url" in text and reason in text
    assert "hunter2" not in text and "Secret" not in text, text


def test_the_cli_says_it_in_one_line_with_exit_2(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``reverie worker`` with a mistyped broker: one line naming REVERIE_BROKER_URL, no password,
    no worker started."""
    result = CliRunner().invoke(
        cli,
        ["worker"],
        env={"REVERIE_BROKER_URL": f"amqp//reverie:{PASSWORD}@rabbit:5672//", "REVERIE_QDRANT_PATH": str(tmp_path)},
        catch_exceptions=False,
    )
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: configuration: REVERIE_BROKER_URL:"), result.stderr
    assert "not a URL" in lines[0] and PASSWORD not in result.output + result.stderr


def test_other_settings_errors_do_not_echo_the_broker_password(monkeypatch: pytest.MonkeyPatch) -> None:
    """A valid broker URL next to an invalid setting: the error (which shows refused input by
    default in pydantic) carries neither."""
    monkeypatch.setenv("REVERIE_BROKER_URL", RABBIT)
    monkeypatch.setenv("REVERIE_AFTER_SECONDS", "60")
    monkeypatch.setenv("REVERIE_MAX_WAIT_S", "10")
    with pytest.raises(ValidationError) as info:
        Settings()
    assert "max_wait_s" in str(info.value) and PASSWORD not in str(info.value)
