"""The memory store: the only module that talks to Qdrant, the only memory store.

Every read and write carries the user filter (``user_id`` in the payload), per-user
collections included. By default there is one collection per (namespace, embedding model)
with a tenant ``user_id`` index (``is_tenant=True``), as Qdrant recommends; ``per_user`` gives
each user a collection (Qdrant advises against it beyond a few hundred users). qdrant-client
local mode (``path=``/``":memory:"``, dev and demo only) is not thread-safe, so a store over a
local client serialises every call with a lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import httpx
from qdrant_client import QdrantClient
from qdrant_client import models as qm
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from schemas.ids import check_id
from schemas.memory import MemoryRecord, MemorySource
from schemas.reflection import MemoryOp
from schemas.settings import Settings
from worker.embeddings import Embedder, make_embedder
from worker.errors import ForeignMemoryError, StoreUnavailable

Strategy = Literal["shared", "per_user"]
T = TypeVar("T")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_USER_UNESCAPED = re.compile(r"[A-Za-z0-9-]")
_SCROLL_PAGE = 256
# Module-level aliases: inside MemoryStore, ``list`` names the method, not the builtin.
Records = list[MemoryRecord]
Ops = list[MemoryOp]
Vectors = list[list[float]]


# ---------------------------------------------------------------- pure helpers


def safe_part(value: str) -> str:
    """Collection-name piece: only ``[A-Za-z0-9_-]``, and never ``__`` (the separator)."""
    return re.sub(r"_+", "_", _UNSAFE.sub("-", value)).strip("-_") or "x"


def user_suffix(user_id: str) -> str:
    """Injective, collection-safe encoding of a user id: every character outside
    ``[A-Za-z0-9-]`` (``_`` included) becomes ``_xx`` per UTF-8 byte. Very long ids use a hash."""
    escaped = "".join(
        ch if _USER_UNESCAPED.fullmatch(ch) else "".join(f"_{b:02x}" for b in ch.encode("utf-8")) for ch in user_id
    )
    if len(escaped) > 96:
        escaped = "h" + hashlib.blake2b(user_id.encode("utf-8"), digest_size=16).hexdigest()
    return "u_" + escaped


def collection_name(namespace: str, embedder: str, strategy: Strategy, user_id: str | None = None) -> str:
    """``{namespace}__{model}`` (shared) or ``{namespace}__{model}__u_{user}`` (per_user).
    At most 63 + 2 + 64 + 2 + 99 characters, under Qdrant's 255."""
    base = f"{safe_part(namespace)}__{safe_part(embedder)[:64]}"
    if strategy == "shared":
        return base
    if user_id is None:
        raise ValueError("per_user collections need a user_id")
    return f"{base}__{user_suffix(user_id)}"


