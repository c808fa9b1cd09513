"""``reverie events``: lists the change events stream (table and --json), filters by user, pages
with --since, and refuses bad input with one line and exit 2."""

from __future__ import annotations

import json
from typing import Any

import pytest

from schemas.events import ChangeEvent
from tests.worker.ops.test_cli import run  # noqa: F401  (the CLI fixture)
from worker.pipeline.keys import WorkerKeys


def _add(redis_client: Any, prefix: str, user: str, n: int) -> None:
    event = ChangeEvent(
        event_id=f"{user}:t:g1:5:{n}",
        user_id=user,
        memory_id=f"{n:08d}-mem",
        op="insert",
        kind="semantic",
        thread_id="t",
        generation=1,
    )
    values = [*event.fields(), "ts_ms", "1700000000000"]
    redis_client.xadd(WorkerKeys(prefix).events, dict(zip(values[::2], values[1::2], strict=True)))


def test_events_lists_filters_and_pages(run, redis_client, prefix) -> None:  # noqa: F811
    """The newest N by default; --user keeps one user's; --since continues after an id."""
    for n in range(6):
        _add(redis_client, prefix, "alice" if n % 2 else "bob", n)
    result = run("events", "--json")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert [e["memory_id"][:8] for e in listed] == [f"{n:08d}" for n in range(6)]
    assert all("content" not in e for e in listed)
    newest = json.loads(run("events", "--json", "--count", "2", "--user", "alice").stdout)
    assert [e["memory_id"][:8] for e in newest] == ["00000003", "00000005"]
    after = json.loads(run("events", "--json", "--since", listed[3]["stream_id"]).stdout)
    assert [e["memory_id"][:8] for e in after] == ["00000004", "00000005"]
    table = run("events", "--user", "bob")
    assert table.exit_code == 0 and "bob" in table.stdout and "alice" not in table.stdout
    assert f"next: --since {listed[4]['stream_id']}" in table.stdout
    assert max(len(line) for line in table.stdout.splitlines()) <= 80


def test_events_on_an_empty_stream_lists_nothing(run) -> None:  # noqa: F811
    result = run("events", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout) == []


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("events", "--user", "a:b"), "user"),
        (("events", "--since", "yesterday"), "--since"),
        (("events", "--since", "1-2-3"), "--since"),
    ],
)
def test_events_bad_input_is_one_line_and_exit_2(run, args, field) -> None:  # noqa: F811
    result = run(*args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}:"), result.stderr


def test_events_follow_prints_new_events_as_json_lines(redis_url, redis_client, prefix) -> None:
    """--follow tails with XREAD BLOCK: an event added later is printed, one JSON object a line."""
    import os
    import signal
    import subprocess
    import sys
    import time

    _add(redis_client, prefix, "alice", 0)
    env = {**os.environ, "REVERIE_REDIS_URL": redis_url, "REVERIE_KEY_PREFIX": prefix}
    cmd = [sys.executable, "-m", "worker.ops.cli", "events", "--follow", "--json", "--count", "1"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline() if proc.stdout else ""
        _add(redis_client, prefix, "alice", 1)
        second = proc.stdout.readline() if proc.stdout else ""
    finally:
        time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=10)
    assert json.loads(first)["memory_id"].startswith("00000000")
    assert json.loads(second)["memory_id"].startswith("00000001")
    assert proc.returncode == 130
