"""Faults against the in-process pipeline (real Redis, Celery worker, local Qdrant, scripted
LLM over HTTP): LLM faults, Qdrant down, a poison thread, Redis unreachable at submit, and a
dispatcher dying mid-claim. Every reflection ends committed or dead-lettered with its reason;
nothing invalid is written and no turn is lost."""

from __future__ import annotations

import asyncio
import gc
import socket
import time
import warnings
from typing import Any

import pytest

from producer import AsyncProducer, Producer, ProducerConfig, ProducerUnavailable
from tests.conftest import uid
from tests.support.llm_scripts import conversation_lines, insert_each_user_turn
from tests.support.procs import free_port
from tests.support.scripted_llm import Fault, Reply, tool_calls_reply


def llm_settings(scripted: Any, **overrides: Any) -> dict[str, Any]:
    return {"model": scripted.model, "llm_api_base": scripted.base_url, "llm_api_key": "sk-test"} | overrides


def user_turns(user: str, thread: str, n: int = 2) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"{user} {thread} fact {i}", "id": f"{thread}-{i}"} for i in range(n)]


def settled(system: Any, threads: list[tuple[str, str]]) -> bool:
    """Every thread committed or dead-lettered, and nothing due or in flight."""
    dead = {(d.user_id, d.thread_id) for d in system.runtime.coordinator.dead_letters()}
    done = {(r.user_id, r.thread_id) for r in system.committed()}
    return all(t in dead or t in done for t in threads) and system.idle()


def _collect_leaked_sockets() -> None:
    """litellm leaves the socket of a timed-out call for the garbage collector; collect it here,
    quietly, rather than let its ResourceWarning fail whichever test runs the next GC."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_llm_faults_at_30_percent_commit_or_dead_letter_then_replay(make_system, scripted) -> None:
    """429 with Retry-After, 500, timeouts, truncated JSON and wrong-typed tool arguments on
    30% of calls: every thread commits or is dead-lettered with a reason; replaying the dead
    letters once the LLM is healthy commits them; every memory is exactly one submitted turn."""
    system = make_system(
        **llm_settings(scripted, llm_timeout_s=1.0, llm_max_retries=2, validation_retries=1, max_attempts=2)
    )
    healthy = {"flaky": False}

    def responder(body: dict[str, Any]) -> Reply:
        if any("flaky" in line for line in conversation_lines(body)) and not healthy["flaky"]:
            return tool_calls_reply([("insert_memory", {"content": ["not", "a", "string"]})])
        return insert_each_user_turn(body)

    scripted.set_responder(responder)
    scripted.fault_timeout_s = 1.5  # > llm_timeout_s: the client gives up
    scripted.set_fault_rate(0.3)
    threads = [(uid("u"), "t") for _ in range(12)] + [(uid("flaky"), "t")]
    try:
        for user, thread in threads:
            assert system.producer.submit(user, thread, user_turns(user, thread)).status == "accepted"
        system.wait_for(lambda: settled(system, threads), timeout_s=90, what="every thread settled")
        faults = scripted.faults_served
        dead = system.runtime.coordinator.dead_letters()
        assert {(d.user_id, d.thread_id) for d in dead} >= {threads[-1]}
        for letter in dead:
            assert letter.reason and letter.attempts == 2
            assert system.redis.llen(system.runtime.coordinator.keys.buffer(letter.user_id, letter.thread_id)) == 2
        # the LLM recovers; `dlq replay`
        scripted.set_fault_rate(0.0)
        healthy["flaky"] = True
        for letter in dead:
            assert system.runtime.coordinator.replay_dead(letter.user_id, letter.thread_id)
        system.wait_for(
            lambda: {(r.user_id, r.thread_id) for r in system.committed()} == set(threads) and system.idle(),
            timeout_s=60,
            what="replayed dead letters committed",
        )
    finally:
        scripted.fault_timeout_s = 5.0
        _collect_leaked_sockets()
    assert faults >= 3, f"the fault rate did not bite ({faults} faults)"
    print(f"\nllm faults: {faults} injected, {len(dead)} dead letters replayed, {len(threads)} threads")
    assert system.runtime.coordinator.dead_letters() == []
    for user, thread in threads:
        expected = sorted(t["content"] for t in user_turns(user, thread))
        assert sorted(m.content for m in system.runtime.store.list(user)) == expected, "no loss, no dup, no junk"
        assert system.redis.llen(system.runtime.coordinator.keys.buffer(user, thread)) == 0


def test_qdrant_unavailable_retries_then_dead_letters_and_keeps_turns(make_system, scripted) -> None:
    """Qdrant URL on a closed loopback port: the reflection fails, retries with backoff, is
    dead-lettered with the reason (without the API key), and every turn stays buffered."""
    with pytest.warns(UserWarning, match="insecure"):  # qdrant-client: API key over plain http
        system = make_system(
            **llm_settings(scripted, max_attempts=2),
            qdrant_url=f"http://127.0.0.1:{free_port()}",
            qdrant_api_key="qdrant-secret-key-123",
        )
    scripted.set_responder(insert_each_user_turn)
    user = uid("u")
    system.producer.submit(user, "t", user_turns(user, "t", 3))
    system.wait_for(lambda: system.runtime.coordinator.dead_letters() != [], timeout_s=30, what="dead letter")
    system.wait_idle()
    [letter] = system.runtime.coordinator.dead_letters()
    assert "StoreUnavailable" in letter.reason and letter.attempts == 2
    assert "qdrant-secret-key-123" not in letter.reason
    assert system.outcomes(user) == ["failed", "dead_lettered"]
    assert system.redis.llen(system.runtime.coordinator.keys.buffer(user, "t")) == 3
    # a dead-lettered thread keeps accepting turns without being scheduled (no retry storm)
    assert system.producer.submit(user, "t", [{"role": "user", "content": "later"}]).due_at_ms is None
    assert system.redis.llen(system.runtime.coordinator.keys.buffer(user, "t")) == 4


def test_poison_thread_is_dead_lettered_and_blocks_no_one(make_system, scripted) -> None:
    """A thread whose extraction always fails validation is dead-lettered after max_attempts;
    the same user's other thread and other users commit normally."""
    system = make_system(**llm_settings(scripted, validation_retries=1, max_attempts=3))

    def responder(body: dict[str, Any]) -> Reply:
        if any("POISON" in line for line in conversation_lines(body)):
            return tool_calls_reply([("insert_memory", "{not json")])
        return insert_each_user_turn(body)

    scripted.set_responder(responder)
    alice, bob = uid("alice"), uid("bob")
    system.producer.submit(alice, "bad", [{"role": "user", "content": "POISON pill", "id": "p1"}])
    system.producer.submit(alice, "good", user_turns(alice, "good"))
    system.producer.submit(bob, "t", user_turns(bob, "t"))
    system.wait_for(lambda: len(system.committed()) == 2, timeout_s=20, what="the healthy threads commit")
    assert "dead_lettered" not in system.outcomes(), "healthy threads must not wait for the poison"
    system.wait_for(lambda: system.runtime.coordinator.dead_letters() != [], timeout_s=40, what="poison dead-lettered")
    system.wait_idle()
    [letter] = system.runtime.coordinator.dead_letters()
    assert (letter.user_id, letter.thread_id, letter.attempts) == (alice, "bad", 3)
    assert "ExtractionFailed" in letter.reason
    assert [o for o in system.outcomes(alice, "bad") if o != "deferred"] == ["failed", "failed", "dead_lettered"]
    assert sorted(m.content for m in system.runtime.store.list(alice)) == sorted(
        t["content"] for t in user_turns(alice, "good")
    )
    assert len(system.runtime.store.list(bob)) == 2
    assert system.redis.llen(system.runtime.coordinator.keys.buffer(alice, "bad")) == 1