def point_id(value: str) -> str | int:
    """A Qdrant point id (canonical UUID string, or unsigned int); ``ValueError`` otherwise."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise ValueError(f"memory id {value!r} is not a UUID or unsigned integer") from None


def user_filter(
    user_id: str, *, kind: str | None = None, ids: Sequence[Any] | None = None, ns: str | None = None
) -> qm.Filter:
    """The filter every store call carries: this user's live points (of ``kind``, among ``ids``,
    in profile namespace ``ns``). Tombstoned memories are excluded from every read."""
    must: list[Any] = [qm.FieldCondition(key="user_id", match=qm.MatchValue(value=user_id))]
    if kind is not None:
        must.append(qm.FieldCondition(key="kind", match=qm.MatchValue(value=kind)))
    if ids is not None:
        must.append(qm.HasIdCondition(has_id=list(ids)))
    if ns is not None:
        must.append(qm.FieldCondition(key="ns_key", match=qm.MatchValue(value=ns)))
    return qm.Filter(must=must, must_not=[qm.FieldCondition(key="deleted", match=qm.MatchValue(value=True))])


def ms_to_iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build_payload(user_id: str, namespace: str, op: MemoryOp, *, source: MemorySource, now_ms: int) -> dict[str, Any]:
    """Payload of an insert or update. An update keeps its ``created_at_ms`` (required)."""
    if op.op == "update" and op.created_at_ms is None:
        raise ValueError(f"update of memory {op.id} needs created_at_ms (the original creation time)")
    created_ms = op.created_at_ms if op.created_at_ms is not None else now_ms
    return {
        "user_id": user_id,
        "namespace": namespace,
        "kind": op.kind,
        "schema_name": op.schema_name,
        "content": op.content,
        "data": op.data,
        "created_at": ms_to_iso(created_ms),
        "created_at_ms": created_ms,
        "updated_at": ms_to_iso(now_ms),
        "updated_at_ms": now_ms,
        "version": op.version,
        "ns": list(op.ns),
        "ns_key": "/".join(op.ns),
        "deleted": False,
        "source": source.model_dump(mode="json"),
    }


def record_from_point(user_id: str, point: qm.Record | qm.ScoredPoint) -> MemoryRecord | None:
    """The record of a point, or None if it is not ``user_id``'s (defence in depth: every
    query is filtered already)."""
    p = point.payload or {}
    if p.get("user_id") != user_id:
        return None
    return MemoryRecord(
        id=str(point.id),
        user_id=user_id,
        namespace=p.get("namespace", ""),
        kind=p.get("kind", "semantic"),
        schema_name=p.get("schema_name", "Memory"),
        content=p.get("content", ""),
        data=p.get("data") or {},
        created_at=p["created_at"].replace("Z", "+00:00"),
        updated_at=p["updated_at"].replace("Z", "+00:00"),
        version=p.get("version", 1),
        ns=p.get("ns") or [],
        source=MemorySource.model_validate(p.get("source") or {}),
        score=getattr(point, "score", None),
    )


def _redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = re.sub(r"(//)[^/@\s]+@", r"\1***@", text)  # credentials inside URLs
    return text[:300]


class _CollectionMissing(Exception):
    """A collection known to exist is gone (dropped by another process)."""


# ---------------------------------------------------------------- the store


class MemoryStore:
    """User-scoped memory reads and idempotent writes over one Qdrant client."""

    def __init__(
        self,
        client: QdrantClient,
        embedder: Embedder,
        *,
        namespace: str = "memories",
        strategy: Strategy = "shared",
    ) -> None:
        if strategy not in ("shared", "per_user"):
            raise ValueError(f"strategy must be 'shared' or 'per_user', got {strategy!r}")
        self.client = client
        self.embedder = embedder
        self.namespace = namespace
        self.strategy: Strategy = strategy
        options = client.init_options
        self.local = options.get("path") is not None or options.get("location") == ":memory:"
        # Local mode is not thread-safe: serialise every call. A server client is.
        self._lock: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if self.local else contextlib.nullcontext()
        )
        self._create_lock = threading.Lock()
        self._known: set[str] = set()
        self._secrets = [str(options.get("api_key") or "")]

    def __repr__(self) -> str:
        return f"MemoryStore(namespace={self.namespace!r}, strategy={self.strategy!r}, local={self.local})"

    # -- reads

    def search(
        self, user_id: str, query: str, *, kind: str | None = None, limit: int = 10, ns: str | None = None
    ) -> Records:
        """This user's memories closest to ``query``, best first."""
        return self.search_vectors(user_id, self.embedder.embed([query]), kind=kind, limit_per_query=limit, ns=ns)

    def search_vectors(
        self,
        user_id: str,
        vectors: Vectors,
        *,
        kind: str | None = None,
        limit_per_query: int = 10,
        ns: str | None = None,
    ) -> Records:
        """Several queries at once; results merged, de-duplicated by id (best score kept), best first."""
        check_id(user_id)
        if not vectors or limit_per_query < 1:
            return []
        for vector in vectors:
            self._check_dims(vector)
        name = self._collection(user_id, create=False)
        if name is None:
            return []
        flt = user_filter(user_id, kind=kind, ns=ns)
        requests = [
            qm.QueryRequest(query=vector, filter=flt, limit=limit_per_query, with_payload=True) for vector in vectors
        ]
        try:
            responses = self._call(self.client.query_batch_points, name, requests=requests)
        except _CollectionMissing:
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
        records = list(self._scroll(user_id, user_filter(user_id, kind=kind, ns=ns), limit))
        return sorted(records, key=lambda r: (r.created_at, r.id))

    def list_vectors(self, user_id: str, *, limit: int = 1000) -> list[tuple[MemoryRecord, list[float]]]:
        """Up to ``limit`` of this user's memories with their vectors (for consolidation)."""
        check_id(user_id)
        out: list[tuple[MemoryRecord, list[float]]] = []
        for point in self._scroll_points(user_id, user_filter(user_id), limit, with_vectors=True):
            record = record_from_point(user_id, point)
            if record is not None and isinstance(point.vector, list):
                out.append((record, [float(x) for x in point.vector]))
        return out

    def get(self, user_id: str, ids: Sequence[str]) -> Records:
        """The memories among ``ids`` that belong to this user (others are silently absent)."""
        check_id(user_id)
        pids = list(dict.fromkeys(point_id(i) for i in ids))
        if not pids:
            return []
        return list(self._scroll(user_id, user_filter(user_id, ids=pids), len(pids)))

    def count(self, user_id: str, kind: str | None = None) -> int:
        check_id(user_id)
        name = self._collection(user_id, create=False)
        if name is None:
            return 0
        try:
            return self._call(self.client.count, name, count_filter=user_filter(user_id, kind=kind)).count
        except _CollectionMissing:
            return 0

    # -- writes

    def apply(self, user_id: str, ops: Ops, *, source: MemorySource, now_ms: int) -> None:
        """Write planned ops, in order. Idempotent: op ids are final point ids, so replaying the
        same ops (ideally with the same ``now_ms``) leaves the same state and no duplicates.

        Everything is validated before anything is written: an update must target one of this
        user's memories (else :class:`ForeignMemoryError`) and carry ``created_at_ms``; an
        insert must not reuse another user's point id. ``version`` is written as given, so the
        planner sets it (existing version + 1 for an update). Ops without a vector get their
        ``content`` embedded.
        """
        check_id(user_id)
        if not ops:
            return
        points = self._prepare(user_id, ops, source=source, now_ms=now_ms)
        for attempt in (1, 2):
            name = self._collection(user_id, create=True)
            assert name is not None
            try:
                self._check_ownership(name, user_id, ops)
                self._write(name, user_id, ops, points, now_ms)
                return
            except _CollectionMissing:
                self._known.discard(name)
                if attempt == 2:
                    raise StoreUnavailable(f"collection {name} keeps disappearing") from None

    def delete_user(self, user_id: str) -> int:
        """Forget every memory of this user in this namespace (all embedding models); returns
        how many were removed. Per-user collections of the user are dropped."""
        check_id(user_id)
        prefix = f"{safe_part(self.namespace)}__"
        suffix = f"__{user_suffix(user_id)}"
        names = [c.name for c in self._call(self.client.get_collections).collections]
        removed = 0
        for name in names:
            parts = name.removeprefix(prefix).split("__")
            if not name.startswith(prefix) or len(parts) > 2:
                continue
            per_user = len(parts) == 2
            if per_user and not name.endswith(suffix):
                continue
            # tombstones included: forgetting a user removes everything
            flt = qm.Filter(must=[qm.FieldCondition(key="user_id", match=qm.MatchValue(value=user_id))])
            with contextlib.suppress(_CollectionMissing):
                mine = self._call(self.client.count, name, count_filter=flt).count
                if mine:
                    self._call(self.client.delete, name, points_selector=qm.FilterSelector(filter=flt), wait=True)
                    removed += mine
                if per_user and self._call(self.client.count, name).count == 0:
                    self._call(self.client.delete_collection, name)
                    self._known.discard(name)
        return removed

    def close(self) -> None:
        with self._lock:
            self.client.close()

    # -- internals

    def _call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run one client call under the local-mode lock, mapping outages to StoreUnavailable."""
        with self._lock:
            try:
                return fn(*args, **kwargs)
            except UnexpectedResponse as exc:
                code = exc.status_code
                if code == 404:  # we never address points by id: only a collection can be missing
                    raise _CollectionMissing() from None
                if code is None or code >= 500 or code in (401, 403, 408, 429):
                    raise self._unavailable(exc) from None
                raise
            except (ResponseHandlingException, httpx.HTTPError, OSError) as exc:
                raise self._unavailable(exc) from None

    def _unavailable(self, exc: Exception) -> StoreUnavailable:
        source = exc.source if isinstance(exc, ResponseHandlingException) else exc
        detail = _redact(f"{type(source).__name__}: {source}", self._secrets)
        return StoreUnavailable(f"Qdrant unavailable ({detail})")

    def _collection(self, user_id: str, *, create: bool) -> str | None:
        """This user's collection name, created on first write (shared: also on first read)."""
        name = collection_name(self.namespace, self.embedder.name, self.strategy, user_id)
        if name in self._known:
            return name
        if not (create or self.strategy == "shared" or self._call(self.client.collection_exists, name)):
            return None  # reads never create per-user collections
        with self._create_lock:
            if name not in self._known:
                if self._call(self.client.collection_exists, name):
                    self._check_collection_dims(name)
                else:
                    self._create(name)
                self._known.add(name)
        return name

    def _create(self, name: str) -> None:
        shared = self.strategy == "shared"
        try:
            self._call(
                self.client.create_collection,
                name,
                vectors_config=qm.VectorParams(size=self.embedder.dims, distance=qm.Distance.COSINE),
                # Qdrant's multitenancy setup: per-tenant HNSW graphs instead of one global graph.
                hnsw_config=qm.HnswConfigDiff(payload_m=16, m=0) if shared else None,
            )
        except UnexpectedResponse as exc:  # 409: another process created it first
            if exc.status_code != 409:
                raise
        # Local mode warns that payload indexes have no effect there (brute-force search), and
        # tests treat warnings as errors: only a server gets the indexes.
        if self.local:
            return
        tenant = qm.KeywordIndexParams(type=qm.KeywordIndexType.KEYWORD, is_tenant=shared)
        indexes: tuple[tuple[str, Any], ...] = (
            ("user_id", tenant),
            ("kind", qm.PayloadSchemaType.KEYWORD),
            ("ns_key", qm.PayloadSchemaType.KEYWORD),  # profile namespace filter of retrieval
            ("deleted", qm.PayloadSchemaType.BOOL),  # tombstones, excluded by every read
        )
        for field, schema in indexes:
            self._call(self.client.create_payload_index, name, field, field_schema=schema, wait=True)

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
        name = self._collection(user_id, create=False)
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
                    limit=min(_SCROLL_PAGE, limit - seen),
                    offset=offset,
                    with_payload=True,
                    with_vectors=with_vectors,
                )
            except _CollectionMissing:
                return
            for point in points:
                if (point.payload or {}).get("user_id") == user_id:
                    seen += 1
                    yield point
            if offset is None or not points:
                return

    def _prepare(self, user_id: str, ops: Ops, *, source: MemorySource, now_ms: int) -> dict[int, qm.PointStruct]:
        """Validate every op and build the points to upsert (keyed by op position)."""
        missing = [i for i, op in enumerate(ops) if op.op != "delete" and not op.vector]
        embedded = dict(zip(missing, self.embedder.embed([ops[i].content for i in missing]), strict=True))
        points: dict[int, qm.PointStruct] = {}
        for i, op in enumerate(ops):
            pid = point_id(op.id)
            if op.op == "delete":
                continue
            vector = list(op.vector) or embedded[i]
            self._check_dims(vector)
            payload = build_payload(user_id, self.namespace, op, source=source, now_ms=now_ms)
            points[i] = qm.PointStruct(id=pid, vector=vector, payload=payload)
        return points

    def _check_ownership(self, name: str, user_id: str, ops: Ops) -> None:
        """Updates must target this user's memories (or ones inserted earlier in ``ops``);
        no insert or update may reuse a point id of another user (that would overwrite it)."""
        write_ids = list(dict.fromkeys(point_id(op.id) for op in ops if op.op != "delete"))
        if not write_ids:
            return
        # Counts points among the ids that are NOT this user's: the user condition is negated,
        # and only a number comes back, never another user's data.
        foreign = qm.Filter(
            must=[qm.HasIdCondition(has_id=write_ids)],
            must_not=[qm.FieldCondition(key="user_id", match=qm.MatchValue(value=user_id))],
        )
        if self._call(self.client.count, name, count_filter=foreign).count:
            raise ForeignMemoryError(f"{name}: a write targets a memory id that is not one of this user's")
        update_ids = list(dict.fromkeys(point_id(op.id) for op in ops if op.op == "update"))
        mine = self._scroll(user_id, user_filter(user_id, ids=update_ids), len(update_ids))
        owned = {point_id(r.id) for r in mine}
        inserted: set[str | int] = set()
        for op in ops:
            pid = point_id(op.id)
            if op.op == "insert":
                inserted.add(pid)
            elif op.op == "update" and pid not in owned and pid not in inserted:
                raise ForeignMemoryError(f"update of memory {op.id}: not one of this user's memories")

    def _write(self, name: str, user_id: str, ops: Ops, points: dict[int, qm.PointStruct], now_ms: int) -> None:
        """Upsert/delete/tombstone in op order, batching consecutive ops of the same sort."""

        def sort(pair: tuple[int, MemoryOp]) -> str:
            op = pair[1]
            return "tombstone" if op.op == "delete" and op.tombstone else op.op if op.op == "delete" else "upsert"

        for what, group in itertools.groupby(enumerate(ops), key=sort):
            batch = list(group)
            if what == "upsert":
                self._call(self.client.upsert, name, points=[points[i] for i, _ in batch], wait=True)
                continue
            ids = list(dict.fromkeys(point_id(op.id) for _, op in batch))
            selector = qm.FilterSelector(filter=user_filter(user_id, ids=ids))
            if what == "delete":
                self._call(self.client.delete, name, points_selector=selector, wait=True)
            else:  # a tombstone: the point stays (audit), hidden from every read by user_filter
                marks = {"deleted": True, "deleted_at": ms_to_iso(now_ms), "deleted_at_ms": now_ms}
                self._call(self.client.set_payload, name, payload=marks, points=selector, wait=True)


def open_store(settings: Settings, *, embedder: Embedder | None = None) -> MemoryStore:
    """A store for these settings: a Qdrant server when ``qdrant_url`` is set, else local mode."""
    if settings.qdrant_url:
        api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        # No version probe at start-up: it is a network call that only warns, and workers may
        # start before Qdrant does. Outages surface as StoreUnavailable on use.
        client = QdrantClient(url=settings.qdrant_url, api_key=api_key, check_compatibility=False)
    else:
        settings.qdrant_path.mkdir(parents=True, exist_ok=True)
        # Every call is serialised by MemoryStore's lock, so sharing the sqlite connections
        # across threads is safe (macOS builds of sqlite would refuse otherwise).
        client = QdrantClient(path=str(settings.qdrant_path), force_disable_check_same_thread=True)
    return MemoryStore(
        client,
        embedder or make_embedder(settings),
        namespace=settings.namespace,
        strategy=settings.collection_strategy,
    )
