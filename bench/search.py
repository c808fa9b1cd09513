"""Figure 6: hot-path ``MemoryStore.search(user_id, query)`` next to a bare qdrant-client
``query_points`` with the same user filter and limit, on the same collection."""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from qdrant_client import models as qm

from bench.env import BenchEnv
from bench.report import Section, percentile, ratio
from producer.memories.layout import collection_name, user_filter
from schemas.memory import MemorySource
from schemas.reflection import MemoryOp
from schemas.settings import Settings
from worker.memory.store import MemoryStore, open_store
from worker.memory.store.payload import build_payload

FOODS = ("ramen", "pasta", "sushi", "curry", "tacos", "pho", "bibimbap", "paella", "falafel", "dumplings")
BATCH = 1000


def _text(u: int, m: int) -> str:
    return f"user {u} memory {m}: likes {FOODS[m % 10]} from {FOODS[(m * 7 + u) % 10]} places, rating {m % 100}"


def _load(store: MemoryStore, users: int, per_user: int, first_user: int, source: MemorySource) -> None:
    """Bulk-load points with the payload Reverie writes (``build_payload``): the first memory
    goes through ``store.apply`` (creates the collection and indexes), the rest in batches."""
    now = int(time.time() * 1000)
    name = collection_name(store.namespace, store.embedder.name, "shared")
    pending: list[qm.PointStruct] = []
    for u in range(first_user, first_user + users):
        user = f"bu{u}"
        texts = [_text(u, m) for m in range(per_user)]
        vectors = store.embedder.embed(texts)
        for m, (text, vector) in enumerate(zip(texts, vectors, strict=True)):
            op = MemoryOp(op="insert", id=str(uuid.uuid4()), content=text, vector=vector)
            if u == 0 and m == 0:
                store.apply(user, [op], source=source, now_ms=now)
                continue
            payload = build_payload(user, store.namespace, op, source=source, now_ms=now)
            pending.append(qm.PointStruct(id=op.id, vector=vector, payload=payload))
            if len(pending) >= BATCH:
                store.client.upsert(name, points=pending, wait=True)
                pending = []
    if pending:
        store.client.upsert(name, points=pending, wait=True)


def _measure(store: MemoryStore, users: int, queries: int) -> dict[str, list[float]]:
    name = collection_name(store.namespace, store.embedder.name, "shared")
    lat: dict[str, list[float]] = {"search": [], "bare": [], "search_vectors": [], "embed": []}
    clock = time.perf_counter
    for q in range(queries + 3):
        u = (q * 7919) % users
        user, text = f"bu{u}", f"does user {u} like {FOODS[q % 10]}?"
        t0 = clock()
        vector = store.embedder.embed([text])[0]
        t1 = clock()
        bare = store.client.query_points(
            name, query=vector, query_filter=user_filter(user), limit=10, with_payload=True
        )
        t2 = clock()
        mine = store.search_vectors(user, [vector], limit_per_query=10)
        t3 = clock()
        found = store.search(user, text, limit=10)
        t4 = clock()
        if q < 3:  # warm-up
            continue
        assert [str(p.id) for p in bare.points] == [r.id for r in mine] or len(found) == len(bare.points)
        lat["embed"].append((t1 - t0) * 1000)
        lat["bare"].append((t2 - t1) * 1000)
        lat["search_vectors"].append((t3 - t2) * 1000)
        lat["search"].append((t4 - t3) * 1000)
    return lat


def search_latency(env: BenchEnv, *, sizes: list[tuple[int, int]], queries: int, quick: bool) -> Section:
    section = Section("6. hot-path search")
    counters: dict[str, Any] = {}
    server = os.environ.get("REVERIE_QDRANT_URL")
    modes = [("local", None)] + ([("server", server)] if server else [])
    for mode, url in modes:
        namespace = f"{env.prefix}-search"
        settings = Settings(
            qdrant_url=url, qdrant_path=env.tmp / "search" / "qdrant", namespace=namespace, embedding_model="hash-256"
        )
        store = open_store(settings)
        source = MemorySource(thread_id="bench", generation=1)
        loaded_users = 0
        try:
            for users, per_user in sizes:
                t0 = time.monotonic()
                _load(store, users - loaded_users, per_user, loaded_users, source)
                load_s = time.monotonic() - t0
                loaded_users = users
                total = users * per_user
                lat = _measure(store, users, queries)
                p = {k: (percentile(v, 50), percentile(v, 99)) for k, v in lat.items()}
                label = f"{mode}, {users:,} users × {per_user} = {total:,} memories"
                section.add(
                    "6",
                    f"search p50, {label}",
                    p["search"][0],
                    "ms",
                    "bare query_points p50",
                    p["bare"][0],
                    "≤ 1.2× bare",
                    ratio(p["search"][0], p["bare"][0]) <= 1.2,
                )
                section.add("6", f"search p99, {label}", p["search"][1], "ms", "bare query_points p99", p["bare"][1])
                counters[f"{mode}:{total}"] = {
                    "users": users,
                    "memories": total,
                    "queries": queries,
                    "load_s": round(load_s, 1),
                    **{f"{k}_p50_ms": v[0] for k, v in p.items()},
                    **{f"{k}_p99_ms": v[1] for k, v in p.items()},
                }
        finally:
            if mode == "server":
                for c in store.client.get_collections().collections:
                    if c.name.startswith(namespace):
                        store.client.delete_collection(c.name)
            store.close()
    section.counters = counters
    grow = [v for k, v in counters.items() if k.startswith("local:")]
    if len(grow) >= 2:
        a, b = grow[0], grow[-1]
        section.notes.append(
            f"local mode grows {b['search_p50_ms'] / a['search_p50_ms']:.1f}× from {a['memories']:,} to "
            f"{b['memories']:,} memories ({b['memories'] / a['memories']:.0f}× the points): brute force over the "
            "whole collection, user filter checked in Python. Embedding the query (hash-256) costs "
            f"{b['embed_p50_ms']:.2f} ms p50 of the search."
        )
    if quick:
        section.notes.append("quick mode: fewer users than the 1,000 × 100 goal size (run --full for 10k and 100k).")
    if not server:
        section.notes.append("server mode skipped: set REVERIE_QDRANT_URL to measure a Qdrant server too.")
    return section
