"""Which collection is live: the Qdrant alias ``{namespace}__live`` that ``reverie reembed`` switches.

Until a first re-embed there is no alias and the live collection is the configured one
(``{namespace}__{model}``), exactly as before. After it, the alias names the collection, and the
collection's metadata names its embedding model, so every reader and worker follows a switch
within ``collection_refresh_s`` without a restart or a config change.

A *view* pins one (collection, embedder) pair: a search embeds its query with the view's
embedder and queries the view's collection, so a switch between the two steps can never pair a
query vector with the wrong model. ``pinned`` holds a view for a whole block (a reflection reads
one consistent collection); writes resolve the view afresh (``LiveCollections.view(fresh=True)``),
so they land where the alias points now. Shared collections only: the per-user strategy has one
collection per user and no alias.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from producer.memories.embeddings import Embedder
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


_pinned: ContextVar[tuple[LiveCollections, View] | None] = ContextVar("reverie_pinned_view", default=None)


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
        self._factory = embedder_factory
        self._lock = threading.Lock()
        self._view = self.default
        self._expires = 0.0
        self._models: dict[str, str] = {}  # collection -> model (metadata never changes)
        self._embedders: dict[str, Embedder] = {model_id(default): default}

    def view(self, *, fresh: bool = False) -> View:
        """The pinned view of this block, else the live one (looked up again when stale or ``fresh``)."""
        pinned = _pinned.get()
        if pinned is not None and pinned[0] is self and not fresh:
            return pinned[1]
        now = time.monotonic()
        if fresh or now >= self._expires:
            view = self._resolve()
            with self._lock:
                self._view, self._expires = view, now + self.refresh_s
            return view
        return self._view

    @contextlib.contextmanager
    def pinned(self, view: View | None = None) -> Iterator[View]:
        """Use one view for everything inside the block (this thread or task only)."""
        chosen = view or self.view()
        token = _pinned.set((self, chosen))
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
        """The embedding model recorded in a collection's metadata."""
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
        if model not in self._embedders:
            if self._factory is None:
                from producer.memories.embeddings import embedder_for

                self._embedders[model] = embedder_for(model)
            else:
                self._embedders[model] = self._factory(model)
        return self._embedders[model]


class LiveEmbedder:
    """An ``Embedder`` that is always the live view's: what the worker hands its extractors,
    planner and retrieval, so that they follow a switch (and a pinned view within a reflection)."""

    def __init__(self, live: LiveCollections) -> None:
        self._live = live

    def _current(self) -> Embedder:
        return self._live.view().embedder

    @property
    def name(self) -> str:
        return self._current().name

    @property
    def model(self) -> str:
        return model_id(self._current())

    @property
    def dims(self) -> int:
        return self._current().dims

    def embed(self, texts: list[str]) -> list[list[float]]:
        return self._current().embed(texts)

    def embed_query(self, texts: list[str]) -> list[list[float]]:
        return self._current().embed_query(texts)

    def load(self) -> None:
        load = getattr(self._current(), "load", None)
        if load is not None:
            load()

    def __repr__(self) -> str:
        return f"LiveEmbedder({self._live.alias})"
