"""What every embedder provides: a collection-safe ``name``, the vector size, and ``embed``.

``embed_query`` exists for asymmetric models (e5 prefixes queries and passages differently);
symmetric ones embed queries like any text.
"""

from __future__ import annotations

import hashlib
import re
from typing import Protocol

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


class Embedder(Protocol):
    """Turns texts into fixed-size vectors.

    Not ``runtime_checkable`` on purpose: on Python 3.11 ``isinstance`` would evaluate ``dims``,
    which for :class:`LiteLLMEmbedder` may mean a network call.
    """

    name: str
    """Identifies the model; only ``[A-Za-z0-9_-]`` so it can go into a collection name."""

    @property
    def dims(self) -> int: ...

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Vectors of stored texts (memories), L2-normalised."""
        ...

    def embed_query(self, texts: list[str]) -> list[list[float]]:
        """Vectors of search queries (the same as ``embed`` for symmetric models)."""
        ...


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
