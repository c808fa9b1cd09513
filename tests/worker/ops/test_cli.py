"""The ``reverie`` CLI against real Redis, a real Celery worker and local Qdrant.

Commands run in-process through typer's runner with ``REVERIE_*`` variables pointing at the
test's Redis prefix. Commands that need Qdrant get the test's running runtime (local-mode Qdrant
allows one client per folder), handed over through ``worker.ops.cli.common.build_runtime`` (and ``build_reader``)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from producer.keys import member
from schemas.reflection import DeadLetter
from tests.conftest import uid
from tests.support.cli import in_process, json_of
from tests.support.llm_scripts import insert_each_user_turn
from tests.support.scripted_llm import text_reply
from worker.ops.cli import cli

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def run(redis_url: str, prefix: str, tmp_path: Path) -> Any:
    return in_process(
        {
            "REVERIE_REDIS_URL": redis_url,
            "REVERIE_KEY_PREFIX": prefix,
            "REVERIE_QDRANT_PATH": str(tmp_path / "cli-qdrant"),
            "REVERIE_LOG_LEVEL": "WARNING",
        }
    )


def test_submit_then_pending_and_stats_show_the_waiting_thread(run, prefix) -> None:
    """submit buffers a turn; pending lists it with turns and wait; stats counts it."""
    user = uid("u")
    receipt = json_of(run("submit", user, "t1", "I love ramen", "--after", "60", "--id", "m1", "--json"))
    assert receipt["status"] == "accepted" and receipt["generation"] == 1
    again = json_of(run("submit", user, "t1", "I love ramen", "--after", "60", "--id", "m1", "--json"))
    assert again["duplicates"] == 1
    run("submit", user, "t1", "and miso", "--after", "60")
    pending = json_of(run("pending", "--json"))
    [row] = pending["threads"]
    assert (row["user_id"], row["thread_id"], row["state"], row["turns"]) == (user, "t1", "due", 2)
    assert 50 < row["due_in_s"] <= 60 and row["oldest_wait_s"] >= 0
    assert pending["totals"] == {"due": 1, "running": 0}
    stats = json_of(run("stats", "--json"))
    assert stats["enqueued_turns"] == 2 and stats["duplicate_turns"] == 1
    assert stats["due_threads"] == 1 and stats["buffered_turns"] == 2 and stats["dead_letters"] == 0
    table = run("pending")
    assert table.exit_code == 0 and user in table.stdout


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("submit", "bad user", "t", "x"), "user"),
        (("submit", "u", "t:1", "x"), "thread"),
        (("submit", "u", "t", "x", "--id", "a*"), "--id"),
        (("memories", "x" * 129), "user"),
        (("search", "", "q"), "user"),
        (("forget", "u{1}", "-y"), "user"),
        (("dlq", "show", "u", "t t"), "thread"),
        (("memories", "u", "--kind", "a b"), "--kind"),
        (("status", "a:b"), "user"),
        (("status", "u", "t*"), "thread"),
    ],
)
def test_bad_ids_get_one_clear_line_and_exit_2(run, args, field) -> None:
    """Every id is checked before anything connects; the error names the argument."""
    result = run(*args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}:"), result.stderr


def test_submit_rejects_an_unknown_role_without_writing(run, prefix, redis_client) -> None:
    """The producer's validation error comes out as one line; nothing is buffered."""
    result = run("submit", uid("u"), "t", "hi", "--role", "wizard")
    assert result.exit_code == 2 and "role" in result.stderr
    assert list(redis_client.scan_iter(match=f"{prefix}:buf:*")) == []


def test_submit_refuses_after_over_the_configured_max_wait(run, prefix, redis_client) -> None:
    """``--after`` above REVERIE_MAX_WAIT_S: one line naming both, exit 2, nothing written."""
    result = run("submit", uid("u"), "t", "hi", "--after", "120", REVERIE_MAX_WAIT_S="60")
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert "after_seconds" in line and "max_wait" in line and "120 s" in line and "60 s" in line, line
    assert list(redis_client.scan_iter(match=f"{prefix}:*")) == []


