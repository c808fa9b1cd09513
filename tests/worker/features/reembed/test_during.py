"""A re-embed while the system works: reflections (the session's Celery worker, the scripted LLM
through litellm, real Redis) insert, update and delete memories, and searches run on the hot
path, during a slowed copy and across the switch. No search fails; afterwards every memory is
in the new collection, with a vector of the new model, exactly as the commits left it."""

from __future__ import annotations

import itertools
import re
import threading
import time
from typing import Any

import pytest

from producer.memories.embeddings import embedder_for
from producer.memories.reader import MemoryReader
from schemas.reembed import ReembedArgs, ReembedState
from tests.conftest import uid
from tests.support.llm_scripts import conversation_lines
from tests.support.scripted_llm import Reply, text_reply, tool_calls_reply
from tests.worker.features.reembed.conftest import alive_from_history, collections, points
from worker.features.reembed import Reembed, drop_old
from worker.features.reembed.task import context

NOTE = re.compile(r"^\[(\d+)\] \(Memory\) note (\d+): ", re.M)


def notes_model(body: dict[str, Any]) -> Reply:
    """``note K: text`` inserts, ``change K: text`` updates note K, ``drop K`` deletes it (when
    note K is among the memories shown)."""
    shown: dict[str, str] = {}
    for m in body.get("messages", []):
        if m.get("role") == "user" and "Existing memories" in (m.get("content") or ""):
            shown = {k: alias for alias, k in NOTE.findall(m["content"])}
    calls: list[tuple[str, dict[str, Any]]] = []
    for line in conversation_lines(body):
        text = line.removeprefix("user: ")
        if text.startswith("note "):
            calls.append(("insert_memory", {"content": text}))
        elif (m := re.match(r"change (\d+): (.*)", text)) and m[1] in shown:
            calls.append(("update_memory", {"memory_id": shown[m[1]], "content": f"note {m[1]}: {m[2]}"}))
        elif (m := re.match(r"drop (\d+)", text)) and m[1] in shown:
            calls.append(("delete_memory", {"memory_id": shown[m[1]]}))
    return tool_calls_reply(calls) if calls else text_reply("nothing to do")


@pytest.mark.timeout(240)
@pytest.mark.parametrize("target", ["hash-128", "use-m3"])
def test_searches_and_reflections_during_a_re_embed(make_system, scripted, target) -> None:
    scripted.set_responder(notes_model)
    system = make_system(
        model=scripted.model,
        llm_api_base=scripted.base_url,
        llm_api_key="sk-test",
        embedding_model="hash-64",
        collection_refresh_s=0.5,
        enable_deletes=True,
        after_seconds=0.2,
    )
    rt = system.runtime
    users = [uid("u") for _ in range(4)]
    for user in users:  # 12 notes each, in one reflection per user
        turns = [{"role": "user", "content": f"note {k}: fact {k} of {user}"} for k in range(12)]
        system.producer.submit(user, "seed", turns)
    system.wait_for(lambda: len(system.committed()) == len(users), timeout_s=60, what="seed commits")
    system.wait_idle()
    assert sum(rt.store.count(u) for u in users) == 48

    # Another process's reader: the same store, its own alias cache (looked up every 0.5 s)
    stale = MemoryReader(rt.store.client, embedder_for("hash-64"), refresh_s=0.5)
    stale._lock = rt.store._lock  # one local-mode client in this process: share its lock
    stop = threading.Event()
    failures: list[str] = []
    searched = {"hot": 0, "stale": 0}

    def search_loop() -> None:
        for n in itertools.count():
            if stop.is_set():
                return
            user = users[n % len(users)]
            for name, reader in (("hot", rt.store), ("stale", stale)):
                try:
                    hits = reader.search(user, f"fact {n % 12}", limit=3)
                    assert all(h.user_id == user for h in hits)
                    searched[name] += 1
                except Exception as e:  # any failure is the finding
                    failures.append(f"{name}: {type(e).__name__}: {e}")
            time.sleep(0.01)

    def write_loop() -> None:
        for n in itertools.count():
            if stop.is_set():
                return
            user, k = users[n % len(users)], n % 12
            text = (f"change {k}: changed {n}", f"drop {k}", f"note {12 + n}: fresh {n}")[n % 3]
            system.producer.submit(user, f"w{n}", [{"role": "user", "content": text}])
            time.sleep(0.15)

    threads = [threading.Thread(target=search_loop), threading.Thread(target=write_loop)]
    for t in threads:
        t.start()
    commits_before = len(system.committed())

    def slow_copy(state: ReembedState) -> None:
        if state.phase == "copy":
            time.sleep(0.3)  # let reflections and searches interleave with the batches

    try:
        report = Reembed(context(rt), progress=slow_copy).run(ReembedArgs(to=target, batch_size=4))
        commits_during = len(system.committed()) - commits_before
        time.sleep(1.0)  # writes after the switch too
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    system.wait_idle(60)

    assert failures == []
    assert searched["hot"] > 20 and searched["stale"] > 20
    assert commits_during >= 3, "reflections committed while the re-embed ran"
    old, new = "memories__hash-64", f"memories__{target}"
    assert report.phase == "done" and (report.source, report.target) == (old, new)
    assert rt.store.live is not None and rt.store.live.target() == new
    embedder = embedder_for(target)
    stored = points(rt, new)
    for payload, vector in stored.values():  # every memory has a vector of the new model
        assert vector == pytest.approx(embedder.embed([payload["content"]])[0], abs=1e-4)
    for user in users:  # nothing lost, nothing resurrected, no duplicate
        expected = alive_from_history(rt, user)
        assert {m.id: m.content for m in rt.store.list(user)} == expected
        assert sorted(str(pid) for pid, (p, _) in stored.items() if p["user_id"] == user) == sorted(expected)
    assert any(p["content"].startswith("note 1") and "fresh" in p["content"] for p, _ in stored.values())
    found = rt.store.search(users[0], "fact 5", limit=10)
    assert found and all(h.user_id == users[0] for h in found)

    assert old in collections(rt)  # kept until --drop-old
    assert drop_old(context(rt)).dropped == [old]
    assert collections(rt) == {new}
    assert stale.search(users[1], "fact 2", limit=1)  # its cache follows the alias: no failure
