"""The pipeline's contracts on a real Redis Cluster with 16 shards: debounce, one reflection per
quiet period, idempotent append, per-user serialisation, forget, status and recall of pending
turns, and where the keys land (one slot per user, shards spread over the primaries)."""

from __future__ import annotations

from typing import Any

from producer.keys import SLOTS, key_slot
from producer.memories.pending import PendingTurns
from schemas.reflection import DeadLetter
from tests.conftest import leaked_keys, uid
from tests.support.contracts import check_five_submits_reflect_once, check_one_user_never_interleaves, llm_system
from worker.features.forget import forget_user


def users_in_distinct_shards(keys: Any, n: int, name: str = "u") -> list[str]:
    """``n`` fresh user ids, each in a shard of its own."""
    found: dict[int, str] = {}
    while len(found) < n:
        user = uid(name)
        found.setdefault(keys.shard_of(user), user)
    return list(found.values())


def _slot(key: str) -> int:
    tag = key[key.index("{") + 1 : key.index("}")]
    return key_slot(tag)


def test_a_users_keys_share_one_slot_and_the_shards_spread_over_the_primaries(
    make_cluster_system, scripted, cluster, cluster_client
) -> None:
    """After submits and reflections for users of several shards, every key naming a user is in
    the slot of that user's shard, and the 16 shards' slots are spread 5/5/6 over 3 primaries."""
    system = llm_system(make_cluster_system, scripted)
    keys = system.runtime.coordinator.keys
    users = users_in_distinct_shards(keys, 6)
    for user in users:
        system.producer.submit(user, "t", [{"role": "user", "content": f"{user} likes tea", "id": "m1"}])
    system.wait_for(lambda: len(system.committed()) == 6, what="six commits")
    system.wait_idle()
    prefix = system.settings.key_prefix
    for user in users:
        shard_slot = _slot(keys.shard_for(user).due_ss)
        naming = [k.decode() for k in cluster_client.scan_iter(match=f"{prefix}:*{user}*")]
        assert naming, user
        assert {_slot(k) for k in naming} == {shard_slot}, naming
    owners = [cluster.primary_of_slot(_slot(s.due_ss)).port for s in keys.all_shards()]
    assert sorted(owners.count(p) for p in set(owners)) == [5, 5, 6]
    assert all(0 <= _slot(s.due_ss) < SLOTS for s in keys.all_shards())
    assert leaked_keys(cluster_client, prefix) == []


def test_bursts_in_several_shards_make_one_llm_call_each(make_cluster_system, scripted) -> None:
    """Debounce: six quick turns on a thread, for users in four shards → one reflection and one
    extraction call per thread, every turn in it, buffers emptied."""
    system = llm_system(make_cluster_system, scripted)
    keys = system.runtime.coordinator.keys
    users = users_in_distinct_shards(keys, 4)
    for i in range(6):
        for user in users:
            system.producer.submit(user, "t1", [{"role": "user", "content": f"fact {i} of {user}", "id": f"m{i}"}])
    system.wait_for(lambda: len(system.committed()) == 4, what="four commits")
    system.wait_idle()
    assert scripted.chat_calls == 4
    for user in users:
        [commit] = system.committed(user)
        assert commit.turns == 6
        assert sorted(m.content for m in system.runtime.store.list(user)) == [f"fact {i} of {user}" for i in range(6)]
        assert system.redis.llen(keys.buffer(user, "t1")) == 0


def test_five_submits_half_a_second_apart_reflect_once(make_cluster_system, scripted) -> None:
    """One reflection per quiet period (trailing edge), on the cluster too."""
    check_five_submits_reflect_once(llm_system(make_cluster_system, scripted), scripted, after_seconds=2)


def test_append_is_idempotent_by_message_id(make_cluster_system, scripted) -> None:
    """A retried submit (same message ids) buffers nothing twice, and each turn becomes one memory."""
    system = llm_system(make_cluster_system, scripted, after_seconds=1.0)
    user = uid("u")
    turns = [{"role": "user", "content": f"retry me {i}", "id": f"m{i}"} for i in range(3)]
    first = system.producer.submit(user, "t", turns)
    again = system.producer.submit(user, "t", turns)
    mixed = system.producer.submit(user, "t", [*turns, {"role": "user", "content": "new one", "id": "m3"}])
    assert (first.accepted, again.status, again.duplicates) == (3, "duplicate", 3)
    assert (mixed.accepted, mixed.duplicates) == (1, 3)
    assert system.redis.llen(system.runtime.coordinator.keys.buffer(user, "t")) == 4
    system.wait_for(lambda: len(system.committed(user)) == 1, what="commit")
    system.wait_idle()
    contents = sorted(m.content for m in system.runtime.store.list(user))
    assert contents == ["new one", "retry me 0", "retry me 1", "retry me 2"]


