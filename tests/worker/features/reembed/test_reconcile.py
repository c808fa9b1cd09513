"""Each way a change reaches the new collection, on its own: the change events alone, the whole
comparison alone (events trimmed), the rules after the switch, and a writer whose cached view
still names the old collection."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from qdrant_client import models as qm

from producer.memories.embeddings import HashEmbedder
from schemas.events import ChangeEvent
from schemas.memory import MemorySource
from schemas.reembed import ReembedArgs, ReembedState
from schemas.reflection import MemoryOp
from tests.conftest import uid
from tests.worker.features.reembed.conftest import alive_from_history, assert_mirror, ctx_of, points, seed
from worker.features.agent_tools import MANAGE, MemoryTools
from worker.features.forget import forget_user
from worker.features.reembed import Reembed, run
from worker.features.reembed.changes import fold
from worker.features.reembed.reconcile import AfterSwitch
from worker.features.reembed.transfer import Transfer
from worker.memory.store import MemoryStore
from worker.memory.store.collections import create_collection

OLD, NEW = "memories__hash-64", "memories__hash-128"


def _writes_during_copy(rt: Any, users: dict[str, list[str]]) -> Any:
    alice, bob = list(users)
    steps = iter(
        [
            lambda: MemoryTools(rt, alice).execute(
                MANAGE, {"action": "update", "id": users[alice][0], "content": "v2"}
            ),
            lambda: MemoryTools(rt, alice).execute(MANAGE, {"action": "delete", "id": users[alice][1]}),
            lambda: forget_user(rt, bob),
            lambda: MemoryTools(rt, alice).execute(MANAGE, {"action": "create", "content": "inserted meanwhile"}),
        ]
    )
    return lambda state: next(steps, lambda: None)() if state.phase == "copy" else None


def test_the_change_events_alone_bring_the_new_collection_up_to_date(make_runtime, monkeypatch) -> None:
    """With the whole comparison switched off, the event passes still leave an exact mirror."""
    rt = make_runtime()
    users = seed(rt, [uid("alice"), uid("bob")], 6)
    monkeypatch.setattr(run, "compare_all", lambda *a, **k: 0)
    Reembed(ctx_of(rt), progress=_writes_during_copy(rt, users)).run(ReembedArgs(to="hash-128", batch_size=2))
    assert_mirror(rt, OLD, NEW, "hash-128")
    for user in users:
        assert {m.id: m.content for m in rt.store.list(user)} == alive_from_history(rt, user)


def test_trimmed_events_fall_back_to_comparing_the_collections(make_runtime, monkeypatch) -> None:
    """Events trimmed before they were read (a small REVERIE_EVENTS_MAX_LEN) are detected by the
    stream's entries-added counter, and the collections are compared whole instead."""
    rt = make_runtime()
    users = seed(rt, [uid("alice"), uid("bob")], 6)
    writes = _writes_during_copy(rt, users)
    compared: list[int] = []
    real = run.compare_all
    monkeypatch.setattr(run, "compare_all", lambda *a, **k: compared.append(1) or real(*a, **k))

    def write_then_trim(state: ReembedState) -> None:
        writes(state)
        rt.redis.xtrim(rt.coordinator.keys.events, maxlen=0, approximate=False)

    Reembed(ctx_of(rt), progress=write_then_trim).run(ReembedArgs(to="hash-128", batch_size=2))
    assert len(compared) >= 2  # the planned comparison, and at least one for the trimmed entries
    assert_mirror(rt, OLD, NEW, "hash-128")


@pytest.fixture
def pair(make_runtime) -> tuple[Any, Transfer]:
    """Two collections as after a switch: the old one (hash-64) and the new one (hash-128)."""
    rt = make_runtime()
    create_collection(rt.store, OLD, HashEmbedder(64))
    create_collection(rt.store, NEW, HashEmbedder(128))
    return rt, Transfer(rt.store, OLD, NEW, HashEmbedder(128))


def _put(rt: Any, collection: str, pid: str, **payload: Any) -> None:
    body = {"user_id": "u", "content": "c", "version": 1, "updated_at_ms": 1, "deleted": False} | payload
    dims = 64 if collection == OLD else 128
    rt.store.client.upsert(collection, points=[qm.PointStruct(id=pid, vector=[1.0] * dims, payload=body)])


def _event(op: str, pid: str = "", user: str = "u") -> ChangeEvent:
    return ChangeEvent(event_id=f"{user}:x:1:{uuid.uuid4().hex}", user_id=user, memory_id=pid, op=op)  # type: ignore[arg-type]


