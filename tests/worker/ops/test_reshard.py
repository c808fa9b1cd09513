"""Changing the shard count of a live deployment: workers refuse a layout other than the one
recorded; ``reverie reshard S`` moves everything (buffered turns, due times, dead letters,
history, prompts) so nothing is stranded, a running producer follows on its own, and the
workers of the new count reflect every turn, including those buffered before the move."""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr

from producer import Producer, ProducerConfig
from producer.errors import LayoutMismatch
from producer.keys import member
from producer.prompts import PromptStore
from schemas.reflection import DeadLetter
from schemas.settings import Settings
from tests.conftest import uid
from tests.support.llm_scripts import insert_each_user_turn
from tests.worker.ops.test_cli import run  # noqa: F401  (the CLI fixture)
from worker.pipeline.coordinator import Coordinator
from worker.pipeline.keys import WorkerKeys
from worker.runtime import build_coordinator


def _turn(text: str, mid: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text, "id": mid}]


def test_a_worker_refuses_another_layout(redis_url, prefix) -> None:
    """Recorded: 1 shard. A worker (its coordinator) with 16 says both and what to do."""
    base = {"redis_url": SecretStr(redis_url), "key_prefix": prefix}
    build_coordinator(Settings(**base)).r.close()  # records shards=1
    with pytest.raises(LayoutMismatch) as info:
        build_coordinator(Settings(**base, shards=16))
    message = str(info.value)
    assert "1 shard(s), unsharded key names" in message and "16 shard(s), hash-tagged" in message
    assert "REVERIE_SHARDS=1" in message and "reverie reshard 16" in message


def test_the_cli_refuses_another_layout_in_one_line(run, redis_url, prefix) -> None:  # noqa: F811
    build_coordinator(Settings(redis_url=SecretStr(redis_url), key_prefix=prefix)).r.close()
    result = run("pending", REVERIE_SHARDS="8")
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert "reverie reshard 8" in line


def test_reshard_moves_everything_and_the_new_workers_reflect_it(
    run,  # noqa: F811
    redis_url,
    redis_client,
    prefix,
    make_system,
    scripted,
) -> None:
    """An unsharded deployment with buffered turns, a dead letter, history and a prompt, and a
    running producer: ``reshard 4`` moves it all; the producer's next submit follows; workers
    with 1 shard refuse, workers with 4 reflect every turn exactly once."""
    old, new = WorkerKeys(prefix), WorkerKeys(prefix, 4)
    users = [uid("u") for _ in range(6)]
    producer = Producer(ProducerConfig(redis_url=redis_url, key_prefix=prefix, after_seconds=20))
    for n, user in enumerate(users):
        producer.submit(user, "t", _turn(f"before {n}", "a"))
    dead = users[0]
    Coordinator(redis_client, old).reschedule(
        dead,
        "t",
        token=None,
        generation=1,
        delay_ms=0,
        failure=DeadLetter(user_id=dead, thread_id="t", generation=1, attempts=5, reason="boom", failed_ms=1),
        max_attempts=1,
    )
    redis_client.rpush(old.history(users[1]), '{"memory_id":"m","op":"insert","at_ms":1}')
    prompts = PromptStore(redis_client, old)
    prompts.set_prompt("support", "Be brief.")

    result = run("reshard", "4", "--yes", "--json")
    report = json.loads(result.stdout)
    assert result.exit_code == 0, result.output
    assert (report["old"], report["new"], report["due"], report["dead_letters"]) == (
        "shards=1 tags=0",
        "shards=4 tags=1",
        5,
        1,
    )
    assert redis_client.get(f"{prefix}:layout") == b"shards=4 tags=1"
    for user in users:
        assert redis_client.llen(new.buffer(user, "t")) == 1, user
        assert not redis_client.exists(old.buffer(user, "t"), old.thread(user, "t"), old.msgids(user, "t"))
        if user != dead:
            assert redis_client.zscore(new.shard_for(user).due_ss, member(user, "t")) is not None
    assert redis_client.hexists(new.shard_for(dead).dlq, member(dead, "t"))
    assert redis_client.llen(new.history(users[1])) == 1
    assert PromptStore(redis_client, new).get_prompt("support") == "Be brief."
    assert not redis_client.exists(old.due_ss, old.dlq)
    assert redis_client.hgetall(old.stats) == {b"closed": b"shards=4 tags=1"}, "the old shard stays closed"

    # the running producer (1 shard) is refused by the closed shard, reads the record, follows
    receipt = producer.submit(users[2], "t", _turn("after", "b"))
    assert (receipt.status, receipt.generation) == ("accepted", 2), "the moved thread hash kept counting"
    assert producer.keys.layout == "shards=4 tags=1"
    assert redis_client.llen(new.buffer(users[2], "t")) == 2
    producer.close()

    with pytest.raises(LayoutMismatch, match="REVERIE_SHARDS=4"):
        make_system(model=scripted.model, llm_api_base=scripted.base_url, llm_api_key="sk-test")
    scripted.set_responder(insert_each_user_turn)
    system = make_system(
        model=scripted.model, llm_api_base=scripted.base_url, llm_api_key="sk-test", shards=4, after_seconds=20
    )
    system.runtime.coordinator.replay_dead(dead, "t")
    system.runtime.coordinator.flush_due(100)
    system.wait_for(lambda: len(system.committed()) == 6, what="six commits")
    system.wait_idle()
    found = sorted(m.content for u in users for m in system.runtime.store.list(u))
    assert found == sorted([f"before {n}" for n in range(6)] + ["after"])


