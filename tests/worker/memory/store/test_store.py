"""MemoryStore against real qdrant-client local mode (``path=tmp_path``), no mocks."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from producer.memories.embeddings import HashEmbedder
from producer.memories.layout import collection_name, user_suffix
from schemas.memory import MemorySource
from schemas.reflection import MemoryOp
from schemas.settings import Settings
from worker.errors import ForeignMemoryError, StoreUnavailable
from worker.memory.store import MemoryStore, open_store

T0 = 1_700_000_000_000
SRC = MemorySource(thread_id="t1", generation=1, turn_ids=["m1", "m2"], turn_count=2)
EMB = HashEmbedder(64)


def mid() -> str:
    return str(uuid.uuid4())


def insert(content: str, *, id: str | None = None, kind: str = "semantic") -> MemoryOp:
    return MemoryOp(op="insert", id=id or mid(), kind=kind, content=content, vector=EMB.embed([content])[0])


@pytest.fixture(params=["shared", "per_user"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MemoryStore]:
    s = MemoryStore(QdrantClient(path=str(tmp_path / "q")), EMB, namespace="mem", strategy=request.param)
    yield s
    s.close()


def test_insert_search_list_get(store: MemoryStore) -> None:
    ops = [insert("Loves miso ramen"), insert("Works as a nurse"), insert("Hates pasta")]
    store.apply("alice", ops, source=SRC, now_ms=T0)

    assert store.count("alice") == 3
    hits = store.search("alice", "miso ramen", limit=2)
    assert hits[0].content == "Loves miso ramen"
    assert len(hits) == 2
    assert hits[0].score is not None and hits[0].score >= (hits[1].score or 0)

    listed = store.list("alice")
    assert {r.content for r in listed} == {"Loves miso ramen", "Works as a nurse", "Hates pasta"}
    record = next(r for r in listed if r.id == ops[0].id)
    assert record.user_id == "alice"
    assert record.namespace == "mem"
    assert record.kind == "semantic"
    assert record.created_at == record.updated_at == datetime.fromtimestamp(T0 / 1000, tz=UTC)
    assert record.version == 1
    assert record.source == SRC
    assert record.score is None

    got = store.get("alice", [ops[1].id, mid()])
    assert [r.content for r in got] == ["Works as a nurse"]
    assert store.get("alice", []) == []


def test_payload_keeps_contract_fields(store: MemoryStore) -> None:
    op = insert("Lives in Osaka")
    store.apply("alice", [op], source=SRC, now_ms=T0)
    name = collection_name("mem", EMB.name, store.strategy, "alice")
    (point,), _ = store.client.scroll(name, with_payload=True)
    payload = point.payload or {}
    assert payload["user_id"] == "alice"
    assert payload["kind"] == "semantic"
    assert payload["content"] == "Lives in Osaka"
    assert payload["created_at"] == "2023-11-14T22:13:20.000Z"
    assert payload["created_at_ms"] == T0
    assert payload["updated_at_ms"] == T0
    assert payload["source"] == {
        "thread_id": "t1",
        "generation": 1,
        "turn_ids": ["m1", "m2"],
        "turn_count": 2,
    }


def test_list_is_oldest_first_and_limited(store: MemoryStore) -> None:
    for i in range(5):
        store.apply("alice", [insert(f"fact {i}")], source=SRC, now_ms=T0 + 1000 * (5 - i))
    listed = store.list("alice")
    assert [r.content for r in listed] == [f"fact {i}" for i in reversed(range(5))]
    assert len(store.list("alice", limit=2)) == 2


def test_update_keeps_created_at_and_bumps_version(store: MemoryStore) -> None:
    op = insert("Likes ramen")
    store.apply("alice", [op], source=SRC, now_ms=T0)
    src2 = MemorySource(thread_id="t1", generation=2, turn_ids=["m3"], turn_count=1)
    update = MemoryOp(op="update", id=op.id, content="Loves ramen, especially miso", created_at_ms=T0, version=2)
    store.apply("alice", [update], source=src2, now_ms=T0 + 60_000)

    (record,) = store.get("alice", [op.id])
    assert record.content == "Loves ramen, especially miso"
    assert record.created_at == datetime.fromtimestamp(T0 / 1000, tz=UTC)
    assert record.updated_at == datetime.fromtimestamp((T0 + 60_000) / 1000, tz=UTC)
    assert record.version == 2
    assert record.source == src2
    assert store.count("alice") == 1
    # no vector given: the store embeds the content, so search finds the new wording
    assert store.search("alice", "especially miso", limit=1)[0].id == op.id


def test_update_needs_created_at(store: MemoryStore) -> None:
    op = insert("Likes ramen")
    store.apply("alice", [op], source=SRC, now_ms=T0)
    with pytest.raises(ValueError, match="created_at_ms"):
        store.apply("alice", [MemoryOp(op="update", id=op.id, content="x", version=2)], source=SRC, now_ms=T0)


def test_update_of_unknown_id_is_rejected(store: MemoryStore) -> None:
    store.apply("alice", [insert("Likes ramen")], source=SRC, now_ms=T0)
    ghost = MemoryOp(op="update", id=mid(), content="x", created_at_ms=T0, version=2)
    with pytest.raises(ForeignMemoryError):
        store.apply("alice", [ghost], source=SRC, now_ms=T0)
    assert store.count("alice") == 1


def test_insert_then_update_in_one_batch(store: MemoryStore) -> None:
    op = insert("Likes tea")
    upd = MemoryOp(op="update", id=op.id, content="Likes green tea", created_at_ms=T0, version=2)
    store.apply("alice", [op, upd], source=SRC, now_ms=T0)
    assert [(r.content, r.version) for r in store.list("alice")] == [("Likes green tea", 2)]


def test_delete(store: MemoryStore) -> None:
    keep, drop = insert("Keeps cats"), insert("Owns a car")
    store.apply("alice", [keep, drop], source=SRC, now_ms=T0)
    store.apply("alice", [MemoryOp(op="delete", id=drop.id)], source=SRC, now_ms=T0 + 1)
    assert [r.id for r in store.list("alice")] == [keep.id]
    # deleting again (replay) is a no-op
    store.apply("alice", [MemoryOp(op="delete", id=drop.id)], source=SRC, now_ms=T0 + 1)
    assert store.count("alice") == 1


def test_reapplying_the_same_ops_gives_the_same_state(store: MemoryStore) -> None:
    a, b = insert("Likes jazz"), insert("Plays piano")
    store.apply("alice", [a, b], source=SRC, now_ms=T0)
    upd = MemoryOp(op="update", id=a.id, content="Loves jazz", created_at_ms=T0, version=2)
    ops = [
        upd,
        MemoryOp(op="delete", id=b.id),
        insert("Lives in Kyoto", id=str(uuid.uuid5(uuid.NAMESPACE_URL, "x"))),
    ]
    store.apply("alice", ops, source=SRC, now_ms=T0 + 5)
    before = store.list("alice")
    for _ in range(3):
        store.apply("alice", ops, source=SRC, now_ms=T0 + 5)
    assert store.list("alice") == before
    assert store.count("alice") == 2


def test_user_isolation(store: MemoryStore) -> None:
    secret = insert("Alice's diagnosis is private")
    store.apply("alice", [secret], source=SRC, now_ms=T0)
    store.apply("bob", [insert("Bob likes golf")], source=SRC, now_ms=T0)

    # reads
    assert all(r.user_id == "bob" for r in store.search("bob", "Alice's diagnosis is private", limit=10))
    assert all(r.user_id == "bob" for r in store.search_vectors("bob", [secret.vector], limit_per_query=10))
    assert [r.content for r in store.list("bob")] == ["Bob likes golf"]
    assert store.get("bob", [secret.id]) == []
    assert store.count("bob") == 1

    # update of alice's id from bob: rejected, nothing changes
    hijack = MemoryOp(op="update", id=secret.id, content="pwned", created_at_ms=T0, version=2)
    with pytest.raises(ForeignMemoryError):
        store.apply("bob", [insert("Bob likes tennis"), hijack], source=SRC, now_ms=T0 + 1)
    # an insert reusing alice's id: in the shared collection it would overwrite her point, so
    # it is rejected; per-user collections keep it apart anyway
    if store.strategy == "shared":
        with pytest.raises(ForeignMemoryError):
            store.apply("bob", [insert("pwned", id=secret.id)], source=SRC, now_ms=T0 + 1)
    # delete of alice's id under bob: deletes nothing
    store.apply("bob", [MemoryOp(op="delete", id=secret.id)], source=SRC, now_ms=T0 + 1)

    (still,) = store.get("alice", [secret.id])
    assert still.content == "Alice's diagnosis is private"
    assert still.version == 1
    assert store.count("alice") == 1
    assert [r.content for r in store.list("bob")] == ["Bob likes golf"]  # nothing half-written


def test_search_vectors_merges_and_dedupes(store: MemoryStore) -> None:
    ramen, miso, golf = insert("Loves ramen"), insert("Miso ramen every Friday"), insert("Plays golf")
    store.apply("alice", [ramen, miso, golf], source=SRC, now_ms=T0)
    queries = EMB.embed(["ramen", "miso ramen", "Loves ramen"])
    hits = store.search_vectors("alice", queries, limit_per_query=2)
    ids = [h.id for h in hits]
    assert len(ids) == len(set(ids))
    assert set(ids) >= {ramen.id, miso.id}
    scores = [h.score or 0.0 for h in hits]
    assert scores == sorted(scores, reverse=True)
    # the best score over the queries is kept: "Loves ramen" matches itself exactly
    assert hits[0].id == ramen.id
    assert hits[0].score == pytest.approx(1.0)
    assert store.search_vectors("alice", []) == []


def test_kind_filter(store: MemoryStore) -> None:
    fact = insert("Likes ramen")
    episode = insert("Asked about ramen shops in Sapporo", kind="episode")
    store.apply("alice", [fact, episode], source=SRC, now_ms=T0)
    assert store.count("alice") == 2
    assert store.count("alice", kind="episode") == 1
    assert [r.id for r in store.list("alice", kind="episode")] == [episode.id]
    assert [r.id for r in store.search("alice", "ramen", kind="semantic")] == [fact.id]
    assert [r.id for r in store.search_vectors("alice", [episode.vector], kind="episode")] == [episode.id]


def test_delete_user_counts_and_spares_others(store: MemoryStore) -> None:
    store.apply("alice", [insert("a1"), insert("a2"), insert("a3")], source=SRC, now_ms=T0)
    store.apply("bob", [insert("b1")], source=SRC, now_ms=T0)
    assert store.delete_user("alice") == 3
    assert store.count("alice") == 0
    assert store.list("alice") == []
    assert store.count("bob") == 1
    assert store.delete_user("alice") == 0
    names = {c.name for c in store.client.get_collections().collections}
    if store.strategy == "per_user":
        assert collection_name("mem", EMB.name, "per_user", "alice") not in names
    # the user can come back afterwards
    store.apply("alice", [insert("again")], source=SRC, now_ms=T0)
    assert store.count("alice") == 1


def test_reads_of_unknown_user_are_empty(store: MemoryStore) -> None:
    assert store.search("nobody", "anything") == []
    assert store.list("nobody") == []
    assert store.count("nobody") == 0
    assert store.get("nobody", [mid()]) == []
    if store.strategy == "per_user":  # reads never create per-user collections
        assert store.client.get_collections().collections == []


def test_bad_input_is_rejected_before_writing(store: MemoryStore) -> None:
    with pytest.raises(ValueError, match="UUID"):
        store.apply("alice", [insert("x", id="not-a-uuid")], source=SRC, now_ms=T0)
    with pytest.raises(ValueError, match="dims"):
        store.apply("alice", [MemoryOp(op="insert", id=mid(), content="x", vector=[1.0, 0.0])], source=SRC, now_ms=T0)
    with pytest.raises(ValueError):
        store.search("bad:user", "x")
    with pytest.raises(ValueError, match="UUID"):
        store.get("alice", ["../etc"])
    assert store.count("alice") == 0


def test_concurrent_threads_on_local_mode(store: MemoryStore) -> None:
    """A Celery threads pool shares one store; unguarded local mode raises IndexError/sqlite errors."""
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            user = f"user{n % 4}"
            for i in range(15):
                store.apply(user, [insert(f"{n}-{i}")], source=SRC, now_ms=T0 + i)
                store.search(user, f"{n}-{i}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(store.count(f"user{k}") for k in range(4)) == 8 * 15


def test_collection_naming() -> None:
    assert collection_name("memories", "hash-256", "shared") == "memories__hash-256"
    assert collection_name("memories", "openai/x", "shared") == "memories__openai-x"
    assert collection_name("memories", "hash-256", "per_user", "bob") == "memories__hash-256__u_bob"
    # injective: ids differing only in escaped characters get different collections
    suffixes = {user_suffix(u) for u in ["a.b", "a_b", "a_2eb", "a@b", "a+b", "a=b", "A.b"]}
    assert len(suffixes) == 7
    assert all(s.replace("_", "").isalnum() for s in suffixes)
    assert len(collection_name("memories", "hash-256", "per_user", "x." * 64)) < 200


def test_memory_location_counts_as_local() -> None:
    store = MemoryStore(QdrantClient(":memory:"), EMB)
    assert store.local
    store.apply("alice", [insert("hello")], source=SRC, now_ms=T0)
    assert [r.content for r in store.search("alice", "hello")] == ["hello"]
    store.close()


def test_open_store_local(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "qdrant"
    store = open_store(
        Settings(qdrant_path=path, namespace="demo", collection_strategy="per_user", embedding_model="hash-64")
    )
    try:
        assert store.local and store.strategy == "per_user" and store.namespace == "demo"
        store.apply("alice", [insert("hello")], source=SRC, now_ms=T0)
        assert store.count("alice") == 1
    finally:
        store.close()
    assert path.is_dir()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_is_store_unavailable_without_the_key() -> None:
    with pytest.warns(UserWarning, match="insecure"):
        client = QdrantClient(
            url=f"http://127.0.0.1:{_closed_port()}",
            api_key="sk-qdrant-secret",
            check_compatibility=False,
            timeout=2,
        )
    store = MemoryStore(client, EMB)
    with pytest.raises(StoreUnavailable) as info:
        store.search("alice", "x")
    assert "sk-qdrant-secret" not in str(info.value)
    store.close()


class _Failing(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._fail()

    def do_POST(self) -> None:
        self._fail()

    def do_PUT(self) -> None:
        self._fail()

    def _fail(self) -> None:
        body = b'{"status":{"error":"service unavailable"}}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_server_5xx_is_store_unavailable() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = QdrantClient(url=f"http://127.0.0.1:{server.server_port}", check_compatibility=False, timeout=2)
        store = MemoryStore(client, EMB)
        with pytest.raises(StoreUnavailable, match="503"):
            store.apply("alice", [insert("x")], source=SRC, now_ms=T0)
        store.close()
    finally:
        server.shutdown()
        server.server_close()
