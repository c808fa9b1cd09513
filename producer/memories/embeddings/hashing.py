"""Feature hashing: an explicit offline choice (``REVERIE_EMBEDDING_MODEL=hash-256``), never the
default. Lexical, not semantic: "ramen" and "noodles" share nothing."""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter

MIN_DIMS = 8
MAX_DIMS = 4096
_WORD = re.compile(r"\w+")
_EMPTY_TOKEN = "\x00empty"


class HashEmbedder:
    """Signed feature hashing of word unigrams and character 3-grams, L2-normalised.

    Needs nothing and is deterministic across processes and machines (blake2b, never Python's
    salted ``hash()``); character 3-grams give texts without spaces (Japanese, Chinese) overlap.
    It is *not* semantic — "ramen" and "noodles" share nothing — so it is kept for tests and
    for lexical-only setups, not as the default (``use-m3`` is).
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

    def embed_query(self, texts: list[str]) -> list[list[float]]:
        return self.embed(texts)

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
