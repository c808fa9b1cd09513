"""Webhook endpoint settings: every class of bad value is refused naming the field, and the
error never repeats the secret or the URL; what is allowed is allowed; the payload is ids only
unless content was asked for."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from schemas.events import ChangeEvent
from schemas.settings import Settings
from schemas.webhooks import ALL_EVENT_TYPES, DeliverArgs, payload
from tests.support.cli import run_reverie

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


def hook(**overrides: Any) -> dict[str, Any]:
    return {"name": "crm", "url": "https://hooks.example.com/reverie?token=abc", "secret": SECRET} | overrides


# (row id, endpoint fields that differ from a valid one, text the error must contain)
ENDPOINT_ROWS: list[tuple[str, dict[str, Any], str]] = [
    ("ftp url", {"url": "ftp://files.example.com/x"}, "url: must start with http:// or https://"),
    ("no scheme", {"url": "hooks.example.com/x"}, "url: must start with http:// or https://"),
    ("no host", {"url": "https:///path"}, "url: needs a host"),
    ("credentials", {"url": "https://bob:hunter2@hooks.example.com/"}, "url: must not carry credentials"),
    ("fragment", {"url": "https://hooks.example.com/x#frag"}, "url: must not have a #fragment"),
    ("bad port", {"url": "https://hooks.example.com:99999/"}, "url: is not a valid URL"),
    ("space", {"url": "https://hooks.example.com/a b"}, "url: must not contain whitespace"),
    ("huge", {"url": "https://hooks.example.com/" + "a" * 3000}, "url: must be at most 2048"),
    ("secret without prefix", {"secret": SECRET.removeprefix("whsec_")}, "secret: must start with 'whsec_'"),
    ("secret not base64", {"secret": "whsec_not*base64!"}, "secret: must be 'whsec_' followed by valid base64"),
    ("secret too short", {"secret": "whsec_" + base64.b64encode(b"k" * 8).decode()}, "got 8"),
    ("secret too long", {"secret": "whsec_" + base64.b64encode(b"k" * 100).decode()}, "got 100"),
    ("bad name", {"name": "crm hooks"}, "name: must be 1-63 letters"),
    ("pipe in name", {"name": "crm|x"}, "name: must be 1-63 letters"),
    ("unknown event type", {"events": ["memory.created", "memory.exploded"]}, "events.1: Input should be"),
    ("no event types", {"events": []}, "events: must name at least one event type"),
    ("unknown field", {"retries": 3}, "retries: Extra inputs are not permitted"),
]


def _problems(e: ValidationError) -> str:
    from producer.core import describe_errors

    return "; ".join(describe_errors(e))


@pytest.mark.parametrize(("overrides", "text"), [r[1:] for r in ENDPOINT_ROWS], ids=[r[0] for r in ENDPOINT_ROWS])
def test_bad_endpoints_are_refused_naming_the_field_without_echoing_it(overrides, text) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(webhooks=[hook(**overrides)])
    assert text in _problems(caught.value)
    for value in overrides.values():
        if isinstance(value, str) and len(value) > 8:
            assert value not in str(caught.value), "the refused value must not be echoed"


SETTINGS_ROWS: list[tuple[str, dict[str, Any], str]] = [
    ("duplicate names", {"webhooks": [hook(), hook(url="https://b.example.com/")]}, "repeated: crm"),
    ("events off", {"webhooks": [hook()], "events_max_len": 0}, "webhooks need change events"),
    ("backoff cap below base", {"webhook_backoff_s": 10, "webhook_backoff_max_s": 5}, "webhook_backoff_max_s"),
    ("redeliver too soon", {"webhook_timeout_s": 10, "webhook_redeliver_s": 60}, "webhook_redeliver_s must exceed"),
    ("zero attempts", {"webhook_max_attempts": 0}, "webhook_max_attempts"),
    ("negative timeout", {"webhook_timeout_s": -1}, "webhook_timeout_s"),
]


@pytest.mark.parametrize(("values", "text"), [r[1:] for r in SETTINGS_ROWS], ids=[r[0] for r in SETTINGS_ROWS])
def test_inconsistent_webhook_settings_are_refused(values, text) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(**values)
    assert text in str(caught.value)


def test_what_is_allowed_is_allowed() -> None:
    """Plain http to any host (a private network's receiver), https with a query, all events by
    default, content off by default; duplicates in the filter collapse."""
    s = Settings(
        webhooks=[
            hook(name="internal", url="http://10.0.0.5:8080/hook"),
            hook(name="local", url="http://127.0.0.1:9000/", events=["memory.deleted", "memory.deleted"]),
            hook(),
        ]
    )
    internal, local, crm = s.webhooks
    assert internal.events == ALL_EVENT_TYPES and not internal.include_content
    assert local.events == ("memory.deleted",) and local.wants("delete") and not local.wants("insert")
    assert crm.where() == "https://hooks.example.com" and "abc" not in crm.where()
    assert SECRET not in repr(crm) and SECRET not in str(s)


def test_a_json_endpoint_list_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("REVERIE_WEBHOOKS", json.dumps([hook(events=["user.forgotten"], include_content=True)]))
    [endpoint] = Settings().webhooks
    assert endpoint.include_content and endpoint.events == ("user.forgotten",)
    assert isinstance(endpoint.secret, SecretStr)


def test_cli_refuses_webhooks_that_are_not_json_in_one_line() -> None:
    proc = run_reverie("webhooks", env={"REVERIE_WEBHOOKS": "[{oops"})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: configuration: REVERIE_WEBHOOKS: is not valid JSON"]


def test_cli_refuses_a_bad_endpoint_naming_it_without_the_secret() -> None:
    bad = hook(secret="whsec_" + base64.b64encode(b"s" * 10).decode())
    proc = run_reverie("webhooks", env={"REVERIE_WEBHOOKS": json.dumps([bad])})
    assert proc.returncode == 2
    [line] = proc.stderr.strip().splitlines()
    assert "REVERIE_WEBHOOKS.0.SECRET" in line.upper() and bad["secret"] not in line


DELIVER_ROWS: list[tuple[str, dict[str, Any], str]] = [
    ("bad stream id", {"stream_id": "yesterday"}, "stream_id"),
    ("stream id with three parts", {"stream_id": "1-2-3"}, "stream_id"),
    ("bad endpoint", {"endpoint": "a b"}, "endpoint"),
    ("bad stream", {"stream": "x y"}, "stream"),
    ("content smuggled in", {"content": "I keep bees"}, "content"),
    ("url smuggled in", {"url": "https://elsewhere.example.com/"}, "url"),
]


@pytest.mark.parametrize(("overrides", "field"), [r[1:] for r in DELIVER_ROWS], ids=[r[0] for r in DELIVER_ROWS])
def test_deliver_args_are_validated(overrides, field) -> None:
    with pytest.raises(ValidationError) as caught:
        DeliverArgs.model_validate({"endpoint": "crm", "stream": "reverie:events", "stream_id": "1-0"} | overrides)
    assert field in _problems(caught.value)


def test_the_payload_is_ids_only_unless_content_was_asked_for() -> None:
    event = ChangeEvent(event_id="u:t:g1:5:0", user_id="u", memory_id="m", op="update", kind="semantic", ts_ms=5)
    plain = payload(event, "1970-01-01T00:00:00.005Z")
    assert plain["type"] == "memory.updated" and "content" not in plain["data"]
    assert payload(event, "t", content=None, with_content=True)["data"]["content"] is None
    assert payload(event, "t", content="x", with_content=True)["data"]["content"] == "x"
