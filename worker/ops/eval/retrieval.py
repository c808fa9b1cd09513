"""The retrieval study (``reverie eval --mode retrieval``): how well each way of searching finds a
memory, on the eval's questions, independent of what any extractor wrote.

The haystack is every final expected memory of every scenario (its ``text``), all in one user's
collection, so a question competes with ~150 memories in both languages. Two rankings, both in
Qdrant local mode: **dense** (the embedder alone) and **hybrid** (dense plus a sparse lexical
vector: words, katakana runs and CJK character bigrams, IDF-weighted by Qdrant, fused with
reciprocal rank fusion).

The same haystack measures **search-before-extract**: for every update in the scenarios, is the
memory that must be updated among the existing memories shown to the extractor, searching with
the new session's turns as LangMem does (the last message) or as Reverie does (each user turn
plus the whole window)?
"""

from __future__ import annotations

import hashlib
import math
import re
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from qdrant_client import QdrantClient
from qdrant_client import models as qm

from producer.memories.embeddings import Embedder
from schemas.messages import BufferedTurn
from worker.memory.planning import retrieval_queries
from worker.ops.eval.scenario import Scenario

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_CJK = re.compile(r"[\u3040-\u30FF\u4E00-\u9FFFー々]+")
RRF_DEPTH = 50


def lexical_terms(text: str) -> Counter[str]:
    """Latin words, and for Japanese each run's character bigrams (single characters alone)."""
    text = text.casefold()
    terms: Counter[str] = Counter(_WORD.findall(text))
    for run in _CJK.findall(text):
        grams = [run[i : i + 2] for i in range(len(run) - 1)] or [run]
        terms.update(grams)
    return terms


def sparse_vector(text: str) -> qm.SparseVector:
    weights: dict[int, float] = {}
    for term, count in lexical_terms(text).items():
        index = int.from_bytes(hashlib.blake2b(term.encode(), digest_size=4).digest(), "little")
        weights[index] = weights.get(index, 0.0) + 1.0 + math.log(count)
    return qm.SparseVector(indices=list(weights), values=list(weights.values()))


@dataclass(frozen=True)
class Doc:
    id: int
    text: str
    scenario: str
    key: str
    user: str


def haystack(scenarios: Sequence[Scenario]) -> list[Doc]:
    docs: list[Doc] = []
    for s in scenarios:
        for e in s.sessions[-1].expect:
            if e.text:
                docs.append(Doc(len(docs), e.text, s.id, e.key, e.user))
    return docs


class Index:
    """One local-mode collection with a dense and a sparse vector per memory."""

    def __init__(self, embedder: Embedder, docs: Sequence[Doc]) -> None:
        self.embedder = embedder
        self.client = QdrantClient(path=tempfile.mkdtemp(prefix="reverie-retrieval-"))
        self.client.create_collection(
            "study",
            vectors_config={"dense": qm.VectorParams(size=embedder.dims, distance=qm.Distance.COSINE)},
            sparse_vectors_config={"lexical": qm.SparseVectorParams(modifier=qm.Modifier.IDF)},
        )
        vectors = embedder.embed([d.text for d in docs])
        self.client.upsert(
            "study",
            points=[
                qm.PointStruct(id=d.id, vector={"dense": v, "lexical": sparse_vector(d.text)})
                for d, v in zip(docs, vectors, strict=True)
            ],
        )

    def search(self, queries: Sequence[str], limit: int, *, hybrid: bool) -> list[int]:
        """Ranked doc ids for several queries at once (best score per doc, as the store merges)."""
        best: dict[int, float] = {}
        for query, vector in zip(queries, self.embedder.embed_query(list(queries)), strict=True):
            if hybrid:
                prefetch = [
                    qm.Prefetch(query=vector, using="dense", limit=RRF_DEPTH),
                    qm.Prefetch(query=sparse_vector(query), using="lexical", limit=RRF_DEPTH),
                ]
                points = self.client.query_points(
                    "study", prefetch=prefetch, query=qm.FusionQuery(fusion=qm.Fusion.RRF), limit=limit
                ).points
            else:
                points = self.client.query_points("study", query=vector, using="dense", limit=limit).points
            for p in points:
                best[int(p.id)] = max(best.get(int(p.id), -1e9), p.score)
        return [i for i, _ in sorted(best.items(), key=lambda kv: -kv[1])][:limit]

    def close(self) -> None:
        self.client.close()


