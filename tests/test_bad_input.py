"""Bad input, one table per entry point: every row is refused with an error naming the field,
and nothing is written (no key under the test's prefix)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pydantic import ValidationError

from producer import AsyncProducer, InvalidSubmission, Producer, ProducerConfig
from schemas.messages import MAX_CONTENT_BYTES, MAX_MESSAGES_PER_SUBMIT
from schemas.settings import Settings
from tests.conftest import keys_under
from tests.support.cli import run_reverie

OK_MSG = {"role": "user", "content": "hello", "id": "m1"}
BIG = "x" * (MAX_CONTENT_BYTES + 1)
CHUNK = "y" * (MAX_CONTENT_BYTES - 10)

# (row id, submit keyword arguments that differ from a valid call, field the error must name)
SUBMIT_ROWS: list[tuple[str, dict[str, Any], str]] = [
    ("empty user", {"user_id": ""}, "user_id"),
    ("whitespace user", {"user_id": "   "}, "user_id"),
    ("huge user", {"user_id": "u" * 257}, "user_id"),
    ("control-char user", {"user_id": "al\x00ice"}, "user_id"),
    ("newline user", {"user_id": "alice\n"}, "user_id"),
    ("colon user", {"user_id": "alice:bob"}, "user_id"),
    ("brace user", {"user_id": "{alice}"}, "user_id"),
    ("glob user", {"user_id": "al*"}, "user_id"),
    ("non-string user", {"user_id": 42}, "user_id"),
    ("lone surrogate user", {"user_id": "al\ud800ice"}, "user_id"),
    ("empty thread", {"thread_id": ""}, "thread_id"),
    ("whitespace thread", {"thread_id": " \t"}, "thread_id"),
    ("huge thread", {"thread_id": "t" * 300}, "thread_id"),
    ("control-char thread", {"thread_id": "t\x1b[31m"}, "thread_id"),
    ("colon thread", {"thread_id": "t:1"}, "thread_id"),
    ("brace thread", {"thread_id": "t{1}"}, "thread_id"),
    ("glob thread", {"thread_id": "*"}, "thread_id"),
    ("unknown role", {"messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
    ("missing role", {"messages": [{"content": "hi"}]}, "messages.0.role"),
    ("int content", {"messages": [{"role": "user", "content": 123}]}, "messages.0.content"),
    ("None content", {"messages": [{"role": "user", "content": None}]}, "messages.0.content"),
    ("list content", {"messages": [{"role": "user", "content": ["a"]}]}, "messages.0.content"),
    ("empty content", {"messages": [{"role": "user", "content": ""}]}, "messages.0.content"),
    ("whitespace content", {"messages": [OK_MSG, {"role": "user", "content": " \n\t"}]}, "messages.1.content"),
    ("content over the limit", {"messages": [OK_MSG, {"role": "user", "content": BIG}]}, "messages.1.content"),
    ("invalid UTF-8 bytes", {"messages": [{"role": "user", "content": b"caf\xc3("}]}, "messages.0.content"),
    ("lone surrogate content", {"messages": [{"role": "user", "content": "a\udc80b"}]}, "messages.0.content"),
    ("bad message id", {"messages": [{"role": "user", "content": "hi", "id": "m:1"}]}, "messages.0.id"),
    ("unknown message field", {"messages": [{"role": "user", "content": "hi", "secret": 1}]}, "messages.0.secret"),
    ("no messages", {"messages": []}, "messages"),
    ("too many messages", {"messages": [OK_MSG] * (MAX_MESSAGES_PER_SUBMIT + 1)}, "messages"),
    ("batch over the byte limit", {"messages": [{"role": "user", "content": CHUNK}] * 17}, "messages"),
    ("messages not a list", {"messages": 7}, "messages"),
    ("negative after_seconds", {"after_seconds": -1}, "after_seconds"),
    ("NaN after_seconds", {"after_seconds": math.nan}, "after_seconds"),
    ("infinite after_seconds", {"after_seconds": math.inf}, "after_seconds"),
    ("string after_seconds", {"after_seconds": "5"}, "after_seconds"),
    ("bool after_seconds", {"after_seconds": True}, "after_seconds"),
    ("negative max_wait", {"max_wait": -0.5}, "max_wait"),
    ("infinite max_wait", {"max_wait": -math.inf}, "max_wait"),
    ("zero max_wait", {"max_wait": 0}, "max_wait"),
    ("after_seconds over max_wait", {"after_seconds": 10, "max_wait": 5}, "max_wait"),
    ("after_seconds over the default max_wait", {"after_seconds": 700}, "max_wait (producer default"),
    ("max_wait under the default after_seconds", {"max_wait": 5}, "after_seconds (producer default"),
    ("unknown profile", {"profile": "no-such-profile"}, "profile"),
    ("malformed profile", {"profile": "a b"}, "profile"),
]


def _call(overrides: dict[str, Any]) -> dict[str, Any]:
    return {"user_id": "alice", "thread_id": "t1", "messages": [OK_MSG]} | overrides


@pytest.mark.parametrize(("overrides", "field"), [r[1:] for r in SUBMIT_ROWS], ids=[r[0] for r in SUBMIT_ROWS])
def test_submit_refuses_bad_input(redis_url, redis_client, prefix, overrides, field) -> None:
    """Sync producer: InvalidSubmission naming the field, without echoing text; nothing written."""
    config = ProducerConfig(redis_url=redis_url, key_prefix=prefix, profiles=frozenset({"default"}))
    with Producer(config) as producer, pytest.raises(InvalidSubmission) as info:
        call = _call(overrides)
        producer.submit(call.pop("user_id"), call.pop("thread_id"), call.pop("messages"), **call)
    assert any(p.startswith(field) or f"{field}:" in p or field in p for p in info.value.problems), info.value
    assert "hello" not in str(info.value) and BIG[:100] not in str(info.value), "errors never echo text"
    assert keys_under(redis_client, prefix) == []


async def test_async_submit_refuses_bad_input_too(redis_url, redis_client, prefix) -> None:
    """The asyncio producer shares the validation: same errors, nothing written."""
    async with AsyncProducer(ProducerConfig(redis_url=redis_url, key_prefix=prefix)) as producer:
        for _, overrides, field in SUBMIT_ROWS[::5]:
            call = _call(overrides)
            with pytest.raises(InvalidSubmission, match=field.split(".")[0]):
                await producer.submit(call.pop("user_id"), call.pop("thread_id"), call.pop("messages"), **call)
    assert keys_under(redis_client, prefix) == []


async def test_async_submit_refuses_after_seconds_over_max_wait(redis_url, redis_client, prefix) -> None:
    """The pair Settings refuses is refused at submit too, naming both fields, in both forms."""
    async with AsyncProducer(ProducerConfig(redis_url=redis_url, key_prefix=prefix)) as producer:
        with pytest.raises(InvalidSubmission) as info:
            await producer.submit("alice", "t1", [OK_MSG], after_seconds=10, max_wait=5)
    assert info.value.problems == ["after_seconds: after_seconds = 10 s exceeds max_wait = 5 s"]
    assert keys_under(redis_client, prefix) == []


def test_after_seconds_equal_to_max_wait_is_accepted(redis_url, redis_client, prefix) -> None:
    """The boundary is allowed (as in Settings): due exactly at the cap."""
    with Producer(ProducerConfig(redis_url=redis_url, key_prefix=prefix, after_seconds=5, max_wait_s=5)) as producer:
        assert producer.submit("alice", "t1", [OK_MSG], max_wait=5).status == "accepted"
        assert producer.submit("alice", "t1", [OK_MSG | {"id": "m2"}], after_seconds=5).status == "accepted"


def test_producer_config_refuses_a_default_after_seconds_over_max_wait() -> None:
    """The producer's own defaults are held to the same rule, when it is built."""
    with pytest.raises(ValidationError, match="max_wait_s must be at least after_seconds"):
        ProducerConfig(after_seconds=60, max_wait_s=10)