def test_submit_takes_a_profile_and_refuses_an_unknown_one(run, prefix, redis_client) -> None:
    """``--profile`` reaches the thread; a name no worker knows is refused at submit (it would
    otherwise be dead-lettered at its reflection), naming it, with nothing written."""
    user = uid("u")
    assert run("submit", user, "t", "hi", "--profile", "default", "--after", "60").exit_code == 0
    assert redis_client.hget(f"{prefix}:thread:{user}:t", "profile") == b"default"
    result = run("submit", user, "t2", "hi", "--profile", "nope")
    assert result.exit_code == 2 and "unknown profile 'nope'" in result.stderr
    assert not redis_client.exists(f"{prefix}:buf:{user}:t2")
    bad = run("submit", user, "t3", "hi", REVERIE_PROFILES="no_such_module:x")
    assert bad.exit_code == 2 and bad.stderr.startswith("error: configuration:") and "no_such_module" in bad.stderr
    assert not redis_client.exists(f"{prefix}:buf:{user}:t3")


def _dead_letter(system_or_coord: Any, producer: Any, user: str, thread: str) -> None:
    producer.submit(user, thread, [{"role": "user", "content": "poison", "id": "p1"}], after_seconds=60)
    system_or_coord.reschedule(
        user,
        thread,
        token=None,
        generation=1,
        delay_ms=0,
        failure=DeadLetter(
            user_id=user, thread_id=thread, generation=1, attempts=5, reason="LLMUnavailable: 500", failed_ms=1
        ),
        max_attempts=1,
    )


@pytest.fixture
def coord(redis_url: str, prefix: str) -> Any:
    import redis

    from worker.pipeline.coordinator import Coordinator
    from worker.pipeline.keys import WorkerKeys as Keys

    client = redis.Redis.from_url(redis_url)
    yield Coordinator(client, Keys(prefix))
    client.close()


def test_dlq_list_show_replay_drop(run, coord, producer) -> None:
    """Dead letters can be listed, inspected (ids, no text), replayed and dropped."""
    a, b = uid("a"), uid("b")
    _dead_letter(coord, producer, a, "t")
    _dead_letter(coord, producer, b, "t")
    listed = json_of(run("dlq", "list", "--json"))
    assert sorted(r["user_id"] for r in listed) == sorted([a, b])
    assert all(r["turns"] == 1 and r["attempts"] == 5 for r in listed)
    shown = json_of(run("dlq", "show", a, "t", "--json"))
    assert shown["reason"] == "LLMUnavailable: 500"
    assert shown["buffered"] == [{"id": "p1", "role": "user", "chars": 6}]
    assert "poison" not in run("dlq", "show", a, "t").stdout

    assert json_of(run("dlq", "replay", a, "t", "--json")) == {"replayed": [f"{a}:t"]}
    assert coord.r.zscore(coord.keys.due_ss, member(a, "t")) is not None
    assert coord.r.llen(coord.keys.buffer(a, "t")) == 1  # turns kept for the retry

    dropped = json_of(run("dlq", "drop", b, "t", "-y", "--json"))
    assert dropped == {"dropped": f"{b}:t", "turns": 1}
    assert coord.r.exists(coord.keys.buffer(b, "t"), coord.keys.thread(b, "t")) == 0
    assert json_of(run("dlq", "list", "--json")) == []

    missing = run("dlq", "show", b, "t")
    assert missing.exit_code == 1 and missing.stderr.startswith("error: no dead letter")
    assert run("dlq", "replay").exit_code == 2
    coord.r.zrem(coord.keys.due_ss, member(a, "t"))


def test_dlq_replay_all(run, coord, producer) -> None:
    """--all replays every dead letter."""
    users = [uid("a"), uid("b")]
    for u in users:
        _dead_letter(coord, producer, u, "t")
    out = json_of(run("dlq", "replay", "--all", "--json"))
    assert sorted(out["replayed"]) == sorted(f"{u}:t" for u in users)
    coord.r.delete(coord.keys.due_ss)


