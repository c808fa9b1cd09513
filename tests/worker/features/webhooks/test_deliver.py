"""Delivery end to end: reflections commit, their change events reach a receiver on 127.0.0.1
signed the Standard Webhooks way (every signature verified), with retries and backoff when the
receiver fails, times out or refuses connections, and dead letters after the bounded attempts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from schemas.webhooks import EVENT_TYPES
from tests.conftest import uid
from tests.support.procs import free_port, wait_until
from tests.support.scripted_llm import tool_calls_reply
from tests.support.webhook_receiver import Answer, WebhookReceiver
from tests.support.webhooks import endpoint, new_secret, pending_total
from worker.features.forget import forget_user
from worker.memory.events import read_events

FACTS = ("I keep bees in Nagano", "I live in Kyoto")


def events_of(system: Any) -> list[Any]:
    return read_events(system.redis, system.runtime.coordinator.keys.events, count=10_000)


def letters_of(system: Any) -> list[Any]:
    from worker.features.webhooks.dlq import dead_letters

    return dead_letters(system.redis, system.runtime.coordinator.keys)


def reflect(system: Any, user: str, *texts: str, thread: str = "t") -> None:
    before = len(system.committed(user))
    system.producer.submit(user, thread, [{"role": "user", "content": t} for t in texts])
    system.wait_for(lambda: len(system.committed(user)) > before, what="a commit")


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_every_change_arrives_once_signed_with_its_event_id_and_ids_only(
    make_webhooks, receiver, secret, scripted, capfd
):
    """Inserts, an update, a delete and a forget each reach the ids-only endpoint once, as
    ``webhook-id`` = event id with the documented body; the content endpoint gets only the types
    it asked for, with content. Logs name neither URL, secret nor content."""
    from worker.observability.logs import configure

    configure("DEBUG", json=True)
    other_secret = new_secret()
    with WebhookReceiver(other_secret) as crm:
        system = make_webhooks(
            [
                endpoint("all", receiver.url, secret),
                endpoint(
                    "crm", crm.url, other_secret, events=["memory.created", "memory.updated"], include_content=True
                ),
            ],
            enable_deletes=True,
        )
        user = uid("u")
        reflect(system, user, *FACTS)
        crm.wait_for(lambda r: len(r.accepted()) == 2, 20, "both inserts at the content endpoint")
        scripted.enqueue(
            tool_calls_reply(
                [
                    ("update_memory", {"memory_id": "0", "content": "I moved to Osaka"}),
                    ("delete_memory", {"memory_id": "1"}),
                ]
            )
        )
        reflect(system, user, "moved to Osaka, no more Kyoto")
        crm.wait_for(lambda r: len(r.accepted()) == 3, 20, "inserts and the update")  # content read before forget
        forget_user(system.runtime, user)
        events = events_of(system)
        assert sorted(e.op for e in events) == ["delete", "forget", "insert", "insert", "update"]
        receiver.wait_for(lambda r: len(r.accepted()) == 5, 20, "every event")
        assert crm.bad_signatures == []

    assert sorted(receiver.ids()) == sorted(e.event_id for e in events), "each exactly once when nothing fails"
    for e in events:
        got = receiver.accepted()[e.event_id]
        assert got.body == {
            "type": EVENT_TYPES[e.op],
            "timestamp": iso(e.ts_ms),
            "data": {
                "event_id": e.event_id,
                "user_id": user,
                "memory_id": e.memory_id,
                "op": e.op,
                "kind": e.kind,
                "thread_id": e.thread_id,
                "generation": e.generation,
                "into": "",
                "ts_ms": e.ts_ms,
            },
        }
        assert set(got.headers) >= {"webhook-id", "webhook-timestamp", "webhook-signature"}
    by_op = {e.op: e for e in events if e.op != "insert"}
    contents = {r.body["data"]["memory_id"]: r.body["data"]["content"] for r in crm.accepted().values()}
    inserts = {
        r.body["data"]["memory_id"]: r.body["data"]["content"]
        for r in crm.receipts
        if r.body["type"] == "memory.created"
    }
    assert sorted(inserts.values()) == sorted(FACTS)
    assert contents[by_op["update"].memory_id] == "I moved to Osaka"
    assert {r.body["type"] for r in crm.receipts} == {"memory.created", "memory.updated"}
    assert pending_total(system) == 0 and letters_of(system) == []

    logs = capfd.readouterr()
    text = logs.out + logs.err
    assert "webhook delivered" in text, "the delivery log lines were captured"
    for secret_thing in (secret, other_secret, "/hooks/reverie", "not-a-secret", *FACTS, "Osaka"):
        assert secret_thing not in text


def test_a_failing_receiver_is_retried_with_backoff_until_it_recovers(make_webhooks, receiver, secret):
    """500, 500, then 204: three attempts per event, all under the same ``webhook-id``, each
    signed afresh; nothing dead-lettered, nothing left pending."""
    receiver.answer = lambda _id, nth: Answer(500) if nth <= 2 else Answer(204)
    system = make_webhooks([endpoint("hook", receiver.url, secret)])
    user = uid("u")
    reflect(system, user, *FACTS)
    receiver.wait_for(lambda r: len(r.accepted()) == 2, 20, "both events after two failures")
    ids = {e.event_id for e in events_of(system)}
    assert set(receiver.accepted()) == ids
    for event_id in ids:
        tries = [r for r in receiver.receipts if r.msg_id == event_id]
        assert [r.status for r in tries] == [500, 500, 204]
        assert all(r.body == tries[0].body for r in tries)
    wait_until(lambda: pending_total(system) == 0, 10, "acknowledged")
    assert letters_of(system) == []


def test_a_receiver_that_times_out_then_answers_slowly_gets_the_event_again(make_webhooks, receiver, secret):
    """The first POST outlives webhook_timeout_s (the receiver did get it: a duplicate to come),
    the second is slow but in time: two receipts per event, one ``webhook-id``."""
    receiver.answer = lambda _id, nth: Answer(204, delay_s=1.6 if nth == 1 else 0.4)
    system = make_webhooks([endpoint("hook", receiver.url, secret)])
    user = uid("u")
    reflect(system, user, *FACTS)
    receiver.wait_for(lambda r: sum(x.nth == 2 for x in r.receipts) == 2, 20, "a second try of each")
    wait_until(lambda: pending_total(system) == 0, 10, "acknowledged")
    ids = [e.event_id for e in events_of(system)]
    assert sorted(receiver.ids()) == sorted(ids * 2)
    for event_id in ids:
        first, second = (r for r in receiver.receipts if r.msg_id == event_id)
        assert first.body == second.body
    assert letters_of(system) == []


def test_a_slow_receiver_within_the_timeout_gets_each_event_once(make_webhooks, receiver, secret):
    receiver.answer = lambda _id, _n: Answer(200, delay_s=0.6)
    system = make_webhooks([endpoint("hook", receiver.url, secret)])
    reflect(system, uid("u"), *FACTS)
    receiver.wait_for(lambda r: len(r.accepted()) == 2, 20, "both events")
    wait_until(lambda: pending_total(system) == 0, 10, "acknowledged")
    assert sorted(receiver.ids()) == sorted(e.event_id for e in events_of(system))


def test_a_4xx_is_final_and_429_waits_for_retry_after(make_webhooks, receiver, secret):
    """410 Gone: dead-lettered after one attempt. 429 with Retry-After: retried, then delivered."""
    system = make_webhooks([endpoint("hook", receiver.url, secret)])
    user = uid("u")
    receiver.answer = lambda _id, _n: Answer(410)
    reflect(system, user, FACTS[0])
    wait_until(lambda: len(letters_of(system)) == 1, 15, "a dead letter")
    [letter] = letters_of(system)
    [gone] = events_of(system)
    assert (letter.event_id, letter.user_id, letter.attempts, letter.status, letter.error) == (
        gone.event_id,
        user,
        1,
        410,
        "HTTP 410",
    )
    receiver.answer = lambda _id, nth: Answer(429, headers={"retry-after": "0.15"}) if nth == 1 else Answer(204)
    reflect(system, user, FACTS[1])
    receiver.wait_for(lambda r: len(r.accepted()) == 1, 15, "the second event")
    second = [r for r in receiver.receipts if r.msg_id != gone.event_id]
    assert [r.status for r in second] == [429, 204]
    assert second[1].at - second[0].at >= 0.14, "Retry-After (0.15 s) outweighs a first backoff of <= 0.05 s"
    wait_until(lambda: pending_total(system) == 0, 10, "acknowledged")


def test_connection_refused_dead_letters_after_the_bounded_attempts_and_replay_delivers(
    make_webhooks, secret, celery_app
):
    """Nothing listens: each event is tried webhook_max_attempts times, then dead-lettered (and
    acknowledged). The receiver comes up on that port; replaying sends each event, signed, and
    the letters go once delivered."""
    from worker.app import webhook_sender
    from worker.features.webhooks.dlq import replay

    port = free_port()
    down = WebhookReceiver(secret, port=port)
    system = make_webhooks([endpoint("down", down.url, secret)], webhook_max_attempts=3)
    user = uid("u")
    reflect(system, user, *FACTS)
    wait_until(lambda: len(letters_of(system)) == 2, 20, "two dead letters")
    events = events_of(system)
    letters = letters_of(system)
    assert {d.event_id for d in letters} == {e.event_id for e in events}
    assert all((d.attempts, d.status, d.error, d.user_id) == (3, None, "ConnectError", user) for d in letters)
    assert pending_total(system) == 0, "dead-lettered means acknowledged"

    with down:
        for letter in letters:
            replay(system.redis, system.runtime.coordinator.keys, letter, webhook_sender(celery_app))
        down.wait_for(lambda r: len(r.accepted()) == 2, 15, "replayed events")
        wait_until(lambda: letters_of(system) == [], 10, "letters removed after delivery")
    assert set(down.accepted()) == {e.event_id for e in events}
    assert down.bad_signatures == []


def test_a_replay_that_fails_again_leaves_a_fresh_letter(make_webhooks, receiver, secret, celery_app):
    """The letter is kept while a replay runs and replaced if it fails: never lost."""
    from worker.app import webhook_sender
    from worker.features.webhooks.dlq import replay

    receiver.answer = lambda _id, _n: Answer(400)
    system = make_webhooks([endpoint("hook", receiver.url, secret)])
    reflect(system, uid("u"), FACTS[0])
    wait_until(lambda: len(letters_of(system)) == 1, 15, "a dead letter")
    [first] = letters_of(system)
    replay(system.redis, system.runtime.coordinator.keys, first, webhook_sender(celery_app))
    receiver.wait_for(lambda r: len(r.receipts) == 2, 15, "the replayed attempt")
    wait_until(lambda: letters_of(system)[0].replayed_ms == 0, 10, "a fresh letter")
    [again] = letters_of(system)
    assert (again.event_id, again.status, again.attempts) == (first.event_id, 400, 1)
    assert again.at_ms >= first.at_ms


def test_a_receiver_verifying_with_another_secret_refuses_every_request(make_webhooks):
    """The receiver's check is real: signed with one secret and verified with another, the
    request fails verification (401) and the event is dead-lettered at once."""
    with WebhookReceiver(new_secret()) as wrong:
        system = make_webhooks([endpoint("hook", wrong.url, new_secret())])
        reflect(system, uid("u"), FACTS[0])
        wait_until(lambda: len(letters_of(system)) == 1, 15, "a dead letter")
        assert len(wrong.bad_signatures) == 1 and wrong.receipts == []
        assert letters_of(system)[0].status == 401
