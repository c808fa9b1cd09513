"""Figure 12: ``reverie reembed`` on local-mode Qdrant: memories re-embedded per second during the
copy (hash-64 → hash-128, and → use-m3; searches running beside it) next to embedding and
upserting the same number of texts alone, in the same batches; and hot-path search p50 while the
re-embed runs next to search p50 just before it."""

from __future__ import annotations

import threading
import time
import uuid

from pydantic import SecretStr
from qdrant_client import models as qm

from bench.env import BenchEnv
from bench.report import Section, percentile
from producer.memories.embeddings import embedder_for
from producer.memories.layout import collection_name
from schemas.memory import MemorySource
from schemas.reembed import ReembedArgs, ReembedState
from schemas.reflection import MemoryOp
from schemas.settings import Settings
from worker.features.reembed import Context, Reembed
from worker.memory.store import MemoryStore, open_store
from worker.memory.store.payload import build_payload
from worker.pipeline.keys import WorkerKeys

TOPICS = ("ramen", "hiking", "jazz", "Osaka", "cats", "chess", "tea", "cycling", "sushi", "novels")
BATCH = 64
SEARCH_PAUSE_S = 0.05
"""Between two searches of the hot-path loop that runs beside the re-embed."""


def _text(u: int, m: int) -> str:
    return f"user {u} note {m}: enjoys {TOPICS[m % 10]} and {TOPICS[(m * 3 + u) % 10]} on weekends"


def _load(store: MemoryStore, users: int, per_user: int) -> None:
    """Memories with the payload Reverie writes: the first through ``apply`` (creates the
    collection), the rest in bulk."""
    now = int(time.time() * 1000)
    name = collection_name(store.namespace, "hash-64", "shared")
    first = MemoryOp(op="insert", id=str(uuid.uuid4()), content=_text(0, 0))
    store.apply("ru0", [first], source=MemorySource(), now_ms=now)
    points: list[qm.PointStruct] = []
    for u in range(users):
        texts = [_text(u, m) for m in range(per_user)][1 if u == 0 else 0 :]
        for text, vector in zip(texts, store.embedder.embed(texts), strict=True):
            op = MemoryOp(op="insert", id=str(uuid.uuid4()), content=text)
            payload = build_payload(f"ru{u}", store.namespace, op, source=MemorySource(), now_ms=now)
            points.append(qm.PointStruct(id=op.id, vector=vector, payload=payload))
    for i in range(0, len(points), 1000):
        store.client.upsert(name, points=points[i : i + 1000], wait=True)


def _copy_alone(store: MemoryStore, model: str, texts: list[str], batch: int) -> float:
    """Seconds to embed ``texts`` with a fresh embedder and upsert them into a scratch collection
    of the same client, batch by batch: the re-embed's own work without its reads, checkpoints
    and the searches beside it."""
    embedder = embedder_for(model)
    embedder.embed(["warm up"])
    scratch = f"{store.namespace}__bench-scratch"
    store.client.create_collection(
        scratch, vectors_config=qm.VectorParams(size=embedder.dims, distance=qm.Distance.COSINE)
    )
    try:
        t0 = time.perf_counter()
        for i in range(0, len(texts), batch):
            chunk = texts[i : i + batch]
            points = [
                qm.PointStruct(id=str(uuid.uuid4()), vector=v, payload={"content": t})
                for t, v in zip(chunk, embedder.embed(chunk), strict=True)
            ]
            store.client.upsert(scratch, points=points, wait=True)
        return time.perf_counter() - t0
    finally:
        store.client.delete_collection(scratch)


def _searches(
    store: MemoryStore, users: int, stop: threading.Event, copying: threading.Event, out: list[float], errors: list[str]
) -> None:
    """Search in a loop until ``stop``; latencies are kept while ``copying`` (errors always)."""
    n = 0
    while not stop.is_set():
        t0 = time.perf_counter()
        try:
            store.search(f"ru{n % users}", f"who enjoys {TOPICS[n % 10]}?", limit=5)
            if copying.is_set():
                out.append((time.perf_counter() - t0) * 1000)
        except Exception as e:  # counted, and the figure says so
            errors.append(type(e).__name__)
        n += 1
        time.sleep(SEARCH_PAUSE_S)


def reembed_figure(env: BenchEnv, *, users: int, per_user: int, queries: int) -> Section:
    section = Section("12. re-embedding")
    total = users * per_user
    for target in ("hash-128", "use-m3"):
        settings = Settings(
            redis_url=SecretStr(env.redis_url),
            key_prefix=env.sub_prefix(f"reembed-{target}"),
            qdrant_path=env.tmp / f"reembed-{target}" / "qdrant",
            embedding_model="hash-64",
            collection_refresh_s=0.2,
        )
        store = open_store(settings)
        try:
            _load(store, users, per_user)
            before: list[float] = []
            for q in range(queries):
                t0 = time.perf_counter()
                store.search(f"ru{q % users}", f"who enjoys {TOPICS[q % 10]}?", limit=5)
                before.append((time.perf_counter() - t0) * 1000)
            embedder_for(target).embed(["warm up"])  # loading use-m3 is not part of the rate
            during: list[float] = []
            errors: list[str] = []
            stop, copying = threading.Event(), threading.Event()
            searcher = threading.Thread(target=_searches, args=(store, users, stop, copying, during, errors))
            marks: dict[str, float] = {}

            def mark(state: ReembedState, marks: dict[str, float] = marks, copying: threading.Event = copying) -> None:
                marks.setdefault(state.phase, time.perf_counter())
                if state.phase != "copy":
                    copying.clear()

            ctx = Context(store, env.client, WorkerKeys(settings.key_prefix), settings)
            copying.set()
            searcher.start()
            t0 = time.perf_counter()
            try:
                report = Reembed(ctx, progress=mark).run(ReembedArgs(to=target, batch_size=BATCH))
            finally:
                stop.set()
                searcher.join(10)
            copy_s = marks.get("catchup", time.perf_counter()) - t0
            texts = [f"{_text(u, m)} ." for u in range(users) for m in range(per_user)]  # not cached by use-m3
            alone_s = _copy_alone(store, target, texts, BATCH)
        finally:
            store.close()
        rate, alone = total / copy_s, total / alone_s
        section.add(
            "12", f"re-embedded/s, hash-64 → {target}, {total:,} memories", rate, "/s", "embed + upsert alone", alone
        )
        section.add(
            "12",
            f"search p50 during the copy (→ {target})",
            percentile(during, 50),
            "ms",
            "search p50 before",
            percentile(before, 50),
        )
        section.counters[target] = {
            "memories": total,
            "copied": report.copied,
            "phase": report.phase,
            "searches_during": len(during),
            "search_errors": len(errors),
            "copy_s": round(copy_s, 2),
            "total_s": report.seconds,
        }
    section.notes.append(
        "local mode: every point is persisted with its own sqlite commit, which bounds both rates; one client, so "
        "a search waits for the upsert in flight (8 points a call in local mode), and the copy for the search in "
        "flight (one "
        f"search every {SEARCH_PAUSE_S * 1000:.0f} ms beside it). The whole run also compares the collections "
        "once and waits collection_refresh_s (0.2 s here) + 1 s after the switch before its last pass."
    )
    return section