class _Borrowed:
    """The test's open store, lent to the CLI: its reads, and a close() that leaves it open."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def close(self) -> None:
        pass


def test_memories_search_and_forget_through_the_pipeline(run, make_system, scripted, monkeypatch) -> None:
    """After a real reflection the CLI lists and searches the memories, then forgets the user."""
    scripted.set_responder(insert_each_user_turn)
    system = make_system(model=scripted.model, llm_api_base=scripted.base_url, llm_api_key="sk-test")
    monkeypatch.setattr("worker.ops.cli.common.build_runtime", lambda _settings: system.runtime)
    monkeypatch.setattr("worker.ops.cli.common.build_reader", lambda _settings: _Borrowed(system.runtime.store))
    user = uid("alice")
    system.producer.submit(user, "t", [{"role": "user", "content": "I love miso ramen"}])
    system.producer.submit(user, "t", [{"role": "user", "content": "My cat is called Mochi"}])
    system.wait_for(lambda: len(system.committed(user)) == 1, what="commit")
    system.wait_idle()

    listed = json_of(run("memories", user, "--json"))
    assert sorted(m["content"] for m in listed) == ["I love miso ramen", "My cat is called Mochi"]
    assert all(m["user_id"] == user for m in listed)
    hits = json_of(run("search", user, "ramen", "--limit", "1", "--json"))
    assert [h["content"] for h in hits] == ["I love miso ramen"]
    assert "Mochi" in run("memories", user).stdout

    stats = json_of(run("stats", "--json"))
    assert stats["reflections_ok"] == 1 and stats["llm_calls"] == 1
    assert stats["prompt_tokens"] > 0 and stats["dispatched"] == 1

    trail = json_of(run("history", user, "--json"))
    assert sorted((e["op"], e["new_content"]) for e in trail) == [
        ("insert", "I love miso ramen"),
        ("insert", "My cat is called Mochi"),
    ]
    one = json_of(run("history", user, listed[0]["id"], "--json"))
    assert [e["memory_id"] for e in one] == [listed[0]["id"]]
    assert json_of(run("consolidate", user, "--json")) == {"users": 1, "busy": 0, "merged": 0, "expired": 0}
    assert run("consolidate").exit_code == 2

    aborted = run("forget", user, input="n\n")
    assert aborted.exit_code == 1 and len(system.runtime.store.list(user)) == 2
    removed = json_of(run("forget", user, "--yes", "--json"))
    assert removed["user_id"] == user and removed["removed"]["memories"] == 2
    assert removed["removed"]["history_entries"] == 2
    assert json_of(run("memories", user, "--json")) == []
    assert json_of(run("history", user, "--json")) == []


def test_health_reports_each_dependency(run, redis_url) -> None:
    """Healthy with the test Redis and local Qdrant; unhealthy (exit 1) when Redis is unreachable."""
    ok = json_of(run("health", "--json"))
    assert ok["healthy"] is True
    assert {c["name"]: c["status"] for c in ok["checks"]}["redis"] in ("ok", "warn")
    bad = run("health", "--json", REVERIE_REDIS_URL="redis://127.0.0.1:1/0")
    assert bad.exit_code == 1
    checks = {c["name"]: c for c in json.loads(bad.stdout)["checks"]}
    assert checks["redis"]["status"] == "fail" and json.loads(bad.stdout)["healthy"] is False


def test_health_fails_when_the_model_has_no_key(run, monkeypatch) -> None:
    """A provider model without its API key is reported as unusable."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    result = run("health", "--json", REVERIE_MODEL="openai/gpt-4o-mini")
    assert result.exit_code == 1
    llm = {c["name"]: c for c in json.loads(result.stdout)["checks"]}["llm"]
    assert llm["status"] == "fail" and "OPENAI_API_KEY" in llm["detail"]


def test_health_probe_reaches_the_scripted_model(run, scripted) -> None:
    """--probe sends one tiny request through litellm to the configured endpoint."""
    scripted.set_responder(insert_each_user_turn)
    result = run(
        "health",
        "--probe",
        "--json",
        REVERIE_MODEL=scripted.model,
        REVERIE_LLM_API_BASE=scripted.base_url,
        REVERIE_LLM_API_KEY="sk-test",
    )
    llm = {c["name"]: c for c in json_of(result)["checks"]}["llm"]
    assert llm["status"] == "ok" and "probe" in llm["detail"]
    assert scripted.chat_calls == 1


def test_health_probe_says_plainly_when_the_model_answers_in_text(run, scripted) -> None:
    """A server that does not map tool calls: the probe fails with what to configure; the JSON
    protocol on the same model is probed with response_format and passes."""
    env = {"REVERIE_MODEL": scripted.model, "REVERIE_LLM_API_BASE": scripted.base_url, "REVERIE_LLM_API_KEY": "sk"}
    scripted.set_responder(lambda body: text_reply("Sure! I will remember that you love green tea."))
    result = run("health", "--probe", "--json", **env)
    assert result.exit_code == 1
    llm = {c["name"]: c for c in json.loads(result.stdout)["checks"]}["llm"]
    assert llm["status"] == "fail" and "answered in text, not with tool calls" in llm["detail"]
    assert "REVERIE_LLM_PROTOCOL=json" in llm["detail"]

    def json_model(body: dict[str, Any]) -> Any:
        assert body["response_format"]["type"] == "json_schema" and "tools" not in body
        return text_reply('{"operations": [{"tool": "insert_memory", "arguments": {"content": "loves green tea"}}]}')

    scripted.set_responder(json_model)
    result = run("health", "--probe", "--json", REVERIE_LLM_PROTOCOL="json", **env)
    llm = {c["name"]: c for c in json_of(result)["checks"]}["llm"]
    assert llm["status"] == "ok" and "(json)" in llm["detail"]