class _Crash(BaseException):
    """Stands in for the dispatcher process dying (not an Exception: nothing catches it)."""


def test_dispatcher_dying_mid_claim_loses_nothing_and_dispatches_nothing_twice(make_system, scripted, celery_app):
    """The dispatcher claims a batch and dies after sending part of it: the unsent claims sit in
    the in-flight set until their deadline, then a new dispatcher sends them. Every thread is
    reflected exactly once (one LLM call each)."""
    from worker.app import make_dispatcher
    from worker.pipeline.dispatcher import DispatcherThread

    system = make_system(start_dispatcher=False, inflight_timeout_s=2, **llm_settings(scripted))
    scripted.set_responder(insert_each_user_turn)
    threads = [(uid("u"), "t") for _ in range(8)]
    for user, thread in threads:
        system.producer.submit(user, thread, user_turns(user, thread, 1), after_seconds=0)
    claimed: list[Any] = []

    def die_on_fourth(claim: Any) -> None:
        claimed.append(claim)
        if len(claimed) == 4:
            raise _Crash

    doomed = make_dispatcher(celery_app, on_claim=die_on_fourth, inflight_timeout_s=2)
    doomed.coordinator = system.runtime.coordinator
    with pytest.raises(_Crash):
        doomed.run_once(time.monotonic())
    keys = system.runtime.coordinator.keys
    assert system.redis.zcard(keys.inflight_ss) == len(threads), "the whole batch was claimed"
    assert system.redis.zcard(keys.due_ss) == 0
    system.wait_for(lambda: len(system.committed()) == 3, timeout_s=20, what="the 3 sent threads")
    successor = make_dispatcher(celery_app, interval_s=0.05, inflight_timeout_s=2)
    successor.coordinator = system.runtime.coordinator
    with DispatcherThread(successor):
        system.wait_for(
            lambda: len(system.committed()) == len(threads) and system.idle(), timeout_s=30, what="all threads"
        )
        time.sleep(1.2)  # one more reaper pass: nothing comes back
    assert sorted((r.user_id, r.thread_id) for r in system.committed()) == sorted(threads)
    assert scripted.chat_calls == len(threads)
    # a claim requeued while its reflection ran would end "deferred" or "noop", never a 2nd commit
    assert set(system.outcomes()) <= {"committed", "deferred", "noop"}
    for user, thread in threads:
        assert [m.content for m in system.runtime.store.list(user)] == [user_turns(user, thread, 1)[0]["content"]]