def test_reshard_waits_for_reflections_in_flight_then_gives_up_and_reopens(run, redis_client, prefix) -> None:  # noqa: F811
    """A claim in flight (a worker still running, or dead until its deadline): after --wait-s the
    command stops with exit 1, nothing moved, and the shards take submits again."""
    old = WorkerKeys(prefix)
    redis_client.set(old.layout_key, old.layout)
    redis_client.zadd(old.inflight_ss, {"u:t": 10**13})
    result = run("reshard", "2", "--yes", "--wait-s", "0.3")
    assert result.exit_code == 1
    assert "1 reflection(s) still in flight" in result.stderr and "nothing moved" in result.stderr
    assert redis_client.get(old.layout_key) == b"shards=1 tags=0"
    assert not redis_client.hexists(old.stats, "closed")
    assert redis_client.zcard(old.inflight_ss) == 1


def test_reshard_back_to_one_shard_restores_the_unsharded_names(run, redis_url, redis_client, prefix) -> None:  # noqa: F811
    users = [uid("u") for _ in range(4)]
    with Producer(ProducerConfig(redis_url=redis_url, key_prefix=prefix, after_seconds=20)) as producer:
        for user in users:
            producer.submit(user, "t", _turn("hello", "a"))
        assert run("reshard", "3", "-y").exit_code == 0
        assert run("reshard", "1", "-y").exit_code == 0
        assert producer.submit(users[0], "t", _turn("again", "b")).generation == 2
    old = WorkerKeys(prefix)
    assert redis_client.get(old.layout_key) == b"shards=1 tags=0"
    assert [redis_client.llen(old.buffer(u, "t")) for u in users] == [2, 1, 1, 1]
    assert redis_client.zcard(old.due_ss) == 4
    assert not redis_client.hexists(old.stats, "closed"), "the unsharded names are open again"
    assert run("reshard", "1", "-y").stdout.startswith("already 1 shard(s)")


@pytest.mark.parametrize("bad", ["0", "1025", "two"])
def test_reshard_refuses_a_bad_shard_count(run, redis_client, prefix, bad: str) -> None:  # noqa: F811
    result = run("reshard", bad, "-y")
    assert result.exit_code == 2
    assert "shards" in result.output.lower()
    assert list(redis_client.scan_iter(match=f"{prefix}:*")) == []