def test_metrics_prints_prometheus_text(run, producer) -> None:
    """`reverie metrics` exposes the shared counters in the Prometheus text format."""
    producer.submit(uid("u"), "t", [{"role": "user", "content": "hello"}], after_seconds=60)
    text = run("metrics").stdout
    assert "reverie_enqueued_turns_total 1.0" in text
    assert "reverie_due_threads 1.0" in text
    assert 'reverie_reflections_total{outcome="committed"}' in text


def test_config_errors_and_unreachable_redis_are_one_line_without_traceback(redis_url) -> None:
    """As a real process: bad settings exit 2, Redis down exits non-zero, one line, no traceback."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("REVERIE_")}
    cmd = [sys.executable, "-m", "worker.ops.cli"]
    bad = subprocess.run(
        [*cmd, "stats"], env=base | {"REVERIE_AFTER_SECONDS": "-1"}, capture_output=True, text=True, cwd=ROOT
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "REVERIE_AFTER_SECONDS" in bad.stderr
    down = subprocess.run(
        [*cmd, "stats"],
        env=base | {"REVERIE_REDIS_URL": "redis://:hunter2@127.0.0.1:1/0"},
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert down.returncode != 0 and down.stderr.count("\n") == 1, down.stderr
    assert "Traceback" not in down.stderr and "hunter2" not in down.stderr
    assert "Redis unreachable at 127.0.0.1:1/0 (ConnectionError)" in down.stderr
    # every command says it the same way: submit too, which goes through the producer
    env = base | {"REVERIE_REDIS_URL": "redis://:hunter2@127.0.0.1:1/0"}
    for args in (["submit", "u", "t", "hello"], ["pending"], ["dlq", "list"]):
        same = subprocess.run([*cmd, *args], env=env, capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert (
            same.returncode == 1
            and same.stderr.strip() == "error: Redis unreachable at 127.0.0.1:1/0 (ConnectionError)"
        )


def test_process_commands_are_registered_with_celery_wrappers() -> None:
    """worker, beat and flower exist and describe what they wrap."""
    runner = CliRunner()
    for name in ("worker", "beat", "flower"):
        result = runner.invoke(cli, [name, "--help"])
        assert result.exit_code == 0 and f"celery -A worker.app {name}" in " ".join(result.stdout.split())


def test_beat_runs_on_redbeat_with_its_lock_under_our_prefix(redis_url, prefix, redis_client) -> None:
    """`reverie beat` as a real process takes RedBeat's lock in Redis under the key prefix and
    releases it on Ctrl-C."""
    import signal
    import time

    env = {k: v for k, v in os.environ.items() if not k.startswith("REVERIE_")}
    env |= {"REVERIE_REDIS_URL": redis_url, "REVERIE_KEY_PREFIX": prefix, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.ops.cli", "beat"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lock = f"{prefix}:redbeat::lock"
    try:
        deadline = time.monotonic() + 60
        while not redis_client.exists(lock):
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "beat never took its lock"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=30)
    assert "redbeat.schedulers.RedBeatScheduler" in output
    assert not redis_client.exists(lock)


def test_forget_refuses_while_a_reflection_of_the_user_runs(run, coord) -> None:
    """A held user lease means a reflection is mid-flight: forget waits, then says so (exit 1)."""
    user = uid("busy")
    assert coord.acquire_lease(user, 60_000) > 0
    result = run("forget", user, "--yes", "--wait", "0.2")
    assert result.exit_code == 1 and "still running" in result.stderr
    coord.r.delete(coord.keys.lease(user), coord.keys.fence(user))


def test_submit_with_redis_down_fails_with_exit_1(run) -> None:
    """The CLI's producer raises instead of dropping: the operator must know the turn is not in."""
    result = run("submit", "u", "t", "hello", REVERIE_REDIS_URL="redis://127.0.0.1:1/0")
    assert result.exit_code == 1 and result.stderr.startswith("error:")
    assert len(result.stderr.strip().splitlines()) == 1