def test_dispatcher_backpressure_keeps_the_backlog_in_redis(make_system) -> None:
    """With max_inflight=4, a backlog of 10 due threads is sent 4 at a time: the rest wait in
    the due set (where no deadline runs) until claims finish."""
    from worker.pipeline.dispatcher import Dispatcher

    system = make_system(start_dispatcher=False)
    coord = system.runtime.coordinator
    threads = [(uid("u"), "t") for _ in range(10)]
    for user, thread in threads:
        system.producer.submit(user, thread, user_turns(user, thread, 1), after_seconds=0)
    sent: list[Any] = []
    dispatcher = Dispatcher(coord, sent.append, max_inflight=4)
    time.sleep(0.05)
    assert dispatcher.run_once(time.monotonic())[0] == 4
    assert dispatcher.run_once(time.monotonic())[0] == 0
    assert (coord.inflight_count(), system.redis.zcard(coord.keys.due_ss)) == (4, 6)
    for claim in sent[:3]:  # three reflections end
        coord.release(claim.user_id, claim.thread_id, 0, claim.generation, "noop")
    assert dispatcher.run_once(time.monotonic())[0] == 3
    assert len({(c.user_id, c.thread_id) for c in sent}) == 7, "nothing sent twice"
    for claim in sent[3:]:
        coord.release(claim.user_id, claim.thread_id, 0, claim.generation, "noop")
    assert dispatcher.run_once(time.monotonic())[0] == 3
    for claim in sent[7:]:
        coord.release(claim.user_id, claim.thread_id, 0, claim.generation, "noop")
    assert sorted((c.user_id, c.thread_id) for c in sent) == sorted(threads)


def _silent_listener() -> socket.socket:
    """Accepts TCP connections (backlog) but never answers: a hung Redis."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


@pytest.mark.parametrize("kind", ["refused", "silent"])
def test_submit_with_redis_unreachable_returns_within_its_timeout(kind) -> None:
    """Default policy ``drop``: status "dropped" within about the timeout; ``raise`` raises
    ProducerUnavailable; the asyncio producer behaves the same."""
    listener = _silent_listener() if kind == "silent" else None
    port = listener.getsockname()[1] if listener else free_port()
    url = f"redis://127.0.0.1:{port}/0"
    timeout_s = 0.25
    msg = [{"role": "user", "content": "hello"}]
    try:
        with Producer(ProducerConfig(redis_url=url, timeout_s=timeout_s)) as producer:
            start = time.monotonic()
            receipt = producer.submit("alice", "t", msg)
            assert receipt.status == "dropped"
            assert time.monotonic() - start < 3 * timeout_s + 0.5
        with Producer(ProducerConfig(redis_url=url, timeout_s=timeout_s, on_unavailable="raise")) as producer:
            start = time.monotonic()
            with pytest.raises(ProducerUnavailable):
                producer.submit("alice", "t", msg)
            assert time.monotonic() - start < 3 * timeout_s + 0.5

        async def async_submit() -> tuple[str, float]:
            async with AsyncProducer(ProducerConfig(redis_url=url, timeout_s=timeout_s)) as producer:
                start = time.monotonic()
                receipt = await producer.submit("alice", "t", msg)
                return receipt.status, time.monotonic() - start

        status, elapsed = asyncio.run(async_submit())
        assert status == "dropped" and elapsed < 3 * timeout_s + 0.5
    finally:
        if listener:
            listener.close()


def test_fault_kinds_cover_the_issue() -> None:
    """The scripted server's random faults are the five the issue names."""
    from tests.support.scripted_llm import FAULT_KINDS

    assert set(FAULT_KINDS) == {"429", "500", "timeout", "truncated", "bad_args"}
    assert Fault.status(429, retry_after_s=1.0).retry_after_s == 1.0