TASK_ROWS: list[tuple[str, dict[str, Any], tuple[Any, ...], str]] = [
    ("bad user id", {"user_id": "a:b", "thread_id": "t", "generation": 1}, (), "user_id"),
    ("empty thread id", {"user_id": "a", "thread_id": "", "generation": 1}, (), "thread_id"),
    ("missing generation", {"user_id": "a", "thread_id": "t"}, (), "generation"),
    ("zero generation", {"user_id": "a", "thread_id": "t", "generation": 0}, (), "generation"),
    ("string generation", {"user_id": "a", "thread_id": "t", "generation": "one"}, (), "generation"),
    ("text smuggled in", {"user_id": "a", "thread_id": "t", "generation": 1, "content": "hi"}, (), "content"),
    ("too many positionals", {}, ("a", "t", 1, "extra"), "positional"),
]


@pytest.mark.parametrize(("kwargs", "args", "field"), [r[1:] for r in TASK_ROWS], ids=[r[0] for r in TASK_ROWS])
def test_malformed_task_arguments_fail_naming_the_field(celery_app, redis_client, kwargs, args, field) -> None:
    """A reflect task sent by hand (``celery call``) with bad arguments fails, names the field,
    and touches no Reverie key."""
    from worker.tasks import REFLECT

    prefix = celery_app.reverie_settings.key_prefix
    result = celery_app.send_task(REFLECT, args=list(args), kwargs=kwargs, queue="reverie")
    result.get(timeout=30, propagate=False)
    assert result.state == "FAILURE"
    assert type(result.result).__name__ == "InvalidTaskArguments"
    assert field in str(result.result)
    assert [k for k in keys_under(redis_client, prefix) if ":celery:" not in k] == []


