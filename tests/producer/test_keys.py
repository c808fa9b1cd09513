"""Key names and shards: the default layout keeps the names a deployment from before sharding
uses; a sharded one puts every key of a user, and the user's shard's own keys, in one slot."""

from __future__ import annotations

from collections import Counter

import pytest

from producer.keys import MAX_SHARDS, SLOTS, Keys, ShardedKeyError, key_slot, shard_of, shard_tag
from worker.pipeline.keys import WorkerKeys


def test_one_shard_on_one_redis_keeps_the_unsharded_names() -> None:
    """REVERIE_SHARDS=1 without a cluster: exactly the names of the layout before sharding."""
    keys = WorkerKeys("p")
    assert keys.layout == "shards=1 tags=0"
    assert [keys.thread("u", "t"), keys.buffer("u", "t"), keys.msgids("u", "t"), keys.user_threads("u")] == [
        "p:thread:u:t",
        "p:buf:u:t",
        "p:msgids:u:t",
        "p:threads:u",
    ]
    assert [keys.journal("u", "t"), keys.lease("u"), keys.fence("u"), keys.waiters("u"), keys.history("u")] == [
        "p:journal:u:t",
        "p:lease:u",
        "p:fence:u",
        "p:waiters:u",
        "p:history:u",
    ]
    assert [keys.due_ss, keys.inflight_ss, keys.dlq, keys.stats, keys.changed_ss, keys.events] == [
        "p:due_ss",
        "p:inflight_ss",
        "p:dlq",
        "p:stats",
        "p:changed_ss",
        "p:events",
    ]
    assert keys.event_streams() == ["p:events"]
    assert [keys.prompt("k"), keys.prompt_history("k"), keys.prompt_examples("k")] == [
        "p:prompt:k",
        "p:prompthist:k",
        "p:promptex:k",
    ]


def _slot(key: str) -> int:
    return key_slot(key[key.index("{") + 1 : key.index("}")])


def test_every_key_a_script_touches_for_a_user_is_in_the_users_shard_slot() -> None:
    keys = WorkerKeys("p", 16)
    for user in ("alice", "bob", "ユーザー", "x" * 128):
        shard = keys.shard_for(user)
        names = [
            keys.thread(user, "t"),
            keys.buffer(user, "t"),
            keys.msgids(user, "t"),
            keys.journal(user, "t"),
            keys.user_threads(user),
            keys.lease(user),
            keys.fence(user),
            keys.waiters(user),
            keys.history(user),
            shard.due_ss,
            shard.inflight_ss,
            shard.dlq,
            shard.stats,
            shard.changed_ss,
            shard.events,
        ]
        assert {_slot(k) for k in names} == {_slot(shard.due_ss)}, names
        assert all(k.startswith(f"p:{{{shard_tag(shard.index, 16)}}}:") for k in names)
    assert len({_slot(k.events) for k in keys.all_shards()}) == 16
    assert keys.event_streams() == [s.events for s in keys.all_shards()]
    assert {_slot(keys.prompt("k")), _slot(keys.prompt_history("k")), _slot(keys.prompt_examples("k"))} == {
        key_slot("k")
    }


def test_a_users_shard_is_stable_and_users_spread_over_shards() -> None:
    """CRC-32 of the id: the same in every process and version (these values are fixed)."""
    assert (shard_of("alice", 16), shard_of("bob", 16), shard_of("alice", 1)) == (7, 0, 0)
    spread = Counter(shard_of(f"user-{i}", 16) for i in range(16_000))
    assert len(spread) == 16 and max(spread.values()) / min(spread.values()) < 1.15


def test_shard_tags_spread_evenly_over_primaries_that_split_the_slots() -> None:
    """Each shard's tag sits near the middle of its share of the slots: 16 shards land 5/5/6 on
    three primaries with equal slot ranges, 64 within one of each other."""
    for shards, primaries, worst in ((16, 3, (5, 6)), (64, 3, (21, 22)), (32, 4, (8, 8))):
        owners = Counter(key_slot(shard_tag(n, shards)) * primaries // SLOTS for n in range(shards))
        assert (min(owners.values()), max(owners.values())) == worst, (shards, owners)


def test_layout_strings_round_trip_and_tags_differ_between_shard_counts() -> None:
    keys = WorkerKeys("p", 16)
    assert keys.like("shards=4 tags=1").shard(0).due_ss.startswith("p:{0/4.")
    assert isinstance(keys.like("shards=1 tags=0"), WorkerKeys)
    assert keys.like("shards=1 tags=0").due_ss == "p:due_ss"
    assert shard_tag(0, 2) != shard_tag(0, 4), "two layouts never share a key"


def test_a_shard_wide_key_without_a_shard_is_refused_when_there_are_several() -> None:
    with pytest.raises(ShardedKeyError, match="name the shard"):
        _ = WorkerKeys("p", 4).due_ss
    with pytest.raises(IndexError, match="out of range"):
        WorkerKeys("p", 4).shard(4)


@pytest.mark.parametrize("bad", [0, -1, MAX_SHARDS + 1, True, 2.0, "4"])
def test_a_shard_count_out_of_range_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="shards: expected an integer from 1 to 1024"):
        Keys("p", bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hash-tagged"):
        Keys("p", 4, tagged=False)