def _payload(rt: Any, collection: str, pid: str) -> dict[str, Any] | None:
    found = points(rt, collection).get(pid)
    return None if found is None else found[0]


def test_after_the_switch_the_newest_alive_point_wins_and_a_stale_copy_never_overwrites(pair) -> None:
    rt, transfer = pair
    stale_writer, fresh_writer, raced = (str(uuid.uuid4()) for _ in range(3))
    _put(rt, OLD, stale_writer, version=2, content="written to the old one after the switch")
    _put(rt, NEW, stale_writer, version=1)
    _put(rt, OLD, fresh_writer, version=2)
    _put(rt, NEW, fresh_writer, version=3, content="newest, in the new one")
    after = AfterSwitch(transfer, batch=10)
    after.apply(fold([_event("update", stale_writer), _event("update", fresh_writer)]))
    assert _payload(rt, NEW, stale_writer)["content"] == "written to the old one after the switch"  # type: ignore[index]
    assert _payload(rt, NEW, fresh_writer)["content"] == "newest, in the new one"  # type: ignore[index]
    # the race: a copy decided on an older view lands after a newer write: refused by Qdrant
    _put(rt, NEW, raced, version=5, updated_at_ms=9, content="newer")
    transfer.copy([(raced, {"user_id": "u", "content": "older", "version": 5, "updated_at_ms": 8})], conditional=True)
    assert _payload(rt, NEW, raced)["content"] == "newer"  # type: ignore[index]


def test_after_the_switch_deletes_and_tombstones_in_the_old_collection_reach_the_new_one(pair) -> None:
    rt, transfer = pair
    deleted, tombstoned, rewritten = (str(uuid.uuid4()) for _ in range(3))
    _put(rt, NEW, deleted)  # gone from the old one: deleted by a writer that still used it
    _put(rt, OLD, tombstoned, deleted=True, deleted_at_ms=5)
    _put(rt, NEW, tombstoned)
    AfterSwitch(transfer, batch=10).apply(fold([_event("delete", deleted), _event("delete", tombstoned)]))
    assert _payload(rt, NEW, deleted) is None
    assert _payload(rt, NEW, tombstoned)["deleted"] is True  # type: ignore[index]
    # the race: a removal decided on version 2 arrives after version 3 was written: refused
    _put(rt, NEW, rewritten, version=3)
    transfer.delete_if_unchanged(rewritten, {"version": 2, "updated_at_ms": 1})
    assert _payload(rt, NEW, rewritten)["version"] == 3  # type: ignore[index]


def test_after_the_switch_a_forget_takes_back_what_the_pass_copied(pair) -> None:
    """A copy racing a forget could bring a forgotten memory back: the forget's event takes it back,
    except memories written after the forget."""
    rt, transfer = pair
    copied, later = str(uuid.uuid4()), str(uuid.uuid4())
    _put(rt, OLD, copied, version=2)
    _put(rt, NEW, copied, version=1)
    after = AfterSwitch(transfer, batch=10)
    after.apply(fold([_event("update", copied)]))
    assert _payload(rt, NEW, copied) is not None
    _put(rt, NEW, later)
    after.apply(fold([_event("forget"), _event("insert", later)]))
    assert _payload(rt, NEW, copied) is None and _payload(rt, NEW, later) is not None


def test_a_writer_that_still_uses_the_old_collection_also_writes_the_new_one(make_runtime) -> None:
    """Another process's store whose cached alias is from before the switch writes the old
    collection, sees the switch when it checks after writing, and writes the new one too
    (re-embedded) before ``apply`` returns."""
    rt = make_runtime()
    user = uid("u")
    seed(rt, [user], 3)
    other = MemoryStore(rt.store.client, HashEmbedder(64), refresh_s=3600)
    other._lock = rt.store._lock  # one local-mode client: share its lock, as one process would
    assert other.search(user, "fact", limit=1)  # its view is cached for an hour: the old collection
    Reembed(ctx_of(rt)).run(ReembedArgs(to="hash-128"))
    mid = str(uuid.uuid4())
    other.apply(
        user, [MemoryOp(op="insert", id=mid, content="late fact", created_at_ms=5)], source=MemorySource(), now_ms=5
    )
    assert mid in points(rt, OLD)
    payload, vector = points(rt, NEW)[mid]
    assert payload["content"] == "late fact" and vector == pytest.approx(HashEmbedder(128).embed(["late fact"])[0])
    assert [m.id for m in other.search(user, "late fact", limit=1)] == [mid]  # its reads follow too