WEBHOOK_SECRET = "whsec_" + "a2V5" * 11  # 33 bytes of base64
# (row id, positional args, keyword args; "<stream>" is the test's events stream, field named)
WEBHOOK_TASK_ROWS: list[tuple[str, tuple[Any, ...], dict[str, Any], str]] = [
    ("positionals", ("hook", "<stream>", "1-0"), {}, "positional"),
    ("missing stream_id", (), {"endpoint": "hook", "stream": "<stream>"}, "stream_id"),
    ("bad stream id", (), {"endpoint": "hook", "stream": "<stream>", "stream_id": "yesterday"}, "stream_id"),
    ("unknown endpoint", (), {"endpoint": "nobody", "stream": "<stream>", "stream_id": "1-0"}, "endpoint"),
    ("unknown stream", (), {"endpoint": "hook", "stream": "elsewhere:events", "stream_id": "1-0"}, "stream"),
    (
        "content smuggled in",
        (),
        {"endpoint": "hook", "stream": "<stream>", "stream_id": "1-0", "content": "x"},
        "content",
    ),
]


@pytest.mark.parametrize(
    ("args", "kwargs", "field"), [r[1:] for r in WEBHOOK_TASK_ROWS], ids=[r[0] for r in WEBHOOK_TASK_ROWS]
)
def test_malformed_webhook_task_arguments_fail_naming_the_field(
    make_system, celery_app, redis_client, prefix, args, kwargs, field
) -> None:
    """A ``reverie.deliver_webhook`` sent by hand with bad arguments fails (stored although
    deliveries store no result), names the field, and writes nothing: no dead letter, no ack."""
    from worker.tasks import DELIVER_WEBHOOK

    system = make_system(webhooks=[{"name": "hook", "url": "http://127.0.0.1:9/", "secret": WEBHOOK_SECRET}])
    stream = system.runtime.coordinator.keys.events
    before = keys_under(redis_client, prefix)
    fill = {"<stream>": stream}
    result = celery_app.send_task(
        DELIVER_WEBHOOK,
        args=[fill.get(a, a) for a in args],
        kwargs={k: fill.get(v, v) for k, v in kwargs.items()},
        queue="reverie",
    )
    result.get(timeout=30, propagate=False)
    assert result.state == "FAILURE"
    assert type(result.result).__name__ in ("InvalidTaskArguments", "UnknownEndpoint", "UnknownStream")
    assert field in str(result.result)
    assert keys_under(redis_client, prefix) == before