def test_history_takes_a_unique_id_prefix_and_refuses_an_ambiguous_one(run, redis_url, prefix) -> None:
    """The tables print 8 characters of an id; those 8 (or any unique prefix) are enough."""
    import redis

    from schemas.memory import HistoryEntry
    from worker.memory.history import HistoryLog
    from worker.pipeline.keys import WorkerKeys

    client = redis.Redis.from_url(redis_url)
    log = HistoryLog(client, WorkerKeys(prefix), retention_s=3600, max_entries=100)
    user = uid("u")
    ids = ["0623d618-0000-4000-8000-000000000001", "0623d6ff-0000-4000-8000-000000000002"]
    log.record(
        user, [HistoryEntry(memory_id=i, op="insert", new_content=f"fact {n}", at_ms=1) for n, i in enumerate(ids)]
    )
    client.close()
    one = json_of(run("history", user, "0623d618", "--json"))
    assert [e["memory_id"] for e in one] == [ids[0]]
    ambiguous = run("history", user, "0623d6")
    assert ambiguous.exit_code == 2 and ids[0] in ambiguous.stderr and ids[1] in ambiguous.stderr
    none = run("history", user, "ffff")
    assert none.exit_code == 1 and "no memory of user" in none.stderr


def test_submit_says_when_the_thread_is_due(run) -> None:
    out = run("submit", uid("u"), "t", "I moved to Kyoto", "--after", "30").stdout
    assert "due in" in out and " s (at " in out and "UTC)" in out and "1796" not in out


def test_tables_stay_readable_at_80_columns(run, coord, producer) -> None:
    """One line per row, nothing wider than the terminal, even with long ids and reasons."""
    user = uid("a-user-with-a-rather-long-identifier")
    producer.submit(user, "a-thread-with-a-long-id", [{"role": "user", "content": "x"}], after_seconds=60)
    coord.reschedule(
        user,
        "a-thread-with-a-long-id",
        token=None,
        generation=1,
        delay_ms=0,
        failure=DeadLetter(
            user_id=user,
            thread_id="a-thread-with-a-long-id",
            generation=1,
            attempts=5,
            reason="ExtractionFailed: tool arguments still invalid after 2 correction round(s) " * 3,
            failed_ms=1_796_000_000_000,
        ),
        max_attempts=1,
    )
    for args in (["dlq", "list"], ["pending"], ["stats"]):
        out = run(*args, COLUMNS="80").stdout
        assert out.strip() and max(len(line) for line in out.splitlines()) <= 80, (args, out)
    listed = run("dlq", "list", COLUMNS="80").stdout
    assert re.search(r"\b11-30 00:53:20\b", listed), listed  # the failure time, whole and compact (UTC)
    assert sum(1 for line in listed.splitlines() if user[:8] in line) == 1, listed  # one line per row
    coord.r.delete(coord.keys.dlq)


def test_status_of_a_thread_a_user_and_json(run, coord, producer) -> None:
    """``reverie status USER THREAD`` says when it is due (as submit does) and the last
    reflection; ``reverie status USER`` is one row per thread within 80 columns; ``--json`` has
    every field; no text is ever shown."""
    user = uid("a-user-with-a-rather-long-identifier")
    producer.submit(user, "t1", [{"role": "user", "content": "secret ramen", "id": "m1"}], after_seconds=30)
    producer.submit(user, "a-thread-with-a-long-id", [{"role": "user", "content": "x"}], after_seconds=30)
    coord.release(user, "t1", 0, 1, "rolled_back", turns=1, extractor="llm:openai/gpt-4o-mini")
    one = run("status", user, "t1")
    assert one.exit_code == 0, one.output
    assert f"{user} t1: due, 1 turn(s) buffered, generation 1\ndue in " in one.stdout and " s (at " in one.stdout
    assert "last reflection: generation 1 rolled_back at " in one.stdout
    assert "1 turn(s): 0 inserted, 0 updated, 0 deleted by llm:openai/gpt-4o-mini" in one.stdout
    everything = run("status", user, COLUMNS="80").stdout
    assert max(len(line) for line in everything.splitlines()) <= 80, everything
    assert "2 thread(s)" in everything and "rolled_back g1" in everything and "in 30 s (" in everything
    assert sum(1 for line in everything.splitlines() if "a-thread" in line) == 1, everything
    data = json_of(run("status", user, "--json"))
    assert [t["thread_id"] for t in data["threads"]] == ["a-thread-with-a-long-id", "t1"]
    assert data["threads"][1]["last"]["outcome"] == "rolled_back" and data["threads"][1]["buffered_turns"] == 1
    assert "secret" not in one.stdout + everything + json.dumps(data)
    assert json_of(run("status", user, "t9", "--json"))["state"] == "unknown"
