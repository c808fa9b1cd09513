"""Re-embedding on real parts: Redis (lock, checkpoint, change events) and local-mode Qdrant.

Writes during a re-embed go through the agent tools (Qdrant write, history, change event),
``forget_user`` and consolidation-like tombstones, injected at batch boundaries through the
progress hook, which is also where a crash is injected."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from schemas.profiles import DEFAULT
from schemas.reembed import ReembedArgs, ReembedState
from tests.conftest import keys_under, uid
from tests.worker.features.reembed.conftest import (
    alias_target,
    alive_from_history,
    assert_mirror,
    collections,
    ctx_of,
    seed,
)
from worker.features.agent_tools import MANAGE, MemoryTools
from worker.features.forget import forget_user
from worker.features.reembed import Reembed, ReembedRefused, abort, drop_old
from worker.features.reembed.keys import old_key, state_key

OLD, NEW = "memories__hash-64", "memories__hash-128"


def to(model: str = "hash-128", batch_size: int = 4) -> ReembedArgs:
    return ReembedArgs(to=model, batch_size=batch_size)


def test_copies_every_memory_switches_the_alias_and_keeps_the_old_collection(make_runtime) -> None:
    """Every point lands in the new collection with its id, its payload and a vector of the new
    model; the alias switches; reads follow; the old collection stays until --drop-old."""
    rt = make_runtime()
    users = [uid("u") for _ in range(3)]
    seed(rt, users, 7)
    before = {u: rt.store.list(u) for u in users}
    seen: list[ReembedState] = []
    report = Reembed(ctx_of(rt), progress=lambda s: seen.append(s.model_copy())).run(to())
    assert (report.phase, report.source, report.target, report.copied) == ("done", OLD, NEW, 21)
    assert [s.copied for s in seen if s.phase == "copy"] == [4, 8, 12, 16, 20]  # a checkpoint per batch
    assert alias_target(rt) == NEW and collections(rt) == {OLD, NEW}
    assert_mirror(rt, OLD, NEW, "hash-128")
    assert rt.store.embedder.dims == 128
    for u in users:
        assert [(m.id, m.content, m.version) for m in rt.store.list(u)] == [
            (m.id, m.content, m.version) for m in before[u]
        ]
        assert rt.store.search(u, f"{u} fact 3", limit=1)[0].content == f"{u} fact 3"
    keys = rt.coordinator.keys
    assert not rt.redis.exists(state_key(keys, "memories"))
    assert rt.redis.smembers(old_key(keys, "memories")) == {OLD.encode()}

    with pytest.raises(ReembedRefused, match="already the live collection"):
        Reembed(ctx_of(rt)).run(to())
    assert drop_old(ctx_of(rt)).dropped == [OLD]
    assert collections(rt) == {NEW} and not rt.redis.exists(old_key(keys, "memories"))
    assert [m.id for m in rt.store.list(users[0])] == [m.id for m in before[users[0]]]
    with pytest.raises(ReembedRefused, match="nothing to drop"):
        drop_old(ctx_of(rt))


def test_writes_during_the_copy_are_in_the_new_collection(make_runtime) -> None:
    """Inserts, updates, deletes, tombstones and a forget land between batches: afterwards the new
    collection mirrors the old one exactly (nothing lost, nothing resurrected, no duplicate)."""
    rt = make_runtime()
    alice, bob, carol = uid("alice"), uid("bob"), uid("carol")
    ids = seed(rt, [alice, bob, carol], 8)
    tomb = dataclasses.replace(DEFAULT, delete_mode="tombstone")
    steps = iter(
        [
            lambda: MemoryTools(rt, alice).execute(
                MANAGE, {"action": "update", "id": ids[alice][0], "content": "new 0"}
            ),
            lambda: MemoryTools(rt, alice).execute(MANAGE, {"action": "delete", "id": ids[alice][7]}),
            lambda: MemoryTools(rt, bob, profile=tomb).execute(MANAGE, {"action": "delete", "id": ids[bob][1]}),
            lambda: forget_user(rt, carol),
            lambda: MemoryTools(rt, carol).execute(MANAGE, {"action": "create", "content": "carol again"}),
            lambda: MemoryTools(rt, alice).execute(MANAGE, {"action": "create", "content": "late insert"}),
        ]
    )

    def between_batches(state: ReembedState) -> None:
        if state.phase == "copy":
            next(steps, lambda: None)()

    Reembed(ctx_of(rt), progress=between_batches).run(to(batch_size=2))
    assert next(steps, None) is None, "every write ran during the copy"
    assert_mirror(rt, OLD, NEW, "hash-128")
    for user in (alice, bob, carol):
        assert {m.id: m.content for m in rt.store.list(user)} == alive_from_history(rt, user)
    assert [m.content for m in rt.store.list(carol)] == ["carol again"]
    assert "new 0" in {m.content for m in rt.store.list(alice)}


def test_a_crash_at_a_batch_boundary_is_continued_by_the_next_run(make_runtime) -> None:
    """An exception after the third batch leaves the checkpoint (phase, offset, count) and frees the
    lock; running again continues from there and ends with every memory copied once."""
    rt = make_runtime()
    seed(rt, [uid("u"), uid("v")], 10)

    def crash(state: ReembedState) -> None:
        if state.copied >= 12:
            raise RuntimeError("killed at a batch boundary")

    with pytest.raises(RuntimeError, match="killed"):
        Reembed(ctx_of(rt), progress=crash).run(to())
    keys = rt.coordinator.keys
    state = ReembedState.decode(rt.redis.get(state_key(keys, "memories")))
    assert (state.phase, state.copied, state.total) == ("copy", 12, 20) and state.offset is not None
    assert alias_target(rt) is None  # readers still on the old collection
    copied_again: list[int] = []
    report = Reembed(ctx_of(rt), progress=lambda s: copied_again.append(s.copied)).run(to())
    assert report.phase == "done" and report.copied == 20 and copied_again[0] == 16  # continued, not restarted
    assert_mirror(rt, OLD, NEW, "hash-128")


def test_a_crash_between_the_switch_and_its_checkpoint_loses_nothing(make_runtime, monkeypatch) -> None:
    """The live alias decides: a run that died right after switching is continued as switched."""
    rt = make_runtime()
    seed(rt, [uid("u")], 5)
    real_save = Reembed._save

    def die_after_switch(self: Any, cp: Any, state: ReembedState) -> None:
        if state.phase == "switched":
            raise RuntimeError("killed after the switch")
        real_save(self, cp, state)

    monkeypatch.setattr(Reembed, "_save", die_after_switch)
    with pytest.raises(RuntimeError, match="after the switch"):
        Reembed(ctx_of(rt)).run(to())
    monkeypatch.undo()
    assert alias_target(rt) == NEW
    assert ReembedState.decode(rt.redis.get(state_key(rt.coordinator.keys, "memories"))).phase == "catchup"
    assert Reembed(ctx_of(rt)).run(to()).phase == "done"
    assert_mirror(rt, OLD, NEW, "hash-128")


def test_dry_run_prints_counts_and_cost_and_writes_nothing(make_runtime, prefix, redis_client) -> None:
    rt = make_runtime()
    users = [uid("u") for _ in range(3)]
    seed(rt, users, 5)
    redis_before, qdrant_before = keys_under(redis_client, prefix), collections(rt)
    estimate = Reembed(ctx_of(rt)).estimate(ReembedArgs(to="hash-128", batch_size=4, dry_run=True))
    assert (estimate.memories, estimate.users, estimate.batches, estimate.cost_usd) == (15, 3, 4, 0.0)
    hosted = Reembed(ctx_of(rt)).estimate(ReembedArgs(to="openai/text-embedding-3-small", dry_run=True))
    assert hosted.tokens > 15 and hosted.cost_usd == pytest.approx(hosted.tokens * 2e-8)
    assert hosted.target == "memories__openai-text-embedding-3-small" and hosted.batches == 1
    assert keys_under(redis_client, prefix) == redis_before and collections(rt) == qdrant_before
    assert alias_target(rt) is None


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("nonsense-model", "unknown embedding model 'nonsense-model'"),
        ("hash-64", "already the live collection"),
        ("hash-3", "hash-<dims> needs 8 <= dims <= 4096"),
        ("live", "'live' is reserved"),
        ("gpt-4o-mini", "is a chat model in litellm's map, not an embedding model"),
    ],
)
def test_a_bad_model_is_refused_before_anything_is_written(make_runtime, prefix, redis_client, model, message) -> None:
    rt = make_runtime()
    seed(rt, [uid("u")], 2)
    redis_before = keys_under(redis_client, prefix)
    for dry_run in (True, False):
        with pytest.raises(ReembedRefused, match=message):
            job = Reembed(ctx_of(rt))
            args = ReembedArgs(to=model, dry_run=dry_run)
            job.estimate(args) if dry_run else job.run(args)
    assert keys_under(redis_client, prefix) == redis_before and collections(rt) == {OLD}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"to": "hash-128", "batch_size": 0}, "greater than or equal to 1"),
        ({"to": "hash-128", "batch_size": 5000}, "less than or equal to 2048"),
        ({}, "exactly one of"),
        ({"to": "hash-128", "drop_old": True}, "exactly one of"),
        ({"to": ""}, "at least 1 character"),
        ({"to": "hash-128", "extra": 1}, "Extra inputs"),
    ],
)
def test_bad_arguments_name_the_problem(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        ReembedArgs.model_validate(kwargs)


def test_per_user_strategy_and_events_off_are_refused(make_runtime, prefix, redis_client) -> None:
    rt = make_runtime(collection_strategy="per_user")
    with pytest.raises(ReembedRefused, match="per_user: re-embedding supports the shared collection only"):
        Reembed(ctx_of(rt)).run(to())
    rt.close()
    rt = make_runtime(events_max_len=0)
    seed(rt, [uid("u")], 2)
    redis_before = keys_under(redis_client, prefix)
    with pytest.raises(ReembedRefused, match="REVERIE_EVENTS_MAX_LEN is 0"):
        Reembed(ctx_of(rt)).run(to())
    assert collections(rt) == {OLD} and keys_under(redis_client, prefix) == redis_before


def test_a_second_run_is_refused_while_one_holds_the_lock(make_runtime) -> None:
    """Two re-embeds of one namespace never run together: the second one is refused at once."""
    from worker.features.reembed import ReembedBusy

    rt = make_runtime()
    seed(rt, [uid("u")], 6)
    refused: list[str] = []

    def try_another(state: ReembedState) -> None:
        if not refused:
            with pytest.raises(ReembedBusy, match="is running") as caught:
                Reembed(ctx_of(rt)).run(to())
            refused.append(str(caught.value))

    assert Reembed(ctx_of(rt), progress=try_another).run(to()).phase == "done"
    assert refused and "lock expires" in refused[0]
    assert_mirror(rt, OLD, NEW, "hash-128")


def test_an_unfinished_re_embed_to_another_model_is_refused_and_can_be_aborted(make_runtime) -> None:
    rt = make_runtime()
    seed(rt, [uid("u")], 6)

    def crash(state: ReembedState) -> None:
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        Reembed(ctx_of(rt), progress=crash).run(to())
    with pytest.raises(ReembedRefused, match="a re-embed to 'hash-128' is unfinished"):
        Reembed(ctx_of(rt)).run(to("hash-32"))
    with pytest.raises(ReembedRefused, match="a re-embed to 'hash-128' is unfinished"):
        Reembed(ctx_of(rt)).estimate(ReembedArgs(to="hash-32", dry_run=True))
    assert Reembed(ctx_of(rt)).estimate(ReembedArgs(to="hash-128", dry_run=True)).memories == 6
    with pytest.raises(ReembedRefused, match="unfinished"):
        drop_old(ctx_of(rt))
    assert abort(ctx_of(rt)).dropped == [NEW]
    assert collections(rt) == {OLD} and alias_target(rt) is None
    assert not rt.redis.exists(state_key(rt.coordinator.keys, "memories"))
    with pytest.raises(ReembedRefused, match="no unfinished re-embed"):
        abort(ctx_of(rt))
    assert Reembed(ctx_of(rt)).run(to("hash-32")).phase == "done"


def test_a_collection_kept_from_an_earlier_re_embed_is_not_overwritten(make_runtime) -> None:
    """hash-64 → hash-128 → hash-64 needs the kept hash-64 collection dropped first; the live
    collection is never dropped."""
    rt = make_runtime()
    seed(rt, [uid("u")], 3)
    Reembed(ctx_of(rt)).run(to())
    with pytest.raises(ReembedRefused, match="kept from an earlier re-embed"):
        Reembed(ctx_of(rt)).run(to("hash-64"))
    drop_old(ctx_of(rt))
    assert Reembed(ctx_of(rt)).run(to("hash-64")).target == OLD
    assert alias_target(rt) == OLD and rt.store.embedder.dims == 64
    assert drop_old(ctx_of(rt)).dropped == [NEW]
    with pytest.raises(ReembedRefused, match="nothing to drop"):
        drop_old(ctx_of(rt))