SETTINGS_ROWS: list[tuple[str, dict[str, Any], str]] = [
    ("zero lease", {"lease_s": 0}, "lease_s"),
    ("negative after_seconds", {"after_seconds": -1}, "after_seconds"),
    ("max_wait below after_seconds", {"after_seconds": 60, "max_wait_s": 10}, "max_wait_s"),
    ("zero concurrency", {"worker_concurrency": 0}, "worker_concurrency"),
    ("huge batch", {"dispatch_batch": 10**6}, "dispatch_batch"),
    ("negative join_siblings", {"join_siblings": -1}, "join_siblings"),
    ("join_siblings not a number", {"join_siblings": "all"}, "join_siblings"),
    ("too many retries", {"llm_max_retries": 99}, "llm_max_retries"),
    ("colon in prefix", {"key_prefix": "a:b"}, "key_prefix"),
    ("trailing newline in prefix", {"key_prefix": "reverie\n"}, "key_prefix"),
    ("unknown overlap policy", {"overlap_policy": "yolo"}, "overlap_policy"),
    ("bad hash embedding", {"embedding_model": "hash-3"}, "embedding_model"),
    ("zero redis timeout", {"redis_timeout_s": 0}, "redis_timeout_s"),
    ("unknown broker scheme", {"broker_url": "kafka://broker:9092"}, "broker_url"),
    ("malformed broker port", {"broker_url": "amqp://guest:pw@rabbit:56x2//"}, "broker_url"),
    ("zero confirm timeout", {"broker_confirm_timeout_s": 0}, "broker_confirm_timeout_s"),
    ("zero shards", {"shards": 0}, "shards"),
    ("too many shards", {"shards": 1025}, "shards"),
    ("shards not a number", {"shards": "many"}, "shards"),
    ("negative replica wait", {"replica_wait_ms": -1}, "replica_wait_ms"),
    ("huge replica wait", {"replica_wait_ms": 10_001}, "replica_wait_ms"),
    ("replica wait past the socket timeout", {"replica_wait_ms": 250}, "replica_wait_ms"),
]


@pytest.mark.parametrize(("values", "field"), [r[1:] for r in SETTINGS_ROWS], ids=[r[0] for r in SETTINGS_ROWS])
def test_settings_out_of_range_are_refused_at_startup(monkeypatch, values, field) -> None:
    """From the environment, as a process starts: a ValidationError naming the field."""
    for name, value in values.items():
        monkeypatch.setenv(f"REVERIE_{name.upper()}", str(value))
    with pytest.raises(ValidationError, match=field):
        Settings()


def test_cli_exits_non_zero_with_one_line_naming_the_variable() -> None:
    """``reverie stats`` with REVERIE_LEASE_S=0: exit 2, one line on stderr, no traceback."""
    proc = run_reverie("stats", env={"REVERIE_LEASE_S": "0", "COLUMNS": "80"})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "REVERIE_LEASE_S" in lines[0] and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"shards": 0}, "shards"),
        ({"shards": 1025}, "shards"),
        ({"replica_wait_ms": -5}, "replica_wait_ms"),
        ({"replica_wait_ms": 300, "timeout_s": 0.25}, "below the socket timeout"),
    ],
)
def test_producer_config_refuses_bad_sharding_and_wait_values(values: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        ProducerConfig(**values)


CLUSTER = "redis://127.0.0.1:7000/0"
CELERY_ROWS: list[tuple[str, dict[str, str], str]] = [
    ("cluster without a Celery Redis", {}, "REVERIE_CELERY_REDIS_URL is unset"),
    ("Celery Redis is the cluster", {"REVERIE_CELERY_REDIS_URL": CLUSTER}, "REVERIE_CELERY_REDIS_URL is the cluster"),
    (
        "broker is the cluster",
        {"REVERIE_CELERY_REDIS_URL": "redis://127.0.0.1:6390/0", "REVERIE_BROKER_URL": CLUSTER},
        "REVERIE_BROKER_URL is the cluster",
    ),
]


@pytest.mark.parametrize(("env", "message"), [r[1:] for r in CELERY_ROWS], ids=[r[0] for r in CELERY_ROWS])
def test_a_cluster_url_where_celery_needs_a_plain_redis_is_refused(env: dict[str, str], message: str) -> None:
    """Kombu, Celery's Redis backend and RedBeat do not speak Redis Cluster: ``reverie worker``
    stops before starting anything, one line, exit 2 (no connection is attempted)."""
    from typer.testing import CliRunner

    from worker.ops.cli import cli

    base = {"REVERIE_REDIS_URL": CLUSTER, "REVERIE_REDIS_CLUSTER": "true", "REVERIE_SHARDS": "16"}
    result = CliRunner().invoke(cli, ["worker"], env=base | env, catch_exceptions=False)
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert message in line, line