def test_reflections_of_one_user_never_interleave(make_cluster_system, scripted) -> None:
    """Per-user serialisation: three threads of one user due together, each extraction starts
    after the previous one ended (the lease and its waiters live in the user's shard). One by
    one: joined, they would share one reflection."""
    check_one_user_never_interleaves(llm_system(make_cluster_system, scripted, join_siblings=0), scripted)


def test_forget_removes_a_user_everywhere_on_the_cluster(make_cluster_system, scripted, cluster_client) -> None:
    """Memories, a waiting thread, a dead letter and the thread index go; another user (in
    another shard) keeps everything."""
    system = llm_system(make_cluster_system, scripted)
    keys = system.runtime.coordinator.keys
    user, other = users_in_distinct_shards(keys, 2)
    for who in (user, other):
        system.producer.submit(who, "done", [{"role": "user", "content": f"{who} likes tea", "id": "m1"}])
    system.wait_for(lambda: len(system.committed()) == 2, what="two commits")
    system.wait_idle()
    for who in (user, other):
        system.producer.submit(who, "waiting", [{"role": "user", "content": "later"}], after_seconds=60, max_wait=60)
    system.producer.submit(user, "dead", [{"role": "user", "content": "poison"}], after_seconds=60, max_wait=60)
    letter = DeadLetter(user_id=user, thread_id="dead", generation=1, attempts=1, reason="boom", failed_ms=1)
    system.runtime.coordinator.reschedule(
        user, "dead", token=None, generation=1, delay_ms=0, failure=letter, max_attempts=1
    )
    celery_prefix = system.app.conf.broker_transport_options["global_keyprefix"]
    counts = forget_user(system.runtime, user, celery_prefix=celery_prefix)
    assert (counts["memories"], counts["buffered_turns"], counts["due"], counts["dead_letters"]) == (1, 2, 1, 1)
    assert counts["task_results"] >= 1, "the Celery result on the plain Redis goes too"
    prefix = system.settings.key_prefix
    assert [k for k in cluster_client.scan_iter(match=f"{prefix}:*{user}*")] == []
    assert system.runtime.store.list(user) == []
    assert [d.user_id for d in system.runtime.coordinator.dead_letters()] == []
    assert [m.content for m in system.runtime.store.list(other)] == [f"{other} likes tea"]
    assert system.redis.llen(keys.buffer(other, "waiting")) == 1
    assert forget_user(system.runtime, other)["buffered_turns"] == 1  # leave it idle for teardown


def test_status_and_pending_recall_read_the_users_shard(make_cluster_system, scripted, cluster) -> None:
    """``status`` (one script call) and the read client's pending-turn recall work on the cluster."""
    system = llm_system(make_cluster_system, scripted)
    user = uid("u")
    system.producer.submit(user, "t1", [{"role": "user", "content": "I live in Kyoto", "id": "a"}], after_seconds=20)
    system.producer.submit(user, "t2", [{"role": "assistant", "content": "noted", "id": "b"}], after_seconds=20)
    whole = system.producer.status(user)
    assert [(t.thread_id, t.state, t.buffered_turns) for t in whole.threads] == [("t1", "due", 1), ("t2", "due", 1)]
    pending = PendingTurns(system.redis, system.runtime.coordinator.keys)
    assert [(thread, turn.content) for thread, turn in pending.fetch(user)] == [("t1", "I live in Kyoto")]
    system.runtime.coordinator.flush_due(100, user)  # both due at once: one joint reflection
    system.wait_for(lambda: system.committed_threads(user) == {"t1", "t2"}, what="both threads committed")
    assert system.runtime.coordinator.stats().get("joint_reflections") == 1
    assert scripted.chat_calls == 1
    assert pending.fetch(user) == []
    assert system.producer.status(user, "t1").state == "idle"
