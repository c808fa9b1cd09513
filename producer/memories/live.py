"""Which collection is live: the Qdrant alias ``{namespace}__live`` that ``reverie reembed`` switches.

Until a first re-embed there is no alias and the live collection is the configured one
(``{namespace}__{model}``), exactly as before. After it, the alias names the collection, and the
collection's metadata names its embedding model, so every reader and worker follows a switch
within ``collection_refresh_s`` without a restart or a config change.

The alias is looked up at most once per ``refresh_s`` per reader (one thread looks it up while
the others keep the current view), so a search costs no extra round trip; a write looks it up
again after writing (``MemoryStore.apply``), so it also lands where the alias points now.

A *view* pins one (collection, embedder) pair: a search embeds its query with the view's
embedder and queries the view's collection, so a switch between the two steps can never pair a
query vector with the wrong model. ``pinned`` holds a view for a whole block (a reflection reads
one consistent collection). Shared collections only: the per-user strategy has one collection
per user and no alias.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from producer.memories.embeddings import Embedder, embedder_for
from producer.memories.layout import collection_name

LIVE = "live"
MODEL_KEY = "embedding_model"
"""Collection metadata key: the embedding model the collection's vectors come from."""


def alias_name(namespace: str) -> str:
    """The live alias of a namespace (``embedding_model`` may not be named ``live``)."""
    return collection_name(namespace, LIVE, "shared")


def model_id(embedder: Embedder) -> str:
    """The model string ``embedder_for`` rebuilds this embedder from (``name`` is sanitised)."""
    return str(getattr(embedder, "model", None) or embedder.name)


@dataclass(frozen=True)
class View:
    collection: str
    embedder: Embedder


class _Client(Protocol):
    def _call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any: ...

    @property
    def client(self) -> Any: ...


# id(LiveCollections) -> the view pinned for the current block (this thread or task only)
_pinned: ContextVar[dict[int, View] | None] = ContextVar("reverie_pinned_views", default=None)


class LiveCollections:
    """Resolves the live alias of one namespace, at most once per ``refresh_s`` (plus on demand)."""

    def __init__(
        self,
        owner: _Client,
        namespace: str,
        default: Embedder,
        *,
        refresh_s: float = 5.0,
        embedder_factory: Callable[[str], Embedder] | None = None,
    ) -> None:
        self._owner = owner
        self.alias = alias_name(namespace)
        self.default = View(collection_name(namespace, default.name, "shared"), default)
        self.refresh_s = refresh_s
        self._factory = embedder_factory or embedder_for
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()
        self._view = self.default
        self._expires = 0.0
        self._resolved = False
        self._models: dict[str, str] = {}  # collection -> model (metadata never changes)
        self._embedders: dict[str, Embedder] = {model_id(default): default}

    def view(self) -> View:
        """The view pinned for this block, else the live one (looked up again once it is
        ``refresh_s`` old: by one thread, while the others keep using the current view)."""
        pinned = (_pinned.get() or {}).get(id(self))
        if pinned is not None:
            return pinned
        if time.monotonic() < self._expires:
            return self._view
        # the first lookup is waited for by every thread; later ones by the thread doing it only
        if not self._refreshing.acquire(blocking=not self._resolved):
            return self._view
        try:
            if time.monotonic() < self._expires:  # another thread has just looked it up
                return self._view
            return self.refresh()
        finally:
            self._refreshing.release()

    def refresh(self) -> View:
        """Look the alias up now (one round trip; one more the first time a collection is seen)."""
        view = self._resolve()
        with self._lock:
            self._view, self._expires, self._resolved = view, time.monotonic() + self.refresh_s, True
        return view

    @contextlib.contextmanager
    def pinned(self, view: View | None = None, *, fresh: bool = False) -> Iterator[View]:
        """Use one view for everything inside the block: ``view``, else the block already pinned
        (nested blocks keep the outer view), else the live one (looked up now if ``fresh``)."""
        current = _pinned.get() or {}
        chosen = view or current.get(id(self)) or (self.refresh() if fresh else self.view())
        token = _pinned.set({**current, id(self): chosen})
        try:
            yield chosen
        finally:
            _pinned.reset(token)

    def target(self) -> str | None:
        """The collection the alias points at now (no cache), or None before any re-embed."""
        aliases = self._owner._call(self._owner.client.get_aliases).aliases
        return next((a.collection_name for a in aliases if a.alias_name == self.alias), None)

    def _resolve(self) -> View:
        target = self.target()
        if target is None or target == self.default.collection:
            return self.default
        return View(target, self.embedder(self.model_of(target)))

    def model_of(self, collection: str) -> str:
        """The embedding model recorded in a collection's metadata (collections made before
        aliases existed record none: the configured one is the default's)."""
        if collection not in self._models:
            info = self._owner._call(self._owner.client.get_collection, collection)
            model = (info.config.metadata or {}).get(MODEL_KEY)
            if not isinstance(model, str) or not model:
                if collection == self.default.collection:
                    return model_id(self.default.embedder)
                raise ValueError(f"collection {collection} records no {MODEL_KEY} in its metadata")
            self._models[collection] = model
        return self._models[collection]

    def embedder(self, model: str) -> Embedder:
        """One embedder per model, built on first use."""
        with self._lock:
            if model not in self._embedders:
                self._embedders[model] = self._factory(model)
            return self._embedders[model]


class LiveEmbedder:
    """An ``Embedder`` that is always the live view's: what readers, the worker's extractors,
    planner and retrieval use, so that they follow a switch (and a pinned view within a block)."""

    def __init__(self, live: LiveCollections) -> None:
        self._live = live

    def current(self) -> Embedder:
        """The concrete embedder of the current (or pinned) view."""
        return self._live.view().embedder

    @property
    def name(self) -> str:
        return self.current().name

    @property
    def model(self) -> str:
        return model_id(self.current())

    @property
    def dims(self) -> int:
        return self.current().dims

    def embed(self, texts: list[str]) -> list[list[float]]:
        return self.current().embed(texts)

    def embed_query(self, texts: list[str]) -> list[list[float]]:
        return self.current().embed_query(texts)

    def load(self) -> None:
        load = getattr(self.current(), "load", None)
        if load is not None:
            load()

    def __repr__(self) -> str:
        return f"LiveEmbedder({self._live.alias})"


def concrete(embedder: Embedder) -> Embedder:
    """The embedder behind a ``LiveEmbedder`` (its current view's), else ``embedder`` itself."""
    return embedder.current() if isinstance(embedder, LiveEmbedder) else embedder
