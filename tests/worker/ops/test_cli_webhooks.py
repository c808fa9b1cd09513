"""``reverie webhooks`` and the webhook dead letters under ``reverie dlq``: listed (ids only, the
URL as scheme://host), replayed through the test worker to a real receiver, dropped; bad input
refused with one line, exit 2, nothing written."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import keys_under, uid
from tests.support.procs import wait_until
from tests.support.webhook_receiver import Answer
from tests.support.webhooks import endpoint, make_webhooks, pending_total, receiver, secret  # noqa: F401
from tests.worker.features.webhooks.test_deliver import FACTS, events_of, letters_of, reflect
from tests.worker.ops.test_cli import run  # noqa: F401  (the CLI fixture)


@pytest.fixture
def refused(make_webhooks, receiver, secret, celery_app, monkeypatch) -> Any:  # noqa: F811
    """Two events dead-lettered by a receiver that answered 410, and the CLI's replays sent to
    the test worker."""
    from worker.app import webhook_sender
    from worker.ops.cli import webhooks as cli_webhooks

    @contextlib.contextmanager
    def sender(_s: Any) -> Iterator[Any]:
        yield webhook_sender(celery_app)

    monkeypatch.setattr(cli_webhooks, "delivery_sender", sender)
    receiver.answer = lambda _id, _n: Answer(410)
    hooks = [endpoint("hook", receiver.url, secret)]
    system = make_webhooks(hooks)
    system.env = {"REVERIE_WEBHOOKS": json.dumps(hooks)}
    user = uid("u")
    reflect(system, user, *FACTS)
    wait_until(lambda: len(letters_of(system)) == 2, 15, "two dead letters")
    system.user = user
    return system


def test_webhooks_shows_endpoints_without_path_or_secret(run, refused, secret) -> None:  # noqa: F811
    rows = json.loads(run("webhooks", "--json", **refused.env).stdout)
    assert rows == [
        {
            "endpoint": "hook",
            "where": rows[0]["where"],
            "events": ["memory.created", "memory.updated", "memory.deleted", "memory.merged", "user.forgotten"],
            "content": False,
            "pending": 0,
            "unread": 0,
            "dead_letters": 2,
        }
    ]
    assert rows[0]["where"].startswith("http://127.0.0.1:") and rows[0]["where"].count("/") == 2
    table = run("webhooks", **refused.env)
    assert table.exit_code == 0 and "hook" in table.stdout and "all" in table.stdout
    assert "token" not in table.stdout and secret not in table.stdout
    assert max(len(line) for line in table.stdout.splitlines()) <= 80


def test_dlq_webhooks_lists_replays_and_drops(run, refused, receiver) -> None:  # noqa: F811
    events = events_of(refused)
    listed = json.loads(run("dlq", "webhooks", "--json", **refused.env).stdout)
    assert sorted(d["event"] for d in listed) == sorted(e.event_id for e in events)
    assert {(d["endpoint"], d["user_id"], d["status"], d["error"], d["attempts"]) for d in listed} == {
        ("hook", refused.user, 410, "HTTP 410", 1)
    }
    assert json.loads(run("dlq", "webhooks", "--json", "--endpoint", "other", **refused.env).stdout) == []
    table = run("dlq", "webhooks", **refused.env)
    assert table.exit_code == 0 and "HTTP 410" in table.stdout

    first, second = (d["event"] for d in listed)
    dropped = run("dlq", "drop-webhook", "hook", first, "--yes", **refused.env)
    assert dropped.exit_code == 0, dropped.output
    receiver.answer = lambda _id, _n: Answer(204)
    replayed = run("dlq", "replay-webhook", "--all", "--json", **refused.env)
    assert json.loads(replayed.stdout) == {"replayed": [second], "trimmed": [], "unconfigured_endpoints": []}
    receiver.wait_for(lambda r: list(r.accepted()) == [second], 15, "the replayed event")
    wait_until(lambda: letters_of(refused) == [], 10, "its letter removed once delivered")
    assert pending_total(refused) == 0


def test_a_single_replay_and_a_trimmed_event(run, refused, receiver) -> None:  # noqa: F811
    receiver.answer = lambda _id, _n: Answer(204)
    one, other = (d.event_id for d in letters_of(refused))
    done = run("dlq", "replay-webhook", "hook", one, **refused.env)
    assert done.exit_code == 0 and "replayed 1 event(s)" in done.stdout
    receiver.wait_for(lambda r: list(r.accepted()) == [one], 15, "the replayed event")
    refused.redis.xtrim(refused.runtime.coordinator.keys.events, maxlen=0, approximate=False)
    gone = run("dlq", "replay-webhook", "hook", other, **refused.env)
    assert gone.exit_code == 1 and "trimmed" in gone.output
    wait_until(lambda: [d.event_id for d in letters_of(refused)] == [other], 10, "only the trimmed one left")
    assert letters_of(refused)[0].replayed_ms == 0, "a refused replay does not mark the letter"


def test_bad_cli_input_is_refused_in_one_line_and_writes_nothing(run, refused, redis_client, prefix) -> None:  # noqa: F811
    event = letters_of(refused)[0].event_id
    before = keys_under(redis_client, prefix)
    letters = letters_of(refused)
    cases = [
        (("dlq", "replay-webhook", "no such", event), 2, "endpoint"),
        (("dlq", "replay-webhook", "ghost", event), 2, "not configured in REVERIE_WEBHOOKS"),
        (("dlq", "replay-webhook", "hook"), 2, "give ENDPOINT EVENT"),
        (("dlq", "replay-webhook", "hook", event, "--all"), 2, "give ENDPOINT EVENT"),
        (("dlq", "replay-webhook"), 2, "give ENDPOINT EVENT"),
        (("dlq", "replay-webhook", "hook", "a b"), 2, "event"),
        (("dlq", "replay-webhook", "hook", "x|y"), 2, "event"),
        (("dlq", "replay-webhook", "hook", "u:nope:1:0"), 1, "no webhook dead letter"),
        (("dlq", "webhooks", "--endpoint", "a*b"), 2, "endpoint"),
        (("dlq", "drop-webhook", "hook", "a b", "--yes"), 2, "event"),
        (("dlq", "drop-webhook", "hook", "u:nope:1:0", "--yes"), 1, "no webhook dead letter"),
    ]
    for args, code, text in cases:
        result = run(*args, **refused.env)
        assert result.exit_code == code, (args, result.output)
        assert text in result.output and len(result.output.strip().splitlines()) == 1, (args, result.output)
    assert keys_under(redis_client, prefix) == before and letters_of(refused) == letters
