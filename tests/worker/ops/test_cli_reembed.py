"""``reverie reembed``: bad input is one line and exit 2 with nothing written; the dry run prints
counts and cost; a run and --drop-old report what they did; a worker that owns the local-mode
folder is named with what to do, and ``--in-worker`` runs the re-embed inside it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import SecretStr
from typer.testing import CliRunner

from producer import Producer, ProducerConfig
from producer.memories.local_socket import SocketReader, socket_path
from schemas.settings import Settings
from tests.conftest import keys_under, uid
from tests.support.llm_scripts import insert_each_user_turn
from tests.support.procs import wait_until
from worker.features.agent_tools import MANAGE, MemoryTools
from worker.features.reembed import Context
from worker.features.reembed.keys import lock_key
from worker.ops.cli import cli
from worker.runtime import Runtime, build_runtime


@pytest.fixture
def runtime(redis_url: str, prefix: str, tmp_path: Path) -> Any:
    rt = build_runtime(
        Settings(
            redis_url=SecretStr(redis_url),
            key_prefix=prefix,
            qdrant_path=tmp_path / "qdrant",
            embedding_model="hash-64",
            collection_refresh_s=0.2,
        )
    )
    yield rt
    rt.close()


@pytest.fixture
def run(runtime: Runtime, redis_url: str, prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The command on the test's store (local mode: one client per folder), lent, not closed."""

    def lend(settings: Settings) -> Context:
        monkeypatch.setattr(runtime.store, "close", lambda: None)
        return Context(runtime.store, redis.Redis.from_url(redis_url), runtime.coordinator.keys, runtime.settings)

    monkeypatch.setattr("worker.ops.cli.reembed.build_context", lend)
    env = {
        "REVERIE_REDIS_URL": redis_url,
        "REVERIE_KEY_PREFIX": prefix,
        "REVERIE_QDRANT_PATH": str(tmp_path / "qdrant"),
        "REVERIE_EMBEDDING_MODEL": "hash-64",
        "REVERIE_LOG_LEVEL": "WARNING",
    }
    return lambda *args: CliRunner().invoke(cli, ["reembed", *args], env=env, catch_exceptions=False)


def _seed(runtime: Runtime) -> None:
    for user in (uid("u"), uid("v")):
        for i in range(3):
            MemoryTools(runtime, user).execute(MANAGE, {"action": "create", "content": f"fact {i}"})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--to", "hash-128", "--batch-size", "0"), "error: --batch-size: Input should be greater than or equal to 1"),
        ((), "error: give exactly one of --to MODEL, --drop-old or --abort"),
        (("--to", "hash-128", "--abort"), "error: give exactly one of"),
        (("--to", "nonsense-model"), "error: --to: unknown embedding model 'nonsense-model'"),
        (("--to", "hash-64"), "error: --to: memories__hash-64 is already the live collection"),
        (("--drop-old",), "error: no old collection is kept: nothing to drop"),
        (("--abort",), "error: no unfinished re-embed to abort"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(run, runtime, redis_client, prefix, args, message) -> None:
    _seed(runtime)
    before = keys_under(redis_client, prefix)
    result = run(*args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr
    assert keys_under(redis_client, prefix) == before
    assert [c.name for c in runtime.store.client.get_collections().collections] == ["memories__hash-64"]


def test_a_running_re_embed_is_named_and_exit_1(run, runtime, redis_client) -> None:
    _seed(runtime)
    redis_client.set(lock_key(runtime.coordinator.keys, "memories"), "another-run", px=20_000)
    result = run("--to", "hash-128")
    assert result.exit_code == 1 and "a re-embed of namespace 'memories' is running" in result.stderr


def test_dry_run_then_run_then_drop_old(run, runtime, redis_client, prefix) -> None:
    _seed(runtime)
    before = keys_under(redis_client, prefix)
    dry = run("--to", "hash-128", "--batch-size", "4", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "memories 6, users 2, batches 2 of 4" in dry.stdout and "nothing written" in dry.stdout
    as_json = json.loads(run("--to", "openai/text-embedding-3-small", "--dry-run", "--json").stdout)
    assert as_json["tokens"] > 0 and as_json["cost_usd"] == pytest.approx(as_json["tokens"] * 2e-8)
    assert keys_under(redis_client, prefix) == before

    done = run("--to", "hash-128", "--batch-size", "4")
    assert done.exit_code == 0, done.output
    assert "live: memories__hash-128 (6 memories copied" in " ".join(done.stdout.split())
    assert "would drop: memories__hash-64" in run("--drop-old", "--dry-run").stdout
    assert "dropped: memories__hash-64" in run("--drop-old").stdout
    assert [c.name for c in runtime.store.client.get_collections().collections] == ["memories__hash-128"]


@pytest.mark.timeout(180)
def test_a_local_mode_worker_runs_it_with_in_worker(worker_env, spawn, scripted, redis_url, prefix) -> None:
    """While a worker owns the folder the command says to use --in-worker; with it, the worker
    re-embeds, and reads through its socket follow the switch."""
    scripted.set_responder(insert_each_user_turn)
    env = worker_env | {"REVERIE_EMBEDDING_MODEL": "hash-64", "REVERIE_COLLECTION_REFRESH_S": "0.5"}
    spawn(env)
    folder = Path(env["REVERIE_QDRANT_PATH"])
    wait_until(lambda: (p := socket_path(folder)) is not None and SocketReader(p).alive(), 60, "the worker's socket")
    alice = uid("alice")
    with Producer(ProducerConfig(redis_url=redis_url, key_prefix=prefix, after_seconds=0.3)) as producer:
        producer.submit(alice, "t", [{"role": "user", "content": "I love miso ramen"}])
    runner = CliRunner()
    invoke = lambda *args: runner.invoke(cli, list(args), env=env | {"REVERIE_LOG_LEVEL": "WARNING"})  # noqa: E731
    wait_until(lambda: "miso ramen" in invoke("memories", alice).stdout, 60, "the memory")

    refused = invoke("reembed", "--to", "hash-128")
    assert refused.exit_code == 1
    assert "a worker owns the local-mode Qdrant folder" in refused.stderr and "--in-worker" in refused.stderr
    done = invoke("reembed", "--to", "hash-128", "--batch-size", "2", "--in-worker", "--json")
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert (report["phase"], report["target"], report["copied"]) == ("done", "memories__hash-128", 1)
    hits = json.loads(invoke("search", alice, "ramen", "--json").stdout)
    assert [h["content"] for h in hits] == ["I love miso ramen"]
    refused = invoke("reembed", "--to", "hash-128", "--in-worker")
    assert refused.exit_code == 2 and "already the live collection" in refused.stderr
    dropped = invoke("reembed", "--drop-old", "--in-worker")
    assert dropped.exit_code == 0 and "dropped: memories__hash-64" in dropped.stdout
