"""Embedders: which ``REVERIE_EMBEDDING_MODEL`` names which model.

- ``use-m3`` (default) and ``e5-small``: sentence models inside a wheel, offline (``local``);
- ``hash-<dims>``: lexical feature hashing, an explicit choice (``hashing``);
- anything else: a litellm embedding model, e.g. ``openai/text-embedding-3-small`` (``remote``).

The store keeps one collection per (namespace, embedder name), so vectors of different models
never mix, and the vector size always comes from the embedder.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from producer.memories.embeddings.base import Embedder, sanitize_name
from producer.memories.embeddings.hashing import HashEmbedder
from producer.memories.embeddings.local import LOCAL_MODELS, E5Small, UniversalSentenceEncoder
from producer.memories.embeddings.remote import LiteLLMEmbedder

if TYPE_CHECKING:
    from schemas.settings import Settings

DEFAULT_MODEL = UniversalSentenceEncoder.name

__all__ = [
    "DEFAULT_MODEL",
    "E5Small",
    "Embedder",
    "HashEmbedder",
    "LiteLLMEmbedder",
    "UniversalSentenceEncoder",
    "embedder_factory",
    "embedder_for",
    "make_embedder",
    "sanitize_name",
]


def embedder_for(model: str, *, api_base: str | None = None, api_key: str | None = None) -> Embedder:
    """The embedder a model name means (see the module docstring)."""
    if model in LOCAL_MODELS:
        return LOCAL_MODELS[model]()
    if model.startswith("hash-"):
        return HashEmbedder(int(model.removeprefix("hash-")))
    return LiteLLMEmbedder(model, api_base=api_base, api_key=api_key)


def make_embedder(settings: Settings) -> Embedder:
    """The embedder of ``REVERIE_EMBEDDING_MODEL``, with the settings' API base and key."""
    return embedder_factory(settings)(settings.embedding_model)


def embedder_factory(settings: Settings) -> Callable[[str], Embedder]:
    """Builds the embedder of any model name with the settings' API base and key (the live
    collection may name another model than ``REVERIE_EMBEDDING_MODEL`` after a re-embed)."""
    api_key = settings.llm_api_key.get_secret_value() if settings.llm_api_key is not None else None
    api_base = settings.embedding_api_base or settings.llm_api_base
    return lambda model: embedder_for(model, api_base=api_base, api_key=api_key)
