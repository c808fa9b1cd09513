"""``MemoryReader``: a chat server's read path to one user's memories (search, list, get, count).

Every call carries the user filter (``user_id`` in the payload), per-user collections included,
and never creates a collection: a reader can run with a read-only Qdrant key. The worker's store
(``worker.memory.store``) extends this class with writes, so reflection, agent tools and the CLI
read memories through exactly this code. qdrant-client local mode (``path=``/``":memory:"``, dev
and demo only) is not thread-safe, so a reader over a local client serialises every call.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import httpx
from qdrant_client import QdrantClient
from qdrant_client import models as qm
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from producer.errors import StoreUnavailable
from producer.memories.embeddings import Embedder
from producer.memories.layout import Strategy, collection_name, point_id, record_from_point, user_filter
from producer.memories.live import LiveCollections, LiveEmbedder, View
from producer.memories.pending import PendingTurns, as_record
from schemas.ids import check_id
from schemas.memory import MemoryRecord

T = TypeVar("T")
SCROLL_PAGE = 256
# Module-level aliases: inside the class, ``list`` names the method, not the builtin.
Records = list[MemoryRecord]
Vectors = list[list[float]]


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """As Qdrant scores a memory (cosine distance); embedders normalise, this does not rely on it."""
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = (sum(x * x for x in a) * sum(y * y for y in b)) ** 0.5
    return dot / norm if norm else 0.0


class CollectionMissing(Exception):
    """A collection known to exist is gone (dropped by another process)."""


def redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = re.sub(r"(//)[^/@\s]+@", r"\1***@", text)  # credentials inside URLs
    return text[:300]


class MemoryReader:
    """User-scoped memory reads over one Qdrant client."""

    def __init__(
        self,
        client: QdrantClient,
        embedder: Embedder,
        *,
        namespace: str = "memories",
        strategy: Strategy = "shared",
        pending: PendingTurns | None = None,
        refresh_s: float = 5.0,
        embedder_factory: Callable[[str], Embedder] | None = None,
    ) -> None:
        if strategy not in ("shared", "per_user"):
            raise ValueError(f"strategy must be 'shared' or 'per_user', got {strategy!r}")
        self.client = client
        self.live: LiveCollections | None = None
        """The live alias (``reverie reembed``) of a shared collection; per-user collections have none."""
        self.embedder: Embedder = embedder
        if strategy == "shared":
            self.live = LiveCollections(
                self, namespace, embedder, refresh_s=refresh_s, embedder_factory=embedder_factory
            )
            self.embedder = LiveEmbedder(self.live)
        self.namespace = namespace
        self.strategy: Strategy = strategy
        self.pending = pending
        """Where ``search(include_pending=True)`` reads buffered turns (Redis); None: not available."""
        options = client.init_options
        self.local = options.get("path") is not None or options.get("location") == ":memory:"
        # Local mode is not thread-safe: serialise every call. A server client is.
        self._lock: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if self.local else contextlib.nullcontext()
        )
        self._known_lock = threading.Lock()
        self._known: set[str] = set()
        self._secrets = [str(options.get("api_key") or "")]

    @property
    def configured_embedder(self) -> Embedder:
        """The embedder this reader was built with (``REVERIE_EMBEDDING_MODEL``): the live one
        until a re-embed switches the alias."""
        return self.live.default.embedder if self.live is not None else self.embedder

    def __repr__(self) -> str:
        return f"{type(self).__name__}(namespace={self.namespace!r}, strategy={self.strategy!r}, local={self.local})"

    # -- reads

    def search(
        self,
        user_id: str,
        query: str,
        *,
        kind: str | None = None,
        limit: int = 10,
        ns: str | None = None,
        include_pending: bool = False,
        min_score: float | None = None,
    ) -> Records:
        """This user's memories closest to ``query``, best first; none scoring under ``min_score``.

        ``include_pending=True`` also matches what the user said that no reflection has committed
        yet, so a reply knows it before the debounce fires: the newest (20) user-role turns still
        buffered in any of the user's threads, embedded with this reader's embedder and scored by
        cosine against the query like memories (``min_score`` applies to both). They come back
        ranked together with the memories, marked ``pending=True`` (kind ``turn``, id
        ``pending:<thread>:<message id>``). ``kind`` and ``ns`` filter memories only. A turn leaves
        the buffer in the step that commits its memories, so it is found as one or the other.
        Costs one Redis round trip and one embedding call; needs ``pending`` (``open_reader``
        sets it from the Redis URL)."""
        if include_pending and self.pending is None:
            raise ValueError("include_pending needs Redis: set REVERIE_REDIS_URL (or pass pending= to MemoryReader)")
        with self.pinned():  # the query's model and the collection searched are one view's
            vectors = self.embedder.embed_query([query])
            hits = self.search_vectors(user_id, vectors, kind=kind, limit_per_query=limit, ns=ns)
            if include_pending:
                pending = self._pending_hits(user_id, vectors[0])
                hits = sorted([*hits, *pending], key=lambda r: (-(r.score or 0.0), r.id))
        if min_score is not None:
            hits = [r for r in hits if (r.score or 0.0) >= min_score]
        return hits[:limit]

    def _pending_hits(self, user_id: str, query: list[float]) -> Records:
        turns = self.pending.fetch(user_id) if self.pending is not None else []
        if not turns:
            return []
        vectors = self.embedder.embed([turn.content for _, turn in turns])
        return [
            as_record(user_id, self.namespace, thread, turn, _cosine(query, vector))
            for (thread, turn), vector in zip(turns, vectors, strict=True)
        ]

    def search_vectors(
        self,
        user_id: str,
        vectors: Vectors,
        *,
        kind: str | None = None,
        limit_per_query: int = 10,
        ns: str | None = None,
        ids: Sequence[str] | None = None,
    ) -> Records:
        """Several queries at once; results merged, de-duplicated by id (best score kept), best first.
        ``ids``: only among these memories (the user filter applies as well)."""
        check_id(user_id)
        if not vectors or limit_per_query < 1 or (ids is not None and not ids):
            return []
        with self.pinned():
            for vector in vectors:
                self._check_dims(vector)
            name = self._existing_collection(user_id)
            if name is None:
                return []
            pids = None if ids is None else list(dict.fromkeys(point_id(i) for i in ids))
            flt = user_filter(user_id, kind=kind, ns=ns, ids=pids)
            requests = [
                qm.QueryRequest(query=vector, filter=flt, limit=limit_per_query, with_payload=True)
                for vector in vectors
            ]
            try:
                responses = self._call(self.client.query_batch_points, name, requests=requests)
            except CollectionMissing:
                return []
        best: dict[str, MemoryRecord] = {}
        for point in (point for response in responses for point in response.points):
            record = record_from_point(user_id, point)
            if record is not None and (record.id not in best or point.score > (best[record.id].score or 0.0)):
                best[record.id] = record
        return sorted(best.values(), key=lambda r: (-(r.score or 0.0), r.id))

    def list(self, user_id: str, *, kind: str | None = None, limit: int = 1000, ns: str | None = None) -> Records:
        """Up to ``limit`` of this user's memories, oldest first."""
        check_id(user_id)
        with self.pinned():
            records = list(self._scroll(user_id, user_filter(user_id, kind=kind, ns=ns), limit))
        return sorted(records, key=lambda r: (r.created_at, r.id))

    def get(self, user_id: str, ids: Sequence[str]) -> Records:
        """The memories among ``ids`` that belong to this user (others are silently absent)."""
        check_id(user_id)
        pids = list(dict.fromkeys(point_id(i) for i in ids))
        if not pids:
            return []
        with self.pinned():
            return list(self._scroll(user_id, user_filter(user_id, ids=pids), len(pids)))

    def count(self, user_id: str, kind: str | None = None) -> int:
        check_id(user_id)
        with self.pinned():
            name = self._existing_collection(user_id)
            if name is None:
                return 0
            try:
                return self._call(self.client.count, name, count_filter=user_filter(user_id, kind=kind)).count
            except CollectionMissing:
                return 0

    @contextlib.contextmanager
    def pinned(self, view: View | None = None, *, fresh: bool = False) -> Iterator[None]:
        """Read one collection with one embedder for the whole block (``producer.memories.live``):
        ``view``, else the outer block's, else the live one (looked up now if ``fresh``, as a
        reflection does: it then reads what the latest re-embed switched to)."""
        if self.live is None:
            yield
            return
        with self.live.pinned(view, fresh=fresh):
            yield

    def close(self) -> None:
        with self._lock:
            self.client.close()
        if self.pending is not None:
            self.pending.close()

    # -- internals shared with the worker's store

    def _call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run one client call under the local-mode lock, mapping outages to StoreUnavailable."""
        with self._lock:
            try:
                return fn(*args, **kwargs)
            except UnexpectedResponse as exc:
                code = exc.status_code
                if code == 404:  # we never address points by id: only a collection can be missing
                    raise CollectionMissing() from None
                if code is None or code >= 500 or code in (401, 403, 408, 429):
                    raise self._unavailable(exc) from None
                raise
            except (ResponseHandlingException, httpx.HTTPError, OSError) as exc:
                raise self._unavailable(exc) from None

    def _unavailable(self, exc: Exception) -> StoreUnavailable:
        source = exc.source if isinstance(exc, ResponseHandlingException) else exc
        detail = redact(f"{type(source).__name__}: {source}", self._secrets)
        return StoreUnavailable(f"Qdrant unavailable ({detail})")

    def _collection_name(self, user_id: str) -> str:
        if self.live is not None:
            return self.live.view().collection
        return collection_name(self.namespace, self.embedder.name, self.strategy, user_id)

    def _existing_collection(self, user_id: str) -> str | None:
        """This user's collection if it exists (its vector size checked once); reads never create."""
        name = self._collection_name(user_id)
        if name in self._known:
            return name
        if not self._call(self.client.collection_exists, name):
            return None
        with self._known_lock:
            if name not in self._known:
                self._check_collection_dims(name)
                self._known.add(name)
        return name

    def _check_collection_dims(self, name: str) -> None:
        vectors = self._call(self.client.get_collection, name).config.params.vectors
        size = getattr(vectors, "size", None)
        if size is not None and size != self.embedder.dims:
            raise ValueError(f"collection {name} has {size}-dim vectors, embedder {self.embedder.dims}")

    def _check_dims(self, vector: Sequence[float]) -> None:
        if len(vector) != self.embedder.dims:
            raise ValueError(f"vector has {len(vector)} dims, {self.embedder.name} needs {self.embedder.dims}")

    def _scroll(self, user_id: str, flt: qm.Filter, limit: int) -> Iterator[MemoryRecord]:
        for point in self._scroll_points(user_id, flt, limit):
            record = record_from_point(user_id, point)
            if record is not None:
                yield record

    def _scroll_points(self, user_id: str, flt: qm.Filter, limit: int, *, with_vectors: bool = False) -> Iterator[Any]:
        name = self._existing_collection(user_id)
        if name is None or limit < 1:
            return
        offset: Any = None
        seen = 0
        while seen < limit:
            try:
                points, offset = self._call(
                    self.client.scroll,
                    name,
                    scroll_filter=flt,
                    limit=min(SCROLL_PAGE, limit - seen),
                    offset=offset,
                    with_payload=True,
                    with_vectors=with_vectors,
                )
            except CollectionMissing:
                self._known.discard(name)
                return
            for point in points:
                if (point.payload or {}).get("user_id") == user_id:
                    seen += 1
                    yield point
            if offset is None or not points:
                return
