"""Text embedders: an offline feature-hashing default and a litellm-backed one.

Every embedder has a ``name`` that is safe inside a Qdrant collection name, because the store
keeps one collection per (namespace, embedding model): vectors of different models never mix.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import threading
from collections import Counter
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from schemas.settings import Settings

MIN_DIMS = 8
MAX_DIMS = 4096
_WORD = re.compile(r"\w+")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_EMPTY_TOKEN = "\x00empty"


class Embedder(Protocol):
    """Turns texts into fixed-size vectors.

    Not ``runtime_checkable`` on purpose: on Python 3.11 ``isinstance`` would evaluate ``dims``,
    which for :class:`LiteLLMEmbedder` may mean a network call.
    """

    name: str
    """Identifies the model; only ``[A-Za-z0-9_-]`` so it can go into a collection name."""

    @property
    def dims(self) -> int: ...

    def embed(self, texts: list[str]) -> list[list[float]]: ...


def sanitize_name(value: str, *, max_len: int = 64) -> str:
    """``"openai/text-embedding-3-small"`` → ``"openai-text-embedding-3-small"``.

    Runs of other characters become one ``-``; runs of ``_`` collapse to one so that ``__``
    stays free as the store's collection-name separator. Over-long names keep a hash suffix.
    """
    safe = re.sub(r"_+", "_", _UNSAFE.sub("-", value)).strip("-_")
    if not safe:
        safe = "model"
    if len(safe) > max_len:
        digest = hashlib.blake2b(value.encode("utf-8"), digest_size=4).hexdigest()
        safe = f"{safe[: max_len - 9].rstrip('-_')}-{digest}"
    return safe


class HashEmbedder:
    """Signed feature hashing of word unigrams and character 3-grams, L2-normalised.

    Why this is the default: no embedding model can be downloaded or called on these machines,
    and the worker must still run end to end offline. Hashing needs nothing, is deterministic
    across processes and machines (blake2b, never Python's salted ``hash()``), and is good enough
    for what the background path needs from vectors: recalling and de-duplicating memories
    whose wording overlaps with new turns. It is *not* semantic — "ramen" and "noodles" share
    nothing. Character 3-grams give texts without spaces (Japanese, Chinese) useful overlap.
    Configure a litellm embedding model for real semantic recall.
    """

    def __init__(self, dims: int = 256) -> None:
        if isinstance(dims, bool) or not isinstance(dims, int):
            raise TypeError(f"dims must be an int, got {type(dims).__name__}")
        if not MIN_DIMS <= dims <= MAX_DIMS:
            raise ValueError(f"dims must be between {MIN_DIMS} and {MAX_DIMS}, got {dims}")
        self._dims = dims
        self.name = f"hash-{dims}"

    @property
    def dims(self) -> int:
        return self._dims

    def __repr__(self) -> str:
        return f"HashEmbedder(dims={self._dims})"

    def embed(self, texts: list[str]) -> list[list[float]]:
        return [self._embed_one(text) for text in texts]

    def _embed_one(self, text: str) -> list[float]:
        vector = self._hashed(_features(text))
        if not any(vector):  # features cancelled out exactly: use the empty-text vector
            vector = self._hashed(Counter({_EMPTY_TOKEN: 1}))
        norm = math.sqrt(sum(x * x for x in vector))
        return [x / norm for x in vector]

    def _hashed(self, features: Counter[str]) -> list[float]:
        vector = [0.0] * self._dims
        for feature, count in features.items():
            digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8, person=b"reverie-hash").digest()
            value = int.from_bytes(digest, "little")
            sign = 1.0 if value & 1 else -1.0
            vector[(value >> 1) % self._dims] += sign * (1.0 + math.log(count))
        return vector


def _features(text: str) -> Counter[str]:
    """Lowercased words (``w:``) and character 3-grams of each space-padded word (``c:``)."""
    features: Counter[str] = Counter()
    for word in _WORD.findall(text.lower()):
        features["w:" + word] += 1
        padded = f" {word} "
        for i in range(len(padded) - 2):
            features["c:" + padded[i : i + 3]] += 1
    if not features:
        features[_EMPTY_TOKEN] = 1
    return features


class LiteLLMEmbedder:
    """Embeddings through ``litellm.embedding`` (any provider litellm supports).

    litellm is imported on first use: the import costs seconds of CPU and must stay out of
    processes that never embed.
    """

    def __init__(
        self,
        model: str,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 30,
        dims: int | None = None,
    ) -> None:
        if not model or not model.strip():
            raise ValueError("model must not be empty")
        if dims is not None and dims < 1:
            raise ValueError(f"dims must be positive, got {dims}")
        self.model = model
        self.name = sanitize_name(model)
        self._api_base = api_base
        self._api_key = api_key
        self._timeout_s = timeout_s
        self._dims = dims
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never shows the API key
        return f"LiteLLMEmbedder(model={self.model!r}, api_base={self._api_base!r}, dims={self._dims})"

    @property
    def dims(self) -> int:
        """Vector size; discovered with one embedding call if it was not given."""
        if self._dims is None:
            self.embed(["dimension probe"])
        assert self._dims is not None
        return self._dims

    def embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import litellm

        kwargs: dict[str, Any] = {"model": self.model, "input": list(texts), "timeout": self._timeout_s}
        if self._api_base:
            kwargs["api_base"] = self._api_base
        if self._api_key:
            kwargs["api_key"] = self._api_key
        response = litellm.embedding(**kwargs)
        vectors = _vectors_from_response(response, len(texts))
        with self._lock:
            if self._dims is None:
                self._dims = len(vectors[0])
            dims = self._dims
        for vector in vectors:
            if len(vector) != dims:
                raise ValueError(f"{self.model} returned a {len(vector)}-dim vector, expected {dims}")
        return vectors


def _vectors_from_response(response: Any, expected: int) -> list[list[float]]:
    data = response["data"] if isinstance(response, dict) else response.data
    items = []
    for position, item in enumerate(data):
        get = item.get if isinstance(item, dict) else lambda key, default=None, _i=item: getattr(_i, key, default)
        index = get("index", position)
        items.append((position if index is None else int(index), [float(x) for x in get("embedding")]))
    items.sort(key=lambda pair: pair[0])
    if len(items) != expected:
        raise ValueError(f"embedding response has {len(items)} vectors for {expected} inputs")
    return [vector for _, vector in items]


def make_embedder(settings: Settings) -> Embedder:
    """``hash-<dims>`` gives the offline :class:`HashEmbedder`; anything else is a litellm model."""
    model = settings.embedding_model
    if model.startswith("hash-"):
        return HashEmbedder(int(model.removeprefix("hash-")))
    api_key = settings.llm_api_key.get_secret_value() if settings.llm_api_key is not None else None
    return LiteLLMEmbedder(
        model,
        api_base=settings.embedding_api_base or settings.llm_api_base,
        api_key=api_key,
    )