@dataclass
class Tally:
    n: int = 0
    hits: int = 0
    rr: float = 0.0

    def add(self, ranked: Sequence[int], target: int, k: int) -> None:
        self.n += 1
        if target in ranked[:k]:
            self.hits += 1
            self.rr += 1 / (ranked.index(target) + 1)

    def scores(self) -> dict[str, float | int | None]:
        return {
            "n": self.n,
            "recall": self.hits / self.n if self.n else None,
            "mrr": self.rr / self.n if self.n else None,
        }


def question_study(index: Index, scenarios: Sequence[Scenario], docs: Sequence[Doc], k: int = 5) -> dict[str, dict]:
    """recall@k and MRR of the eval's questions, dense vs hybrid, by question language."""
    where = {(d.scenario, d.user, d.key): d.id for d in docs}
    out: dict[str, dict[str, Tally]] = {"dense": {}, "hybrid": {}}
    for s in scenarios:
        for q in s.questions:
            target = where.get((s.id, q.user, q.answer))
            if target is None:
                continue
            language = "ja" if _CJK.search(q.ask) else "en"
            for mode in ("dense", "hybrid"):
                ranked = index.search([q.ask], k, hybrid=mode == "hybrid")
                for bucket in (language, "all"):
                    out[mode].setdefault(bucket, Tally()).add(ranked, target, k)
    return {mode: {b: t.scores() for b, t in tallies.items()} for mode, tallies in out.items()}


def query_set_study(embedder: Embedder, scenarios: Sequence[Scenario]) -> dict[str, dict]:
    """Is the memory an update must change among those shown to the extractor? The haystack is
    the memories as they were before each update; queries come from the updating session."""
    before: list[Doc] = []
    updates: list[tuple[list[BufferedTurn], int]] = []
    for s in scenarios:
        texts: dict[tuple[str, str], int] = {}
        for k, session in enumerate(s.sessions):
            for e in session.expect:
                earlier = texts.get((e.user, e.same_as)) if e.same_as else None
                if earlier is not None and before[earlier].text != e.text and k > 0:
                    turns = [BufferedTurn(role=t.role, content=t.content, ts_ms=0) for t in session.turns]
                    updates.append((turns, earlier))
                if e.text and (e.user, e.key) not in texts:
                    texts[(e.user, e.key)] = len(before)
                    before.append(Doc(len(before), e.text, s.id, e.key, e.user))
    index = Index(embedder, before)
    try:
        modes = {
            "last message (LangMem)": lambda turns: [t.content for t in turns if t.role == "user"][-1:],
            "each user turn + window (Reverie)": retrieval_queries,
        }
        out: dict[str, dict] = {}
        for name, queries_of in modes.items():
            for k in (5, 20):
                tally = Tally()
                for turns, target in updates:
                    tally.add(index.search(queries_of(turns), k, hybrid=False), target, k)
                out.setdefault(name, {})[f"recall@{k}"] = tally.scores()["recall"]
                out[name]["n"] = tally.n
        return out
    finally:
        index.close()


def run_study(embedder: Embedder, scenarios: Sequence[Scenario]) -> dict[str, object]:
    docs = haystack(scenarios)
    index = Index(embedder, docs)
    try:
        questions = question_study(index, scenarios, docs)
    finally:
        index.close()
    return {
        "embedder": embedder.name,
        "memories": len(docs),
        "questions": questions,
        "query_sets": query_set_study(embedder, scenarios),
    }
