"""Embeddings through ``litellm.embedding``: any provider litellm supports (OpenAI, a local
OpenAI-compatible server…). The production path when a hosted model is wanted."""

from __future__ import annotations

import os
import threading
from typing import Any

from producer.memories.embeddings.base import sanitize_name


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

    def embed_query(self, texts: list[str]) -> list[list[float]]:
        return self.embed(texts)

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
