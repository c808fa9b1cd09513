"""The CLI is not blind while a worker owns the local-mode store: reads go through the worker's
socket (user filter and all); Redis-only commands never open Qdrant; without the socket, one
line says why and what to do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from producer import Producer, ProducerConfig
from producer.memories.local_socket import SocketReader, socket_path
from tests.conftest import uid
from tests.support.llm_scripts import insert_each_user_turn
from tests.support.procs import wait_until
from worker.ops.cli import cli


@pytest.mark.timeout(150)
def test_read_commands_work_while_a_local_mode_worker_runs(worker_env, spawn, scripted, redis_url, prefix) -> None:
    scripted.set_responder(insert_each_user_turn)
    worker = spawn(worker_env)
    folder = Path(worker_env["REVERIE_QDRANT_PATH"])
    owned = lambda: (p := socket_path(folder)) is not None and SocketReader(p).alive()  # noqa: E731
    wait_until(owned, 60, "the worker to own the folder and serve reads")
    alice, bob = uid("alice"), uid("bob")
    with Producer(ProducerConfig(redis_url=redis_url, key_prefix=prefix, after_seconds=0.3)) as producer:
        producer.submit(alice, "t", [{"role": "user", "content": "I love miso ramen"}])
        producer.submit(bob, "t", [{"role": "user", "content": "I collect stamps"}])
    env = {k: v for k, v in worker_env.items()} | {"REVERIE_LOG_LEVEL": "WARNING"}
    runner = CliRunner()

    def run(*args: str, **extra: str):  # type: ignore[no-untyped-def]
        return runner.invoke(cli, list(args), env=env | extra)

    def listed(user: str) -> list[str]:
        done = run("memories", user, "--json")
        assert done.exit_code == 0, done.output
        return [m["content"] for m in json.loads(done.stdout)]

    wait_until(lambda: listed(alice) == ["I love miso ramen"] and listed(bob) == ["I collect stamps"], 60, "memories")
    hits = json.loads(run("search", alice, "ramen", "--json").stdout)
    assert [h["content"] for h in hits] == ["I love miso ramen"] and all(h["user_id"] == alice for h in hits)
    assert json.loads(run("history", alice, "--json").stdout)[0]["op"] == "insert"
    with Producer(ProducerConfig(redis_url=redis_url, key_prefix=prefix)) as producer:  # not yet reflected
        producer.submit(alice, "t2", [{"role": "user", "content": "I also like tonkotsu ramen"}], after_seconds=60)
    recalled = json.loads(run("search", alice, "ramen", "--pending", "--json").stdout)  # through the socket
    assert {(h["content"], h["pending"]) for h in recalled} == {
        ("I love miso ramen", False),
        ("I also like tonkotsu ramen", True),
    }
    health = json.loads(run("health", "--json").stdout)
    qdrant = {c["name"]: c for c in health["checks"]}["qdrant"]
    assert qdrant["status"] == "ok" and "reads go through its socket" in qdrant["detail"]
    worker.stop()
    gone = run("memories", alice)  # the worker is gone, so is its socket: the folder opens again
    assert gone.exit_code == 0 and "miso ramen" in gone.stdout


@pytest.mark.timeout(150)
def test_without_the_socket_one_line_says_what_to_do(
    worker_env, spawn, scripted, redis_url, redis_client, prefix
) -> None:
    scripted.set_responder(insert_each_user_turn)
    worker = spawn(worker_env | {"REVERIE_LOCAL_READS": "false"})
    with Producer(ProducerConfig(redis_url=redis_url, key_prefix=prefix, after_seconds=0.3)) as producer:
        producer.submit(uid("u"), "t", [{"role": "user", "content": "I collect stamps"}])
    committed = lambda: redis_client.hget(f"{prefix}:stats", "committed") is not None  # noqa: E731
    wait_until(committed, 60, "a commit: the worker owns the folder")
    runner = CliRunner()
    env = dict(worker_env) | {"REVERIE_LOG_LEVEL": "WARNING"}
    history = runner.invoke(cli, ["history", uid("u"), "--json"], env=env)
    assert history.exit_code == 0 and json.loads(history.stdout) == []  # Redis only: no Qdrant opened
    done = runner.invoke(cli, ["memories", uid("u")], env=env)
    assert done.exit_code == 1
    [line] = [x for x in done.stderr.splitlines() if x.strip()]
    assert "in use by another process" in line and "REVERIE_QDRANT_URL" in line and "Traceback" not in done.stderr
    worker.stop()
